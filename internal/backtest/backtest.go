// Package backtest runs a rule set over JSON Lines files: stage 1 over the
// metric events, then stage 2 (the guards) over the rules' own proposals and
// any external ones, writing decisions.jsonl, actions.jsonl and dlq.jsonl.
//
// # Determinism
//
// The output files are a function of the input files and the rule set: the
// same inputs give byte-identical files. Stage 2 sees one log of proposals:
// the external ones in file order merged with the rules' in the order stage
// 1 made them, taking whichever comes first in ts (external first at equal
// ts). Each source keeps its own order, out-of-order timestamps included.
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
	"fmt"
	"io"
	"maps"
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
	// Actions, when not nil, holds external proposals.
	Actions     io.Reader
	ActionsName string
	// OutDir receives decisions.jsonl, actions.jsonl and dlq.jsonl.
	OutDir string
	// Batch is the number of records per batch; default 8192.
	Batch int
	// Clock measures elapsed time; default the system clock.
	Clock engine.Clock
}

// Summary counts what a backtest did.
type Summary struct {
	Lines      int64          // lines of the input read
	Events     int64          // records processed by stage 1
	Rejected   int64          // events sent to the dead-letter output
	BadActions int64          // external proposals sent to the dead-letter output
	Duplicates int64          // events already applied
	Decisions  map[string]int // by rule id
	Types      map[string]int // decisions by type
	Proposals  int            // proposals of the rules
	External   int            // external proposals read
	Verdicts   map[string]int // by status or status/reason
	RuleErrors map[string]int // by rule id
	Elapsed    time.Duration
}

type observer struct{ s *Summary }

func (o observer) Observe(st engine.Stats) {
	s := o.s
	if st.Stage == 1 {
		s.Rejected += int64(st.Rejected)
		s.Events += int64(st.Records)
		s.Duplicates += int64(st.Duplicates)
		s.Proposals += st.Proposals
	}
	for k, v := range st.Decisions {
		s.Decisions[k] += v
	}
	for k, v := range st.Verdicts {
		s.Verdicts[k] += v
	}
	for k, v := range st.RuleErrors {
		s.RuleErrors[k] += v
	}
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Run runs the backtest.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	start := o.Clock.Now()
	sum := &Summary{Decisions: map[string]int{}, Types: map[string]int{}, Verdicts: map[string]int{}, RuleErrors: map[string]int{}}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "adrules-backtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The state of a backtest is thrown away: no write-ahead log.
	db, err := state.Open(dir, state.Options{Pebble: &pebble.Options{DisableWAL: true, MemTableSize: 64 << 20}})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	store := engine.StoreFunc(func(topic string, partition int32) (engine.PartitionState, error) {
		return db.Partition(topic, partition)
	})

	files := map[string]*bufio.Writer{}
	for _, name := range []string{"decisions.jsonl", "actions.jsonl", "dlq.jsonl"} {
		f, err := os.Create(filepath.Join(o.OutDir, name))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		files[name] = w
	}
	sink := &jsonl.Sink{
		Decisions: files["decisions.jsonl"], Verdicts: files["actions.jsonl"], DeadLetters: files["dlq.jsonl"],
		KeepProposals: true,
	}
	obs := observer{sum}
	opts := []engine.Opt{engine.WithClock(o.Clock), engine.WithObserver(obs), engine.WithKeyCheck(engine.KeyIgnored), engine.WithProposalTopics(ProposalsTopic)}

	// Stage 1: metric events.
	src := jsonl.NewSource(o.Input, o.InputName, o.Batch)
	eng, err := engine.New(o.RuleSet, src, sink, store, opts...)
	if err != nil {
		return nil, err
	}
	if err := eng.Run(ctx); err != nil {
		return nil, err
	}
	sum.Lines = src.Read

	// Stage 2: the rules' proposals and the external ones, by ts.
	recs, err := proposalRecords(o, sink, sum)
	if err != nil {
		return nil, err
	}
	eng2, err := engine.New(o.RuleSet, jsonl.Records(recs), sink, store, opts...)
	if err != nil {
		return nil, err
	}
	if err := eng2.Run(ctx); err != nil {
		return nil, err
	}
	for _, w := range files {
		if err := w.Flush(); err != nil {
			return nil, err
		}
	}
	sum.Types = decisionTypes(o.RuleSet, sum.Decisions)
	sum.Elapsed = o.Clock.Now().Sub(start)
	return sum, nil
}

// decisionTypes sums decisions by the type their rules emit.
func decisionTypes(rs *rules.RuleSet, byRule map[string]int) map[string]int {
	types := map[string]int{}
	for _, r := range rs.Doc.Rules {
		if r.Emit != nil && byRule[r.ID] > 0 {
			types[r.Emit.Type] += byRule[r.ID]
		}
	}
	return types
}

// merge interleaves two proposal logs, each kept in its own order, taking
// the earlier head by ts, a's first at equal ts.
func merge(a, b []staged) []staged {
	out := make([]staged, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].ts < a[0].ts {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

type staged struct {
	ts       int64
	external bool
	value    []byte
}

func proposalRecords(o Options, sink *jsonl.Sink, sum *Summary) ([]engine.Record, error) {
	var all, ext, rule []staged
	if o.Actions != nil {
		r := bufio.NewReaderSize(o.Actions, 1<<20)
		var dead engine.Output
		for off := int64(0); ; off++ {
			line, err := r.ReadBytes('\n')
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				in := rules.Input{Topic: o.ActionsName, Offset: off}
				p, perr := rules.DecodeProposal(line)
				if perr != nil {
					dead.DeadLetters = append(dead.DeadLetters, engine.DeadLetter{Input: in, Value: append([]byte(nil), line...), Reason: perr.Error()})
				} else {
					sum.External++
					p.Input = &in
					b, _ := json.Marshal(p)
					ext = append(ext, staged{ts: int64(p.TS), external: true, value: b})
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", o.ActionsName, err)
			}
		}
		sum.BadActions += int64(len(dead.DeadLetters))
		if err := sink.Write(context.Background(), &dead); err != nil {
			return nil, err
		}
	}
	for i := range sink.Proposals {
		b, err := json.Marshal(&sink.Proposals[i])
		if err != nil {
			return nil, err
		}
		rule = append(rule, staged{ts: int64(sink.Proposals[i].TS), value: b})
	}
	all = merge(ext, rule)
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
