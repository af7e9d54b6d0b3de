package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options say what a replay reads, and what it runs with. Each field says
// what its zero value means; Cluster and Store are required.
type Options struct {
	// Cluster is the connection: its client finds the ranges and reads
	// the nodes' group, its Opts make the replay's consumers, its Topics
	// name the input, output and config topics.
	Cluster *streams.Cluster
	// RuleSet is the rule set's name on the config topic (default
	// "default").
	RuleSet string
	// Group is the nodes' consumer group, whose offsets CheckProcessed
	// reads (default "adrules").
	Group string
	// From and To bound the range of the metrics topic replayed (To
	// exclusive); external proposals on the actions topic are bounded by
	// the same times. Offsets name partitions of the metrics topic: the
	// actions topic is then replayed whole. Zero bounds: the whole log.
	From, To streams.Bound
	// Store holds the state Run rebuilds: empty, for one Run.
	Store engine.Store
	// Log gets the warnings (default: none kept).
	Log io.Writer
	// Progress, when set, is called as Run starts each pass over the
	// logs with the records it reads (total), what they are (unit) and a
	// counter of those read so far (read, safe from any goroutine); Run
	// calls the stop it returns when the pass ends. Default: none.
	Progress func(total int64, unit string, read func() int64) (stop func())
}

func (o *Options) defaults() error {
	switch {
	case o.Cluster == nil:
		return errors.New("replay: no Cluster")
	case o.Store == nil:
		return errors.New("replay: no Store")
	}
	if o.RuleSet == "" {
		o.RuleSet = "default"
	}
	if o.Group == "" {
		o.Group = "adrules"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// Replay is what a replay read before it runs: the range, the switch
// points and versions' documents, and the outputs recorded for the range.
type Replay struct {
	o      Options
	cl     *kgo.Client    // the Cluster's
	opts   []kgo.Opt      // the Cluster's: seed brokers, TLS, SASL
	topics streams.Topics // the Cluster's

	metrics, actions streams.Ranges // the range, on the input topics
	proposals        streams.Ranges // all of the proposals log, as of now
	// history: the switch points (the switches topic and the decisions
	// topic) and the versions' documents, by version number.
	history  *streams.History
	recorded Outputs
}

// Outputs are decisions, proposals and verdicts as the bytes a node
// writes, each with the input record it came from, in input order (the
// outputs of one record in the order a node writes them).
type Outputs struct {
	Decisions []Output
	Proposals []Output
	Verdicts  []Output
}

// Output is one decision, proposal or verdict.
type Output struct {
	Input rules.Input // the record it came from
	ID    string      // decision_id or action_id
	Value []byte      // as a node writes it
}

// Load resolves the range and reads the config history, the switch points
// and the recorded outputs.
func Load(ctx context.Context, o Options) (*Replay, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &Replay{o: o, cl: o.Cluster.Client(), opts: o.Cluster.Opts(), topics: o.Cluster.Topics()}
	cl, t, from, to := r.cl, r.topics, o.From, o.To
	var err error
	if r.metrics, err = streams.ResolveRange(ctx, cl, t.Metrics, from, to, streams.Warm{Start: true}); err != nil {
		return nil, err
	}
	// Offsets name partitions of the metrics topic: external proposals
	// are then compared over the whole actions log.
	afrom, ato := from, to
	if from.Offsets != nil || to.Offsets != nil {
		afrom, ato = streams.Bound{}, streams.Bound{}
	}
	if r.actions, err = streams.ResolveRange(ctx, cl, t.Actions, afrom, ato, streams.Warm{Start: true}); err != nil {
		return nil, err
	}
	if r.proposals, err = streams.ResolveRange(ctx, cl, t.Proposals, streams.Bound{}, streams.Bound{}, streams.Warm{}); err != nil {
		return nil, err
	}
	r.history = streams.NewHistory(r.opts, t, o.RuleSet, versions.Compile)
	if err := r.history.Refresh(ctx); err != nil {
		return nil, err
	}
	err = streams.ReadTopic(ctx, cl, r.opts, t.Decisions, func(v []byte) error {
		var head struct {
			Type          string      `json:"type"`
			RulesetSHA256 string      `json:"ruleset_sha256"`
			DecisionID    string      `json:"decision_id"`
			Input         rules.Input `json:"input"`
		}
		if err := json.Unmarshal(v, &head); err != nil {
			return fmt.Errorf("%s holds a record that is not a decision: %w", t.Decisions, err)
		}
		if head.Type == "config_applied" {
			var a engine.ConfigApplied
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("%s holds a config_applied record that does not decode: %w", t.Decisions, err)
			}
			r.history.Add(a)
			return nil
		}
		if r.metrics.Contains(head.Input) {
			r.recorded.Decisions = append(r.recorded.Decisions, Output{head.Input, head.DecisionID, v})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Verdicts and proposals: those whose proposal came from a record in
	// the range (a metric event, or an external proposal).
	for _, x := range []struct {
		topic, what string
		into        *[]Output
	}{{t.Verdicts, "verdict", &r.recorded.Verdicts}, {t.Proposals, "proposal", &r.recorded.Proposals}} {
		err = streams.ReadTopic(ctx, cl, r.opts, x.topic, func(v []byte) error {
			var head struct {
				ActionID string       `json:"action_id"`
				Input    *rules.Input `json:"input"`
			}
			if err := json.Unmarshal(v, &head); err != nil {
				return fmt.Errorf("%s holds a record that is not a %s: %w", x.topic, x.what, err)
			}
			if head.Input != nil && (r.metrics.Contains(*head.Input) || r.actions.Contains(*head.Input)) {
				*x.into = append(*x.into, Output{*head.Input, head.ActionID, v})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	r.recorded.sort()
	return r, nil
}

// Range is the range replayed on the metrics topic, by partition.
func (r *Replay) Range() streams.Ranges { return r.metrics }

// Recorded are the outputs the topics hold for the range.
func (r *Replay) Recorded() *Outputs { return &r.recorded }

// CheckProcessed warns (on Options.Log) when the nodes' group has not
// committed past the range: outputs of records not yet processed cannot be
// compared.
func (r *Replay) CheckProcessed(ctx context.Context) {
	group := r.o.Group
	offs, err := r.o.Cluster.Admin().FetchOffsets(ctx, group)
	if err != nil {
		fmt.Fprintf(r.o.Log, "replay: cannot read group %s's offsets (%v): not checking that it processed the range\n", group, err)
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
			fmt.Fprintf(r.o.Log, "replay: warning: group %s has processed %s/%d only up to offset %d, not to %d: records after it have no recorded output yet\n",
				group, pr.Topic, pr.Partition, o.At, pr.To)
		}
	}
}

// Run replays stage 1 over the metric events and stage 2 over the recorded
// proposals log, each record under the version in force for it, and
// returns the outputs of the records in the range.
func (r *Replay) Run(ctx context.Context) (*Outputs, error) {
	t := r.topics
	got := &Outputs{}
	emit := append(append(streams.Ranges(nil), r.metrics...), r.actions...)
	sink := &sink{keep: emit.Contains, encode: engine.Encode, out: got}
	// Stages 0 and 1 (the relay of external proposals, the rules over the
	// metric events), then stage 2 over the proposals log as recorded.
	first := append(append(streams.Ranges(nil), r.actions...), r.metrics...)
	for _, stage := range []streams.Ranges{first, r.proposals} {
		src := &switchSource{src: streams.NewRangeSource(r.opts, stage, 0), history: r.history}
		var initial *rules.RuleSet
		for _, pr := range stage {
			if v, sha, _, ok := r.history.VersionAt(pr.Topic, pr.Partition, pr.Warm); ok {
				var err error
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
		eng, err := engine.New(initial, src, sink, r.o.Store, engine.WithKeyCheck(engine.KeyRequired),
			engine.WithPartitioner(streams.Partitioner(t.Metrics, int32(len(r.metrics)))),
			engine.WithRelayTopics(t.Actions), engine.WithProposalTopics(t.Proposals))
		if err != nil {
			return nil, err
		}
		src.eng = eng
		stop := func() {}
		if r.o.Progress != nil {
			stop = r.o.Progress(stage.Len(), "records of "+stage[0].Topic, src.src.Read)
		}
		err = eng.Run(ctx)
		stop()
		if err != nil {
			return nil, err
		}
	}
	got.sort()
	return got, nil
}

// FirstDiff compares replayed with the recorded outputs, decisions first,
// then proposals, then verdicts, and describes the first input record
// whose outputs differ; "" when they are identical.
func (r *Replay) FirstDiff(replayed *Outputs) string {
	t := r.topics
	if d := firstDiff("decisions", t.Decisions, replayed.Decisions, r.recorded.Decisions); d != "" {
		return d
	}
	if d := firstDiff("proposals", t.Proposals, replayed.Proposals, r.recorded.Proposals); d != "" {
		return d
	}
	return firstDiff("verdicts", t.Verdicts, replayed.Verdicts, r.recorded.Verdicts)
}

// Result is what Verify found.
type Result struct {
	Range              streams.Ranges // the range on the metrics topic
	Replayed, Recorded *Outputs
	// Diff describes the first difference, "" when the replay is
	// identical to what the topics hold.
	Diff string
}

// Verify loads the range, checks that the nodes processed it, replays it
// and compares: Load, CheckProcessed, Run and FirstDiff in one call.
func Verify(ctx context.Context, o Options) (*Result, error) {
	r, err := Load(ctx, o)
	if err != nil {
		return nil, err
	}
	r.CheckProcessed(ctx)
	got, err := r.Run(ctx)
	if err != nil {
		return nil, err
	}
	return &Result{Range: r.Range(), Replayed: got, Recorded: r.Recorded(), Diff: r.FirstDiff(got)}, nil
}

// switchSource cuts its source's batches where the rule set version
// changes and swaps the engine to each batch's version before handing it
// over (a swap applies to the batches that start after it).
type switchSource struct {
	src     *streams.RangeSource
	history *streams.History
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
	version, sha, until, ok := s.history.VersionAt(first.Topic, first.Partition, first.Offset)
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
		rs, err := s.history.RuleSet(version, sha)
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

// sink keeps the decisions, proposals and verdicts of the records in
// range, as the bytes a node writes.
type sink struct {
	keep   func(rules.Input) bool
	encode func(any) ([]byte, error)
	out    *Outputs
}

func (s *sink) Write(_ context.Context, out *engine.Output) error {
	for i := range out.Decisions {
		d := &out.Decisions[i]
		if !s.keep(d.Input) {
			continue
		}
		b, err := s.encode(d)
		if err != nil {
			return err
		}
		s.out.Decisions = append(s.out.Decisions, Output{d.Input, d.DecisionID, b})
	}
	for i := range out.Proposals {
		p := &out.Proposals[i]
		if p.Input == nil || !s.keep(*p.Input) {
			continue
		}
		b, err := s.encode(p)
		if err != nil {
			return err
		}
		s.out.Proposals = append(s.out.Proposals, Output{*p.Input, p.ActionID, b})
	}
	for i := range out.Verdicts {
		v := &out.Verdicts[i]
		if v.Input == nil || !s.keep(*v.Input) {
			continue
		}
		b, err := s.encode(v)
		if err != nil {
			return err
		}
		s.out.Verdicts = append(s.out.Verdicts, Output{*v.Input, v.ActionID, b})
	}
	return nil
}
