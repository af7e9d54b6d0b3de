// Package backtest runs a rule set over a history: a JSON Lines file, or
// ranges of topics read by the caller (an engine.Source). Stage 1 runs over
// the metric events, then stage 2 (the guards) over the rules' own proposals
// and any external ones, writing decisions.jsonl, actions.jsonl and
// dlq.jsonl. An Emit filter keeps the output of the records in a range only:
// those before it warm the state up.
//
// # Determinism
//
// The output files are a function of the inputs and the rule set: the same
// inputs give byte-identical files. Stage 2 sees one log of proposals: the
// external ones (one log per file or partition) merged with the rules' (one
// log per input partition, in the order stage 1 made them), taking whichever
// head comes first in ts (the earlier log at equal ts, external ones first).
// Each log keeps its own order, out-of-order timestamps included.
//
// # What it never does
//
// It writes nothing but the output directory and its temporary state
// directory, and reads the wall clock only to report elapsed time.
package backtest

import (
	"bufio"
	"bytes"
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
	if st.Stage == 1 {
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
	inner *jsonl.Sink
	emit  func(rules.Input) bool
	sum   *Summary
	out   engine.Output
	stage int
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
			if k.stage == 1 {
				k.sum.Rejected++
			}
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
	eng, err := engine.New(o.RuleSet, src, sink, store, opts...)
	if err != nil {
		return nil, err
	}
	if err := eng.Run(ctx); err != nil {
		return stop(err)
	}
	if fileSrc != nil {
		sum.Lines = fileSrc.Read
	}

	// Stage 2: the rules' proposals and the external ones, by ts.
	sink.stage = 2
	recs, err := proposalRecords(o, sink, sum)
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

// mergeLogs interleaves proposal logs, each kept in its own order, taking
// the earliest head by ts, the earlier log first at equal ts.
func mergeLogs(logs [][]staged) []staged {
	n := 0
	for _, l := range logs {
		n += len(l)
	}
	out := make([]staged, 0, n)
	for {
		best := -1
		for i, l := range logs {
			if len(l) > 0 && (best < 0 || l[0].ts < logs[best][0].ts) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		// Take the run of the best log that stays at or before every
		// other head: one comparison per log per run, not per record.
		limit := int64(math.MaxInt64)
		for i, l := range logs {
			if i != best && len(l) > 0 {
				if i < best {
					limit = min(limit, l[0].ts-1)
				} else {
					limit = min(limit, l[0].ts)
				}
			}
		}
		l := logs[best]
		k := 1
		for k < len(l) && l[k].ts <= limit {
			k++
		}
		out = append(out, l[:k]...)
		logs[best] = l[k:]
	}
}

// partitionOf names the input partition a rule's proposal came from.
func partitionOf(p rules.Proposal) rules.Input {
	if p.Input == nil {
		return rules.Input{}
	}
	return rules.Input{Topic: p.Input.Topic, Partition: p.Input.Partition}
}

type staged struct {
	ts    int64
	value []byte
}

// proposalRecords builds the input of stage 2: the external proposals (one
// log per file or partition) and the rules' (one log per input partition),
// merged by ts.
func proposalRecords(o Options, sink *keepSink, sum *Summary) ([]engine.Record, error) {
	var logs [][]staged
	var dead engine.Output
	external := func(line []byte, in rules.Input) {
		p, perr := rules.DecodeProposal(line)
		if perr != nil {
			dead.DeadLetters = append(dead.DeadLetters, engine.DeadLetter{Input: in, Value: append([]byte(nil), line...), Reason: perr.Error()})
			return
		}
		sum.External++
		p.Input = &in
		b, _ := json.Marshal(p)
		if len(logs) == 0 {
			logs = append(logs, nil)
		}
		logs[len(logs)-1] = append(logs[len(logs)-1], staged{ts: int64(p.TS), value: b})
	}
	if o.Actions != nil {
		logs = append(logs, nil)
		r := bufio.NewReaderSize(o.Actions, 1<<20)
		for off := int64(0); ; off++ {
			line, err := r.ReadBytes('\n')
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				external(line, rules.Input{Topic: o.ActionsName, Offset: off})
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", o.ActionsName, err)
			}
		}
	}
	for i, r := range o.ActionRecords {
		if i == 0 || r.Partition != o.ActionRecords[i-1].Partition || r.Topic != o.ActionRecords[i-1].Topic {
			logs = append(logs, nil)
		}
		external(r.Value, rules.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
	}
	before := len(dead.DeadLetters)
	if err := sink.Write(context.Background(), &dead); err != nil {
		return nil, err
	}
	sum.BadActions += int64(before)
	props := sink.inner.Proposals
	for i := range props {
		if i == 0 || partitionOf(props[i]) != partitionOf(props[i-1]) {
			logs = append(logs, nil)
		}
		b, err := json.Marshal(&props[i])
		if err != nil {
			return nil, err
		}
		logs[len(logs)-1] = append(logs[len(logs)-1], staged{ts: int64(props[i].TS), value: b})
	}
	all := mergeLogs(logs)
	recs := make([]engine.Record, len(all))
	for i, s := range all {
		recs[i] = engine.Record{Topic: ProposalsTopic, Offset: int64(i), Value: s.value}
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
