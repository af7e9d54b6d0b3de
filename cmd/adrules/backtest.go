package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/report"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

const backtestUsage = `Usage:
  adrules backtest --rules FILE --input EVENTS.jsonl [--actions PROPOSALS.jsonl] [--baseline FILE] --out DIR
  adrules backtest --brokers LIST [--topic ad-metrics] [--actions-topic ad-actions] [--from T] [--to T]
                   --rules CANDIDATE.yaml [--baseline FILE|live|VERSION] --out DIR

Runs the rules over a history: a JSON Lines file, or a range of a topic. T
is an RFC 3339 time (offsets are found by record timestamp) or
partition:offset pairs such as 0:1200,1:1187; --from defaults to the start
of each partition, --to to its end. State is first warmed up from the events
of --warmup before --from (default: the longest window of the rules), with
no output for them. A topic backtest reads the partitions directly: it joins
no consumer group and writes nothing to Kafka.

Without --baseline it writes DIR/decisions.jsonl, actions.jsonl, dlq.jsonl.
With one, both sides run over exactly the same records, each with its own
state, into DIR/candidate/ and DIR/baseline/, and their comparison goes to
DIR/diff.jsonl, DIR/report.html and DIR/report.md, summarized on stdout.
--baseline is a rules file, "live" (the version the nodes run now, from the
config topic) or a published version number.

Ctrl-C stops cleanly: the files keep what was written.
`

// backtestSide is one rule set of a backtest and where its output goes.
type backtestSide struct {
	name  string
	label string
	rs    *rules.RuleSet
	dir   string
	src   *streams.RangeSource // topic form
	sum   *backtest.Summary
	err   error
}

func cmdBacktest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("backtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rulesFile := fs.String("rules", "", "rules file: the candidate (required)")
	input := fs.String("input", "", "metric events, JSON Lines; - reads standard input")
	actions := fs.String("actions", "", "external action proposals, JSON Lines (optional)")
	out := fs.String("out", "", "output directory (required)")
	envName := fs.String("env", "", "environments overlay to apply (default: $ADRULES_ENV, else $ENVIRONMENT)")
	baseline := fs.String("baseline", "", "the other side: a rules file, live, or a published version number")
	var k kafkaFlags
	k.register(fs, "")
	var kf keyFlags
	kf.registerTrust(fs)
	topic := fs.String("topic", "", "metric events topic (default: --topic-metrics)")
	actionsTopic := fs.String("actions-topic", "", "external proposals topic to read beside the events (default: none)")
	fromS := fs.String("from", "", "start of the range: RFC 3339 time or partition:offset pairs (default: start of the log)")
	toS := fs.String("to", "", "end of the range, exclusive: RFC 3339 time or partition:offset pairs (default: end of the log)")
	batch := fs.Int("batch", 0, "records per batch (default 8192)")
	warmS := fs.String("warmup", "", "events read before --from to warm state up, without output (default: the longest window; 0 for none)")
	fs.Usage = func() {
		fmt.Fprint(stderr, backtestUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	topicForm := k.brokers != ""
	switch {
	case *rulesFile == "" || *out == "" || fs.NArg() > 0:
		fs.Usage()
		return exitError{2}
	case topicForm == (*input != ""):
		fmt.Fprintln(stderr, "adrules backtest: give either --input FILE or --brokers LIST")
		return exitError{2}
	case !topicForm && (*fromS != "" || *toS != "" || *actionsTopic != "" || *topic != "" || *warmS != ""):
		fmt.Fprintln(stderr, "adrules backtest: --topic, --actions-topic, --from, --to and --warmup read a topic: they need --brokers")
		return exitError{2}
	case topicForm && *actions != "":
		fmt.Fprintln(stderr, "adrules backtest: --actions reads a file; with --brokers use --actions-topic")
		return exitError{2}
	case *baseline != "" && *input == "-":
		fmt.Fprintln(stderr, "adrules backtest: --baseline reads the input twice: give a file, not standard input")
		return exitError{2}
	}
	rs, err := loadRules(*rulesFile, *envName, env)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{1}
	}
	sides := []*backtestSide{{name: "candidate", label: *rulesFile, rs: rs, dir: *out}}
	if *baseline != "" {
		brs, label, err := baselineRules(ctx, *baseline, rs.Name, *envName, env, &k, kf, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "--baseline:", err)
			return exitError{1}
		}
		sides[0].dir = filepath.Join(*out, "candidate")
		sides = append(sides, &backtestSide{name: "baseline", label: label, rs: brs, dir: filepath.Join(*out, "baseline")})
	}
	if topicForm {
		if *topic == "" {
			*topic = k.topics.Metrics
		}
		err = topicBacktest(ctx, sides, *batch, topicRange{topic: *topic, actions: *actionsTopic, from: *fromS, to: *toS, warmup: *warmS}, k.connection(env), *out, stdout, stderr)
	} else {
		err = fileBacktest(ctx, sides, *batch, *input, *actions, stdin, *out, stdout, stderr)
	}
	var ee exitError
	if err != nil && !errors.As(err, &ee) && ctx.Err() != nil {
		// Ctrl-C before the sides started (resolving the range, reading
		// the actions): nothing was written.
		fmt.Fprintln(stderr, "interrupted before the backtest started")
		return exitError{130}
	}
	return err
}

// baselineRules resolves --baseline: a rules file, "live" (the version the
// nodes run: versions.Newest over the config history and config topics,
// with the trust list of --trust or $ADRULES_TRUST; without one,
// signatures are not checked and stderr says so) or a version number
// (from the config history, versions.Baseline). name is the rule set's
// name on the config topic.
func baselineRules(ctx context.Context, spec, name, envName string, env map[string]string, k *kafkaFlags, kf keyFlags, stderr io.Writer) (*rules.RuleSet, string, error) {
	v, verr := strconv.ParseInt(spec, 10, 64)
	if spec != "live" && verr != nil {
		rs, err := loadRules(spec, envName, env)
		return rs, spec, err
	}
	if len(streams.ParseBrokers(k.brokers)) == 0 {
		return nil, "", fmt.Errorf("%q reads the config topic: it needs --brokers", spec)
	}
	cl, err := streams.Open(k.connection(env))
	if err != nil {
		return nil, "", err
	}
	defer cl.Close()
	keys, err := kf.policy(env)
	if err != nil {
		return nil, "", err
	}
	var published []versions.Record
	topic := k.topics.ConfigHistory
	if spec == "live" {
		if !keys.Checks() {
			fmt.Fprintln(stderr, "--baseline live: signatures not checked (no --trust or $ADRULES_TRUST): nodes may refuse it")
		}
		topic = k.topics.Config
		published, err = streams.ReadLive(ctx, cl, name, nil)
	} else {
		var recs []*kgo.Record
		recs, err = cl.ReadAll(ctx, topic)
		published = versions.Published(streams.Entries(recs), name)
	}
	if err != nil {
		return nil, "", err
	}
	_, rs, err := versions.Baseline(published, spec, keys.Accept)
	switch {
	case errors.Is(err, versions.ErrNoValid):
		return nil, "", fmt.Errorf("rule set %q: no valid version on %s", name, topic)
	case errors.Is(err, versions.ErrNoSuchVersion):
		return nil, "", fmt.Errorf("rule set %q has no version %d on %s", name, v, topic)
	case err != nil:
		return nil, "", err
	case spec == "live":
		return rs, "live", nil
	}
	return rs, "published", nil
}

// topicRange is what the flags say of a topic backtest's input.
type topicRange struct {
	topic, actions   string
	from, to, warmup string
}

func fileBacktest(ctx context.Context, sides []*backtestSide, batch int, input, actions string, stdin io.Reader, out string, stdout, stderr io.Writer) error {
	var total int64
	if input != "-" {
		if st, err := os.Stat(input); err == nil {
			total = st.Size() * int64(len(sides))
		}
	}
	var read atomic.Int64
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	prog := startProgress(stderr, total, "bytes", read.Load)
	var wg sync.WaitGroup
	for _, s := range sides {
		o := backtest.Options{RuleSet: s.rs, InputName: input, OutDir: s.dir, Batch: batch}
		var closers []io.Closer
		if input == "-" {
			o.Input = &countingReader{r: stdin, n: &read}
		} else {
			f, err := os.Open(input)
			if err != nil {
				return err
			}
			closers = append(closers, f)
			o.Input = &countingReader{r: f, n: &read}
		}
		if actions != "" {
			f, err := os.Open(actions)
			if err != nil {
				return err
			}
			closers = append(closers, f)
			o.Actions, o.ActionsName = f, actions
		}
		wg.Go(func() {
			s.sum, s.err = backtest.Run(ctx, o)
			for _, c := range closers {
				c.Close()
			}
		})
	}
	wg.Wait()
	prog.Stop()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err := finish(sides, stderr); err != nil {
		return err
	}
	if lines := sides[0].sum.Lines; lines > 0 && len(sides) == 1 {
		fmt.Fprintf(stderr, "memory:     %.1f allocations per input line, peak RSS %d MiB\n",
			float64(after.Mallocs-before.Mallocs)/float64(lines), peakRSS()>>20)
	}
	return compare(sides, report.Meta{Input: input, Actions: actions, Records: sides[0].sum.Lines}, out, stdout, stderr)
}

func topicBacktest(ctx context.Context, sides []*backtestSide, batch int, tr topicRange, conn streams.Connection, out string, stdout, stderr io.Writer) error {
	from, err := streams.ParseBound(tr.from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, err := streams.ParseBound(tr.to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	warm := time.Duration(0)
	for _, s := range sides {
		warm = max(warm, longestWindow(s.rs))
	}
	if tr.warmup != "" {
		if warm, err = time.ParseDuration(tr.warmup); err != nil || warm < 0 {
			return fmt.Errorf("--warmup %q: a duration such as 24h or 0", tr.warmup)
		}
	}
	c, err := streams.Dial(ctx, conn)
	if err != nil {
		return err
	}
	defer c.Close()
	cl, opts := c.Client(), c.Opts()
	ranges, err := streams.ResolveRange(ctx, cl, tr.topic, from, to, streams.Warm{Before: warm})
	if err != nil {
		return err
	}
	all := append(streams.Ranges(nil), ranges...)
	if ranges.Span() == 0 {
		fmt.Fprintf(stderr, "warning: the range holds no records of %s (%s): nothing to compare\n", tr.topic, describeRanges(ranges))
	}
	var aranges streams.Ranges
	if tr.actions != "" {
		// Offsets name partitions of the metrics topic: the actions topic
		// is then read whole.
		afrom, ato := from, to
		if from.Offsets != nil || to.Offsets != nil {
			afrom, ato = streams.Bound{}, streams.Bound{}
		}
		if aranges, err = streams.ResolveRange(ctx, cl, tr.actions, afrom, ato, streams.Warm{Before: warm}); err != nil {
			return err
		}
		all = append(all, aranges...)
	}
	actionRecs, err := streams.ReadRanges(ctx, opts, aranges)
	if err != nil {
		return fmt.Errorf("read %s: %w", tr.actions, err)
	}
	fmt.Fprintf(stderr, "range of %s: %s\n", tr.topic, describeRanges(ranges))
	var total, warmN int64
	for _, r := range ranges {
		total += r.Len()
		warmN += r.From - r.Warm
	}
	var wg sync.WaitGroup
	for _, s := range sides {
		s.src = streams.NewRangeSource(opts, ranges, batch)
		o := backtest.Options{RuleSet: s.rs, Source: s.src, ActionRecords: actionRecs, Emit: all.Emitted, OutDir: s.dir, Batch: batch,
			Partitioner: streams.Partitioner(tr.topic, int32(len(ranges)))}
		wg.Go(func() {
			s.sum, s.err = backtest.Run(ctx, o)
			if s.sum != nil {
				s.sum.WarmUp = warmN
			}
		})
	}
	prog := startProgress(stderr, total*int64(len(sides)), "records", func() int64 {
		var n int64
		for _, s := range sides {
			n += s.src.Read()
		}
		return n
	})
	wg.Wait()
	prog.Stop()
	if err := finish(sides, stderr); err != nil {
		return err
	}
	meta := report.Meta{From: tr.from, To: tr.to, Input: tr.topic, Actions: tr.actions, Records: total - warmN}
	return compare(sides, meta, out, stdout, stderr)
}

// describeRanges says which offsets a range reads, per partition.
func describeRanges(rs streams.Ranges) string {
	var parts []string
	for _, r := range rs {
		s := fmt.Sprintf("%d:[%d,%d)", r.Partition, r.From, r.To)
		if r.Warm < r.From {
			s += fmt.Sprintf(" warm-up from %d", r.Warm)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// finish prints each side's summary; an interrupted run is reported as
// such, with what it kept.
func finish(sides []*backtestSide, stderr io.Writer) error {
	interrupted := false
	for _, s := range sides {
		if s.err != nil && (s.sum == nil || !s.sum.Interrupted) {
			return fmt.Errorf("%s: %w", s.name, s.err)
		}
	}
	for _, s := range sides {
		fmt.Fprintf(stderr, "%s: %s (version %d, sha256 %s)\n", s.name, s.label, s.rs.Version, s.rs.SHA256[:12])
		s.sum.Print(stderr)
		if s.sum.WarmUp > 0 {
			fmt.Fprintf(stderr, "warm-up:    %d records before the range, read without output\n", s.sum.WarmUp)
		}
		fmt.Fprintf(stderr, "output:     %s/decisions.jsonl, actions.jsonl, dlq.jsonl\n", s.dir)
		interrupted = interrupted || s.sum.Interrupted
	}
	if interrupted {
		fmt.Fprintln(stderr, "interrupted: the files hold what was written until then; no comparison was made")
		return exitError{130}
	}
	return nil
}

// compare writes the diff and the report of a two-sided backtest.
func compare(sides []*backtestSide, meta report.Meta, out string, stdout, stderr io.Writer) error {
	if len(sides) < 2 {
		return nil
	}
	c, b := sides[0], sides[1]
	d, err := report.Compare(
		report.Side{Name: b.name, Dir: b.dir, Label: b.label, RulesetVersion: b.rs.Version, RulesetSHA256: b.rs.SHA256},
		report.Side{Name: c.name, Dir: c.dir, Label: c.label, RulesetVersion: c.rs.Version, RulesetSHA256: c.rs.SHA256})
	if err != nil {
		return err
	}
	d.Meta = meta
	if err := report.WriteFiles(out, d); err != nil {
		return err
	}
	d.Print(stdout)
	fmt.Fprintf(stderr, "comparison: %s\n", strings.Join([]string{
		filepath.Join(out, "diff.jsonl"), filepath.Join(out, "report.html"), filepath.Join(out, "report.md")}, ", "))
	return nil
}

// longestWindow is the longest rolling window rs declares.
func longestWindow(rs *rules.RuleSet) time.Duration {
	var d time.Duration
	for _, w := range rs.Doc.Windows {
		d = max(d, w.D())
	}
	return d
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// peakRSS returns the process's peak resident set size in bytes (0 where the
// system does not say).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss << 10 // Linux reports kilobytes
}
