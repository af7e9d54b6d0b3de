package backtest

import (
	"context"
	"fmt"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/report"
	"github.com/adrules/adrules/streams"
)

// TopicOptions configure ResolveTopic: which records of which topics a
// topic backtest reads.
type TopicOptions struct {
	// Topic holds the metric events.
	Topic string
	// Actions, when not "", is a topic of external proposals read beside
	// them: by the same bounds when those are times; whole when either is
	// offsets, which name partitions of Topic.
	Actions string
	// From and To bound the range, To excluded; a zero Bound is the start
	// or the end of each partition.
	From, To streams.Bound
	// Warmup is how much event time before From is read to warm the state
	// up, without output; DefaultWarmup gives the longest window of the
	// sides' rule sets, 0 none.
	Warmup time.Duration
	// Batch is the number of records per batch; default 8192.
	Batch int
	// Progress, when set, gets the records of Topic read by all sides,
	// warm-up included.
	Progress ProgressFunc
}

// A TopicRun is a topic backtest whose ranges are resolved and whose
// external proposals are read: its sides, run by Run, all read exactly
// the same records.
type TopicRun struct {
	c       *streams.Cluster
	o       TopicOptions
	ranges  streams.Ranges // of Topic
	all     streams.Ranges // of Topic and of Actions: output is kept for [From, To)
	actions []engine.Record
}

// ResolveTopic turns o into offsets of each partition (streams.ResolveRange,
// warm-up included) and reads the external proposals of the range. It reads
// the partitions directly: it joins no consumer group and writes nothing.
func ResolveTopic(ctx context.Context, c *streams.Cluster, o TopicOptions) (*TopicRun, error) {
	warm := streams.Warm{Before: o.Warmup}
	ranges, err := streams.ResolveRange(ctx, c.Client(), o.Topic, o.From, o.To, warm)
	if err != nil {
		return nil, err
	}
	r := &TopicRun{c: c, o: o, ranges: ranges, all: append(streams.Ranges(nil), ranges...)}
	if o.Actions == "" {
		return r, nil
	}
	afrom, ato := o.From, o.To
	if o.From.Offsets != nil || o.To.Offsets != nil {
		afrom, ato = streams.Bound{}, streams.Bound{}
	}
	aranges, err := streams.ResolveRange(ctx, c.Client(), o.Actions, afrom, ato, warm)
	if err != nil {
		return nil, err
	}
	r.all = append(r.all, aranges...)
	if r.actions, err = streams.ReadRanges(ctx, c.Opts(), aranges); err != nil {
		return nil, fmt.Errorf("read %s: %w", o.Actions, err)
	}
	return r, nil
}

// Ranges are the ranges of the metrics topic the sides read.
func (r *TopicRun) Ranges() streams.Ranges { return r.ranges }

// WarmUp is the number of records of the metrics topic read before the
// range, without output.
func (r *TopicRun) WarmUp() int64 {
	var n int64
	for _, pr := range r.ranges {
		n += pr.From - pr.Warm
	}
	return n
}

// Meta describes the records of the run for a report's header: the topics
// and the records of the range. From and To are the caller's to fill in as
// it was given them.
func (r *TopicRun) Meta() report.Meta {
	return report.Meta{Input: r.o.Topic, Actions: r.o.Actions, Records: r.ranges.Len() - r.WarmUp()}
}

// Run runs every side over the run's records at once, each with its own
// consumer of the partitions and its own state, and sets each side's
// Summary (with WarmUp). Its error is as RunFiles'.
func (r *TopicRun) Run(ctx context.Context, sides []*Side) error {
	srcs := make([]*streams.RangeSource, len(sides))
	runs := make([]Options, len(sides))
	for i, s := range sides {
		srcs[i] = streams.NewRangeSource(r.c.Opts(), r.ranges, r.o.Batch)
		runs[i] = Options{RuleSet: s.RuleSet, Source: srcs[i], ActionRecords: r.actions, Emit: r.all.Emitted, OutDir: s.Dir, Batch: r.o.Batch,
			Partitioner: streams.Partitioner(r.o.Topic, int32(len(r.ranges)))}
	}
	if r.o.Progress != nil {
		defer r.o.Progress(r.ranges.Len()*int64(len(sides)), "records", func() int64 {
			var n int64
			for _, src := range srcs {
				n += src.Read()
			}
			return n
		})()
	}
	err := runSides(ctx, sides, runs)
	for _, s := range sides {
		if s.Summary != nil {
			s.Summary.WarmUp = r.WarmUp()
		}
	}
	return err
}
