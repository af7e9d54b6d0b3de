package backtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/jsonl"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2"
)

// ProposalsTopic names the stage-2 input of a backtest.
const ProposalsTopic = "adrules.proposals"

// Options configure Run.
type Options struct {
	RuleSet *rules.RuleSet
	// Input holds metric events; InputName names them in dead letters and
	// decision inputs (the file name, or "-").
	Input     io.Reader
	InputName string
	// Source, used when Input is nil, yields the metric events: a topic
	// range, one partition after the other.
	Source engine.Source
	// Actions, when not nil, holds external proposals.
	Actions     io.Reader
	ActionsName string
	// ActionRecords are external proposals read from a topic: each
	// partition's in offset order, the partitions one after the other.
	ActionRecords []engine.Record
	// Emit, when not nil, says whether the output of an input record is
	// written; the records it refuses only bring state up to date (the
	// warm-up before a range).
	Emit func(rules.Input) bool
	// Partitioner, when not nil, names the partition a metric event's key
	// belongs to (engine.WithPartitioner): a topic range skips the records
	// a node rerouted, and reads their copies where they belong.
	Partitioner func(topic string, key []byte) int32
	// OutDir receives decisions.jsonl, actions.jsonl and dlq.jsonl.
	OutDir string
	// Batch is the number of records per batch; default 8192.
	Batch int
	// Clock measures elapsed time; default the system clock.
	Clock engine.Clock
}

// Summary counts what a backtest did.
type Summary struct {
	Lines      int64          // lines of the input file read
	Events     int64          // records processed by stage 1, warm-up included
	WarmUp     int64          // of those, records read only to warm state up (set by the caller)
	Rejected   int64          // events sent to the dead-letter output
	BadActions int64          // external proposals sent to the dead-letter output
	Duplicates int64          // events already applied
	Decisions  map[string]int // written, by rule id
	Types      map[string]int // written decisions by type
	Proposals  int            // proposals of the rules, warm-up included
	External   int            // external proposals read
	Verdicts   map[string]int // written, by status or status/reason
	RuleErrors map[string]int // by rule id
	Elapsed    time.Duration
	// Interrupted says the run was stopped (Ctrl-C) before the end of its
	// input: the files hold what was written until then, and stage 2 did
	// not run.
	Interrupted bool
}

type observer struct{ s *Summary }

func (o observer) Observe(st engine.Stats) {
	s := o.s
	switch st.Stage {
	case 0:
		s.External += st.Proposals
	case 1:
		s.Events += int64(st.Records)
		s.Duplicates += int64(st.Duplicates)
		s.Proposals += st.Proposals
	}
	for k, v := range st.RuleErrors {
		s.RuleErrors[k] += v
	}
}

// keepSink writes the output of the records Emit keeps and counts it; it
// hands every proposal on, warm-up included, so stage 2 sees them all.
type keepSink struct {
	inner   *jsonl.Sink
	emit    func(rules.Input) bool
	sum     *Summary
	out     engine.Output
	stage   int
	sources []rules.Source // the partitions that reported progress, in order
	seen    map[rules.Source]bool
}

func (k *keepSink) keep(in *rules.Input) bool { return k.emit == nil || in == nil || k.emit(*in) }

func (k *keepSink) Write(ctx context.Context, out *engine.Output) error {
	o := &k.out
	o.Decisions, o.Verdicts, o.DeadLetters = o.Decisions[:0], o.Verdicts[:0], o.DeadLetters[:0]
	o.Proposals, o.Errors = out.Proposals, out.Errors
	for _, d := range out.Decisions {
		if k.keep(&d.Input) {
			o.Decisions = append(o.Decisions, d)
			k.sum.Decisions[d.RuleID]++
			k.sum.Types[d.Type]++
		}
	}
	for _, v := range out.Verdicts {
		if k.keep(v.Input) {
			o.Verdicts = append(o.Verdicts, v)
			key := v.Status
			if v.Reason != "" {
				key += "/" + v.Reason
			}
			k.sum.Verdicts[key]++
		}
	}
	for _, d := range out.DeadLetters {
		if k.keep(&d.Input) {
			o.DeadLetters = append(o.DeadLetters, d)
			switch k.stage {
			case 0:
				k.sum.BadActions++
			case 1:
				k.sum.Rejected++
			}
		}
	}
	for _, m := range out.Progress {
		src := rules.Source{Topic: m.Topic, Partition: m.Partition}
		if k.seen == nil {
			k.seen = map[rules.Source]bool{}
		}
		if !k.seen[src] {
			k.seen[src] = true
			k.sources = append(k.sources, src)
		}
	}
	return k.inner.Write(ctx, o)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Run runs the backtest. When ctx ends first, it returns the summary of
// what was done (Interrupted set) with ctx's error; the files hold every
// line written until then.
func Run(ctx context.Context, o Options) (sum *Summary, err error) {
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	start := o.Clock.Now()
	sum = &Summary{Decisions: map[string]int{}, Types: map[string]int{}, Verdicts: map[string]int{}, RuleErrors: map[string]int{}}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	store, closeStore, err := TempStore()
	if err != nil {
		return nil, err
	}
	defer closeStore()

	files := map[string]*bufio.Writer{}
	for _, name := range []string{"decisions.jsonl", "actions.jsonl", "dlq.jsonl"} {
		f, err := os.Create(filepath.Join(o.OutDir, name))
		if err != nil {
			return nil, err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		files[name] = w
		// Whatever ends the run, what was written reaches the file.
		defer func() {
			if ferr := errors.Join(w.Flush(), f.Close()); ferr != nil && err == nil {
				sum, err = nil, ferr
			}
		}()
	}
	inner := &jsonl.Sink{
		Decisions: files["decisions.jsonl"], Verdicts: files["actions.jsonl"], DeadLetters: files["dlq.jsonl"],
		KeepProposals: true,
	}
	sink := &keepSink{inner: inner, emit: o.Emit, sum: sum, stage: 1}
	obs := observer{sum}
	opts := []engine.Opt{engine.WithClock(o.Clock), engine.WithObserver(obs), engine.WithKeyCheck(engine.KeyIgnored), engine.WithProposalTopics(ProposalsTopic)}
	stop := func(err error) (*Summary, error) {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			sum.Interrupted = true
			sum.Elapsed = o.Clock.Now().Sub(start)
			return sum, err
		}
		return nil, err
	}

	// Stage 1: metric events.
	src := o.Source
	var fileSrc *jsonl.Source
	if o.Input != nil {
		fileSrc = jsonl.NewSource(o.Input, o.InputName, o.Batch)
		src = fileSrc
	}
	if src == nil {
		return nil, errors.New("backtest: no input")
	}
	stage1 := opts
	if o.Partitioner != nil {
		stage1 = append(slices.Clip(opts), engine.WithPartitioner(o.Partitioner))
	}
	eng, err := engine.New(o.RuleSet, src, sink, store, stage1...)
	if err != nil {
		return nil, err
	}
	if err := eng.Run(ctx); err != nil {
		return stop(err)
	}
	if fileSrc != nil {
		sum.Lines = fileSrc.Read
	}

	// The relay: external proposals get their place in stage 2's order as
	// a node's relay gives it, and bad ones go to the dead-letter output.
	sink.stage = 0
	var actSrc engine.Source
	switch {
	case o.Actions != nil:
		actSrc = jsonl.NewSource(o.Actions, o.ActionsName, o.Batch)
	case len(o.ActionRecords) > 0:
		actSrc = jsonl.Records(o.ActionRecords)
	}
	if actSrc != nil {
		relayTopics := []string{o.ActionsName}
		for _, r := range o.ActionRecords {
			if !slices.Contains(relayTopics, r.Topic) {
				relayTopics = append(relayTopics, r.Topic)
			}
		}
		eng0, err := engine.New(o.RuleSet, actSrc, sink, store, append(opts, engine.WithRelayTopics(relayTopics...))...)
		if err != nil {
			return nil, err
		}
		if err := eng0.Run(ctx); err != nil {
			return stop(err)
		}
	}

	// Stage 2: every proposal, judged in stage 2's order (rules.OrderKey)
	// as the nodes judge them once every source has passed them: here all
	// of them are read first, then every source says it is done.
	sink.stage = 2
	recs, err := proposalRecords(sink)
	if err != nil {
		return nil, err
	}
	eng2, err := engine.New(o.RuleSet, jsonl.Records(recs), sink, store, opts...)
	if err != nil {
		return nil, err
	}
	if err := eng2.Run(ctx); err != nil {
		return stop(err)
	}
	sum.Elapsed = o.Clock.Now().Sub(start)
	return sum, nil
}

// TempStore opens state in a temporary Pebble directory, without a
// write-ahead log (the state of a backtest or a replay is thrown away);
// closing it removes the directory.
func TempStore() (engine.Store, func(), error) {
	dir, err := os.MkdirTemp("", "adrules-backtest-")
	if err != nil {
		return nil, nil, err
	}
	db, err := state.Open(dir, state.Options{Pebble: &pebble.Options{DisableWAL: true, MemTableSize: 64 << 20}})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	store := engine.StoreFunc(func(topic string, partition int32) (engine.PartitionState, error) {
		return db.Partition(topic, partition)
	})
	return store, func() { db.Close(); os.RemoveAll(dir) }, nil
}

// proposalRecords builds the input of stage 2: every proposal (the rules'
// and the relayed external ones, each with its Order), then for every
// source that made one a progress record saying it is idle: so stage 2
// judges all of them, in order.
func proposalRecords(sink *keepSink) ([]engine.Record, error) {
	props := sink.inner.Proposals
	recs := make([]engine.Record, 0, len(props)+len(sink.sources))
	for i := range props {
		b, err := json.Marshal(&props[i])
		if err != nil {
			return nil, err
		}
		recs = append(recs, engine.Record{Topic: ProposalsTopic, Offset: int64(len(recs)), Value: b})
	}
	for _, src := range sink.sources {
		m := rules.Progress{Topic: src.Topic, Partition: src.Partition, At: math.MaxInt64, Sources: len(sink.sources), Idle: true}
		recs = append(recs, engine.Record{Topic: ProposalsTopic, Offset: int64(len(recs)), Value: rules.EncodeProgress(m)})
	}
	return recs, nil
}

// Print writes the summary for people.
func (s *Summary) Print(w io.Writer) {
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Events) / s.Elapsed.Seconds()
	}
	fmt.Fprintf(w, "events:     %d read, %d rejected to dlq, %d duplicates ignored\n", s.Events, s.Rejected, s.Duplicates)
	fmt.Fprintf(w, "decisions:  %d\n", total(s.Decisions))
	for _, k := range slices.Sorted(maps.Keys(s.Decisions)) {
		fmt.Fprintf(w, "  rule %-24s %d\n", k, s.Decisions[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Types)) {
		fmt.Fprintf(w, "  type %-24s %d\n", k, s.Types[k])
	}
	fmt.Fprintf(w, "proposals:  %d from rules, %d external (%d rejected to dlq)\n", s.Proposals, s.External, s.BadActions)
	fmt.Fprintf(w, "verdicts:   %d\n", total(s.Verdicts))
	for _, k := range slices.Sorted(maps.Keys(s.Verdicts)) {
		fmt.Fprintf(w, "  %-29s %d\n", k, s.Verdicts[k])
	}
	if len(s.RuleErrors) > 0 {
		fmt.Fprintf(w, "rule errors: %d (counted and skipped)\n", total(s.RuleErrors))
		for _, k := range slices.Sorted(maps.Keys(s.RuleErrors)) {
			fmt.Fprintf(w, "  rule %-24s %d\n", k, s.RuleErrors[k])
		}
	}
	fmt.Fprintf(w, "elapsed:    %s (%.0f events/s)\n", s.Elapsed.Round(time.Millisecond), rate)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
