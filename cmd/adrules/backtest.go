package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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
	sides := []*backtest.Side{{Name: "candidate", Label: *rulesFile, RuleSet: rs, Dir: *out}}
	if *baseline != "" {
		brs, label, err := baselineRules(ctx, *baseline, rs.Name, *envName, env, &k, kf, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "--baseline:", err)
			return exitError{1}
		}
		sides[0].Dir = filepath.Join(*out, "candidate")
		sides = append(sides, &backtest.Side{Name: "baseline", Label: label, RuleSet: brs, Dir: filepath.Join(*out, "baseline")})
	}
	if topicForm {
		if *topic == "" {
			*topic = k.topics.Metrics
		}
		err = topicBacktest(ctx, sides, *batch, topicRange{topic: *topic, actions: *actionsTopic, from: *fromS, to: *toS, warmup: *warmS}, k.connection(env), *out, stdout, stderr)
	} else {
		err = fileBacktest(ctx, sides, backtest.FilesOptions{Input: *input, Stdin: stdin, Actions: *actions, Batch: *batch}, *out, stdout, stderr)
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

func fileBacktest(ctx context.Context, sides []*backtest.Side, o backtest.FilesOptions, out string, stdout, stderr io.Writer) error {
	o.Progress = progressTo(stderr)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := backtest.RunFiles(ctx, o, sides)
	runtime.ReadMemStats(&after)
	if err != nil {
		return err
	}
	if err := finish(sides, stderr); err != nil {
		return err
	}
	if lines := sides[0].Summary.Lines; lines > 0 && len(sides) == 1 {
		fmt.Fprintf(stderr, "memory:     %.1f allocations per input line, peak RSS %d MiB\n",
			float64(after.Mallocs-before.Mallocs)/float64(lines), peakRSS()>>20)
	}
	return compare(sides, report.Meta{Input: o.Input, Actions: o.Actions, Records: sides[0].Summary.Lines}, out, stdout, stderr)
}

func topicBacktest(ctx context.Context, sides []*backtest.Side, batch int, tr topicRange, conn streams.Connection, out string, stdout, stderr io.Writer) error {
	o := backtest.TopicOptions{Topic: tr.topic, Actions: tr.actions, Warmup: backtest.DefaultWarmup(sides), Batch: batch, Progress: progressTo(stderr)}
	var err error
	if o.From, err = streams.ParseBound(tr.from); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if o.To, err = streams.ParseBound(tr.to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if tr.warmup != "" {
		if o.Warmup, err = time.ParseDuration(tr.warmup); err != nil || o.Warmup < 0 {
			return fmt.Errorf("--warmup %q: a duration such as 24h or 0", tr.warmup)
		}
	}
	c, err := streams.Dial(ctx, conn)
	if err != nil {
		return err
	}
	defer c.Close()
	run, err := backtest.ResolveTopic(ctx, c, o)
	if err != nil {
		return err
	}
	if run.Ranges().Span() == 0 {
		fmt.Fprintf(stderr, "warning: the range holds no records of %s (%s): nothing to compare\n", tr.topic, run.Ranges())
	}
	fmt.Fprintf(stderr, "range of %s: %s\n", tr.topic, run.Ranges())
	if err := run.Run(ctx, sides); err != nil {
		return err
	}
	if err := finish(sides, stderr); err != nil {
		return err
	}
	meta := run.Meta()
	meta.From, meta.To = tr.from, tr.to
	return compare(sides, meta, out, stdout, stderr)
}

// finish prints each side's summary; an interrupted run is reported as
// such, with what it kept.
func finish(sides []*backtest.Side, stderr io.Writer) error {
	interrupted := false
	for _, s := range sides {
		fmt.Fprintf(stderr, "%s: %s (version %d, sha256 %s)\n", s.Name, s.Label, s.RuleSet.Version, s.RuleSet.SHA256[:12])
		s.Summary.Print(stderr)
		if s.Summary.WarmUp > 0 {
			fmt.Fprintf(stderr, "warm-up:    %d records before the range, read without output\n", s.Summary.WarmUp)
		}
		fmt.Fprintf(stderr, "output:     %s/decisions.jsonl, actions.jsonl, dlq.jsonl\n", s.Dir)
		interrupted = interrupted || s.Summary.Interrupted
	}
	if interrupted {
		fmt.Fprintln(stderr, "interrupted: the files hold what was written until then; no comparison was made")
		return exitError{130}
	}
	return nil
}

// compare writes and prints the diff and the report of a two-sided
// backtest.
func compare(sides []*backtest.Side, meta report.Meta, out string, stdout, stderr io.Writer) error {
	if len(sides) < 2 {
		return nil
	}
	d, err := backtest.Compare(sides[1], sides[0], meta, out)
	if err != nil {
		return err
	}
	d.Print(stdout)
	fmt.Fprintf(stderr, "comparison: %s\n", strings.Join([]string{
		filepath.Join(out, "diff.jsonl"), filepath.Join(out, "report.html"), filepath.Join(out, "report.md")}, ", "))
	return nil
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
