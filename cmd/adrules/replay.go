package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/jsonl"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const replayUsage = `Usage: adrules replay --brokers LIST [--from T] [--to T] --verify [--out DIR]

Re-runs the live rules over a range of the input topics exactly as the nodes
ran them: each partition with the rule set version in force at each record,
read from the switch points (config_applied records) on the decisions topic
and the documents on the config history topic. State is rebuilt from the
start of each input log, with no output before --from. T is an RFC 3339 time
or partition:offset pairs; the range selects metric events, and external
proposals by the same bounds on the actions topic.

--verify compares the result with what adrules.decisions, adrules.proposals
and adrules.actions hold for the range and prints "identical" or the first
difference (exit status 1). --out DIR writes the replayed decisions.jsonl,
proposals.jsonl and actions.jsonl. Offset bounds name partitions of the
metrics topic; external proposals are then compared over all of ad-actions.
Run it with a new adrules binary to check an upgrade: the same logs must give
the same outputs.
`

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	ruleset := fs.String("ruleset", "default", "name of the rule set on the config topic")
	group := fs.String("group", "adrules", "the nodes' consumer group (to check it has processed the range)")
	fromS := fs.String("from", "", "start of the range: RFC 3339 time or partition:offset pairs (default: start of the log)")
	toS := fs.String("to", "", "end of the range, exclusive (default: end of the log)")
	verify := fs.Bool("verify", false, "compare with the recorded decisions and verdicts")
	out := fs.String("out", "", "write the replayed decisions.jsonl and actions.jsonl here")
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || !*verify && *out == "" {
		fs.Usage()
		return exitError{2}
	}
	from, err := streams.ParseBound(*fromS)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, err := streams.ParseBound(*toS)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	copts, err := k.clientOpts(env)
	if err != nil {
		return err
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(k.brokerList()...)}, copts...)
	cl, err := dial(ctx, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	r := &replay{k: &k, opts: opts, copts: copts, name: *ruleset, stderr: stderr}
	if err := r.load(ctx, cl, from, to); err != nil {
		return err
	}
	if r.metrics.Span() == 0 {
		fmt.Fprintf(stderr, "warning: the range holds no records of %s (%s)\n", k.topics.Metrics, describeRanges(r.metrics))
	}
	r.checkProcessed(ctx, cl, *group)
	got, err := r.run(ctx)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeReplay(*out, got); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "replayed: %d decisions, %d proposals, %d verdicts in %s\n", len(got.decisions), len(got.proposals), len(got.verdicts), *out)
	}
	if !*verify {
		return nil
	}
	if d := firstDiff("decisions", k.topics.Decisions, got.decisions, r.recorded.decisions); d != "" {
		fmt.Fprintln(stdout, d)
		return exitError{1}
	}
	if d := firstDiff("proposals", k.topics.Proposals, got.proposals, r.recorded.proposals); d != "" {
		fmt.Fprintln(stdout, d)
		return exitError{1}
	}
	if d := firstDiff("verdicts", k.topics.Verdicts, got.verdicts, r.recorded.verdicts); d != "" {
		fmt.Fprintln(stdout, d)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "identical: %d decisions, %d proposals and %d verdicts over %s %s\n",
		len(got.decisions), len(got.proposals), len(got.verdicts), k.topics.Metrics, describeRanges(r.metrics))
	return nil
}

// replay holds what a replay reads before it runs.
type replay struct {
	k      *kafkaFlags
	opts   []kgo.Opt // with the seed brokers
	copts  []kgo.Opt // TLS, SASL
	name   string
	stderr io.Writer

	metrics, actions streams.Ranges // the range, on the input topics
	proposals        streams.Ranges // all of the proposals log, as of now
	// history: the switch points (the switches topic and the decisions
	// topic) and the versions' documents, by version number.
	history  *streams.History
	recorded outputs
}

// outputs are decisions and verdicts as the bytes a node writes, each with
// the input record it came from.
type outputs struct {
	decisions []output
	proposals []output
	verdicts  []output
}

type output struct {
	in    rules.Input
	id    string
	value []byte
}

// load resolves the range and reads the config history, the switch points
// and the recorded outputs.
func (r *replay) load(ctx context.Context, cl *kgo.Client, from, to streams.Bound) error {
	t := r.k.topics
	var err error
	if r.metrics, err = streams.ResolveRange(ctx, cl, t.Metrics, from, to, streams.Warm{Start: true}); err != nil {
		return err
	}
	// Offsets name partitions of the metrics topic: external proposals
	// are then compared over the whole actions log.
	afrom, ato := from, to
	if from.Offsets != nil || to.Offsets != nil {
		afrom, ato = streams.Bound{}, streams.Bound{}
	}
	if r.actions, err = streams.ResolveRange(ctx, cl, t.Actions, afrom, ato, streams.Warm{Start: true}); err != nil {
		return err
	}
	if r.proposals, err = streams.ResolveRange(ctx, cl, t.Proposals, streams.Bound{}, streams.Bound{}, streams.Warm{}); err != nil {
		return err
	}
	r.history = streams.NewHistory(r.opts, t, r.name, versions.Compile)
	if err := r.history.Refresh(ctx); err != nil {
		return err
	}
	err = readTopic(ctx, cl, r.opts, t.Decisions, func(v []byte) error {
		var head struct {
			Type          string      `json:"type"`
			RulesetSHA256 string      `json:"ruleset_sha256"`
			DecisionID    string      `json:"decision_id"`
			Input         rules.Input `json:"input"`
		}
		if err := json.Unmarshal(v, &head); err != nil {
			return fmt.Errorf("%s holds a record that is not a decision: %w", t.Decisions, err)
		}
		if head.Type == engine.TypeConfigApplied {
			var a engine.ConfigApplied
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("%s holds a config_applied record that does not decode: %w", t.Decisions, err)
			}
			r.history.Add(a)
			return nil
		}
		if inRanges(r.metrics, head.Input) {
			r.recorded.decisions = append(r.recorded.decisions, output{head.Input, head.DecisionID, v})
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Verdicts and proposals: those whose proposal came from a record in
	// the range (a metric event, or an external proposal).
	for _, x := range []struct {
		topic, what string
		into        *[]output
	}{{t.Verdicts, "verdict", &r.recorded.verdicts}, {t.Proposals, "proposal", &r.recorded.proposals}} {
		err = readTopic(ctx, cl, r.opts, x.topic, func(v []byte) error {
			var head struct {
				ActionID string       `json:"action_id"`
				Input    *rules.Input `json:"input"`
			}
			if err := json.Unmarshal(v, &head); err != nil {
				return fmt.Errorf("%s holds a record that is not a %s: %w", x.topic, x.what, err)
			}
			if head.Input != nil && (inRanges(r.metrics, *head.Input) || inRanges(r.actions, *head.Input)) {
				*x.into = append(*x.into, output{*head.Input, head.ActionID, v})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sortOutputs(r.recorded.decisions)
	sortOutputs(r.recorded.proposals)
	sortOutputs(r.recorded.verdicts)
	return nil
}

// inRanges reports whether in lies in [From, To) of one of rs.
func inRanges(rs streams.Ranges, in rules.Input) bool {
	for _, r := range rs {
		if r.Topic == in.Topic && r.Partition == in.Partition {
			return in.Offset >= r.From && in.Offset < r.To
		}
	}
	return false
}

// sortOutputs orders outputs by their input record, keeping the order of
// outputs of one record (a node writes them in rule order).
func sortOutputs(o []output) {
	slices.SortStableFunc(o, func(a, b output) int {
		return compareInput(a.in, b.in)
	})
}

// readTopic reads every committed record of topic that exists now.
func readTopic(ctx context.Context, cl *kgo.Client, opts []kgo.Opt, topic string, fn func([]byte) error) error {
	rs, err := streams.ResolveRange(ctx, cl, topic, streams.Bound{}, streams.Bound{}, streams.Warm{})
	if err != nil {
		return err
	}
	for _, r := range rs {
		err := streams.ReadRange(ctx, opts, r, func(recs []engine.Record, _ []time.Time) error {
			for _, rec := range recs {
				if err := fn(rec.Value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
	}
	return nil
}

// checkProcessed warns when the nodes' group has not committed past the
// range: outputs of records not yet processed cannot be compared.
func (r *replay) checkProcessed(ctx context.Context, cl *kgo.Client, group string) {
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		fmt.Fprintf(r.stderr, "replay: cannot read group %s's offsets (%v): not checking that it processed the range\n", group, err)
		return
	}
	for _, pr := range r.metrics {
		o, ok := offs.Lookup(pr.Topic, pr.Partition)
		if ok && o.At < pr.To && o.At >= pr.From {
			if more, err := streams.HoldsRecords(ctx, r.opts, pr.Topic, pr.Partition, o.At, pr.To); err == nil && !more {
				continue // only transaction markers after it (rerouted events)
			}
		}
		if pr.To > pr.From && (!ok || o.At < pr.To) {
			fmt.Fprintf(r.stderr, "replay: warning: group %s has processed %s/%d only up to offset %d, not to %d: records after it have no recorded output yet\n",
				group, pr.Topic, pr.Partition, o.At, pr.To)
		}
	}
}

// run replays stage 1 over the metric events and stage 2 over the recorded
// proposals log, each with the versions in force.
func (r *replay) run(ctx context.Context) (*outputs, error) {
	store, closeStore, err := backtest.TempStore()
	if err != nil {
		return nil, err
	}
	defer closeStore()
	got := &outputs{}
	emit := append(append(streams.Ranges(nil), r.metrics...), r.actions...)
	sink := &replaySink{keep: func(in rules.Input) bool { return inRanges(emit, in) }, out: got}
	// Stages 0 and 1 (the relay of external proposals, the rules over the
	// metric events), then stage 2 over the proposals log as recorded.
	first := append(append(streams.Ranges(nil), r.actions...), r.metrics...)
	for _, stage := range []streams.Ranges{first, r.proposals} {
		src := &switchSource{src: streams.NewRangeSource(r.opts, stage, 0), r: r}
		var initial *rules.RuleSet
		for _, pr := range stage {
			if v, sha, _, ok := r.history.VersionAt(pr.Topic, pr.Partition, pr.Warm); ok {
				if initial, err = r.history.RuleSet(v, sha); err != nil {
					return nil, err
				}
				break
			}
		}
		if initial == nil {
			continue // no partition of this stage was ever processed
		}
		// A metric event on a partition its key does not belong to was
		// rerouted by the node, which processed the copy: so does the
		// replay.
		eng, err := engine.New(initial, src, sink, store, engine.WithKeyCheck(engine.KeyRequired),
			engine.WithPartitioner(partitionerOf(r.k.topics.Metrics, int32(len(r.metrics)))),
			engine.WithRelayTopics(r.k.topics.Actions), engine.WithProposalTopics(r.k.topics.Proposals))
		if err != nil {
			return nil, err
		}
		src.eng = eng
		prog := startProgress(r.stderr, stage.Len(), "records of "+stage[0].Topic, src.src.Read)
		err = eng.Run(ctx)
		prog.Stop()
		if err != nil {
			return nil, err
		}
	}
	sortOutputs(got.decisions)
	sortOutputs(got.proposals)
	sortOutputs(got.verdicts)
	return got, nil
}

// switchSource cuts its source's batches where the rule set version
// changes and swaps the engine to each batch's version before handing it
// over (a swap applies to the batches that start after it).
type switchSource struct {
	src     *streams.RangeSource
	r       *replay
	eng     *engine.Engine
	pending []engine.Record
}

func (s *switchSource) Poll(ctx context.Context) ([]engine.Record, error) {
	for len(s.pending) == 0 {
		recs, err := s.src.Poll(ctx)
		if err != nil {
			return nil, err
		}
		s.pending = recs
	}
	first := s.pending[0]
	version, sha, until, ok := s.r.history.VersionAt(first.Topic, first.Partition, first.Offset)
	n := len(s.pending)
	if ok {
		if until >= 0 {
			for i := 1; i < len(s.pending); i++ {
				if s.pending[i].Offset >= until {
					n = i
					break
				}
			}
		}
		rs, err := s.r.history.RuleSet(version, sha)
		if err != nil {
			return nil, err
		}
		s.eng.Swap(rs)
	}
	batch := s.pending[:n]
	s.pending = s.pending[n:]
	return batch, nil
}

func (s *switchSource) Commit(context.Context) error { return nil }

// replaySink keeps the decisions and verdicts of the records in range, as
// the bytes a node writes.
type replaySink struct {
	keep func(rules.Input) bool
	out  *outputs
}

func (s *replaySink) Write(_ context.Context, out *engine.Output) error {
	for i := range out.Decisions {
		d := &out.Decisions[i]
		if !s.keep(d.Input) {
			continue
		}
		b, err := jsonl.Marshal(d)
		if err != nil {
			return err
		}
		s.out.decisions = append(s.out.decisions, output{d.Input, d.DecisionID, b})
	}
	for i := range out.Proposals {
		p := &out.Proposals[i]
		if p.Input == nil || !s.keep(*p.Input) {
			continue
		}
		b, err := jsonl.Marshal(p)
		if err != nil {
			return err
		}
		s.out.proposals = append(s.out.proposals, output{*p.Input, p.ActionID, b})
	}
	for i := range out.Verdicts {
		v := &out.Verdicts[i]
		if v.Input == nil || !s.keep(*v.Input) {
			continue
		}
		b, err := jsonl.Marshal(v)
		if err != nil {
			return err
		}
		s.out.verdicts = append(s.out.verdicts, output{*v.Input, v.ActionID, b})
	}
	return nil
}

// firstDiff compares replayed and recorded outputs input record by input
// record, in input order, and describes the first record whose outputs
// differ, or returns "".
func firstDiff(kind, topic string, replayed, recorded []output) string {
	a, b := replayed, recorded
	for len(a) > 0 || len(b) > 0 {
		var in rules.Input
		switch {
		case len(a) == 0:
			in = b[0].in
		case len(b) == 0:
			in = a[0].in
		case compareInput(a[0].in, b[0].in) <= 0:
			in = a[0].in
		default:
			in = b[0].in
		}
		var ga, gb []output
		for len(a) > 0 && a[0].in == in {
			ga, a = append(ga, a[0]), a[1:]
		}
		for len(b) > 0 && b[0].in == in {
			gb, b = append(gb, b[0]), b[1:]
		}
		if slices.EqualFunc(ga, gb, func(x, y output) bool { return bytes.Equal(x.value, y.value) }) {
			continue
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "different: %s of input %s/%d@%d", kind, in.Topic, in.Partition, in.Offset)
		onlyA, onlyB := without(ga, gb), without(gb, ga)
		if len(onlyA) == 0 && len(onlyB) == 0 {
			sb.WriteString(": the same records in another order")
			onlyA, onlyB = ga, gb
		}
		for _, o := range onlyA {
			fmt.Fprintf(&sb, "\n  replayed, not on %s: %s", topic, o.value)
		}
		for _, o := range onlyB {
			fmt.Fprintf(&sb, "\n  on %s, not replayed: %s", topic, o.value)
		}
		return sb.String()
	}
	return ""
}

func compareInput(x, y rules.Input) int {
	return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition), cmp.Compare(x.Offset, y.Offset))
}

// without returns the outputs of x that y does not hold (as many times).
func without(x, y []output) []output {
	left := map[string]int{}
	for _, o := range y {
		left[string(o.value)]++
	}
	var out []output
	for _, o := range x {
		if left[string(o.value)] > 0 {
			left[string(o.value)]--
			continue
		}
		out = append(out, o)
	}
	return out
}

// writeReplay writes the replayed outputs as JSON Lines.
func writeReplay(dir string, o *outputs) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, outs := range map[string][]output{"decisions.jsonl": o.decisions, "proposals.jsonl": o.proposals, "actions.jsonl": o.verdicts} {
		var b bytes.Buffer
		for _, x := range outs {
			b.Write(x.value)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
