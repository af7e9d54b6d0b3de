package node

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
)

// Observer is told what one pipeline of a node (the live one, or the
// shadow) does: the engine's batches and rebuilds, and the node's own
// events. A metrics adapter implements it (node/nodeprom); the node never
// reads anything back from it. Its methods are called from the node's
// goroutines, concurrently: each must be quick and safe for concurrent
// use. Embed NopObserver to implement only some.
type Observer interface {
	// Observe is told of one partition's batch (engine.Observer).
	engine.Observer
	// Rebuilding is told when a partition's state rebuild starts and ends
	// (engine.RebuildObserver).
	engine.RebuildObserver
	// Assigned is told of the partitions the pipeline's group gave
	// (on) or took from (!on) this node.
	Assigned(partitions map[string][]int32, on bool)
	// Restored is told that a partition's state is restored.
	Restored(topic string, partition int32)
	// RuleSet is told of the rule set the pipeline runs from now on: at
	// start and after each swap; nil when it runs none (no shadow).
	RuleSet(rs *rules.RuleSet)
	// ConfigRefused is told of a published record or version the node
	// refused (live or shadow): the last good one stays.
	ConfigRefused(reason string)
	// ShadowJudged is told of each judging round's result; j.Shadow is nil
	// when no shadow is published.
	ShadowJudged(j *Judgement)
	// Promoted is told that this node published the shadow version as the
	// next live one.
	Promoted(shadow, live int64)
	// Heartbeat is told of each heartbeat written (err nil) or not.
	Heartbeat(err error)
	// RestoreProgress is told, while a live partition's state is replayed
	// from its log, of the records replayed so far and of the records to
	// replay (total, -1 while not known), after each chunk.
	RestoreProgress(topic string, partition int32, replayed, total int64)
	// RestoreDone is told that a live partition's restore ended (just
	// before Restored): where its state came from and how long it took.
	RestoreDone(r Restore)
	// SnapshotWritten is told of each snapshot of a live partition the
	// node wrote to its store (err nil), or took and failed to write.
	SnapshotWritten(s SnapshotInfo, err error)
}

// The sources of a partition's restore (Restore.Source).
const (
	// RestoreSnapshot: a snapshot was imported, then the log's tail
	// replayed.
	RestoreSnapshot = "snapshot"
	// RestoreLog: no snapshot was imported and records were replayed from
	// the log.
	RestoreLog = "log"
	// RestoreLocal: the local state was current; nothing was imported or
	// replayed.
	RestoreLocal = "local"
)

// Restore is one partition's restore, from the moment the engine asked
// for its state to the moment it was ready.
type Restore struct {
	Topic     string
	Partition int32
	// Source is RestoreSnapshot, RestoreLog or RestoreLocal.
	Source string
	// Elapsed is the restore's wall time, from Options.Clock.
	Elapsed time.Duration
	// Replayed counts the records replayed from the log.
	Replayed int64
	// Snapshot is the snapshot imported (Source RestoreSnapshot), else nil.
	Snapshot *SnapshotInfo
	// EventTime is the partition's event time once restored (epoch ms),
	// math.MinInt64 before its first record.
	EventTime int64
}

// SnapshotInfo describes one snapshot of a partition.
type SnapshotInfo struct {
	Topic     string
	Partition int32
	// Offset is the next input offset the snapshot covers.
	Offset int64
	// EventTime is the largest event time in the snapshot (epoch ms).
	EventTime int64
	// Bytes counts its pairs' bytes (0 when not written).
	Bytes int64
}

// NopObserver does nothing.
type NopObserver struct{}

func (NopObserver) Observe(engine.Stats)                        {}
func (NopObserver) Rebuilding(string, int32, bool)              {}
func (NopObserver) Assigned(map[string][]int32, bool)           {}
func (NopObserver) Restored(string, int32)                      {}
func (NopObserver) RuleSet(*rules.RuleSet)                      {}
func (NopObserver) ConfigRefused(string)                        {}
func (NopObserver) ShadowJudged(*Judgement)                     {}
func (NopObserver) Promoted(int64, int64)                       {}
func (NopObserver) Heartbeat(error)                             {}
func (NopObserver) RestoreProgress(string, int32, int64, int64) {}
func (NopObserver) RestoreDone(Restore)                         {}
func (NopObserver) SnapshotWritten(SnapshotInfo, error)         {}

var _ Observer = NopObserver{}

// engineObserver is the live engine's observer: it keeps what the node
// itself needs (readiness, Status) and passes everything on.
type engineObserver struct {
	n   *Node
	obs Observer
}

var (
	_ engine.Observer        = engineObserver{}
	_ engine.RebuildObserver = engineObserver{}
	_ engine.RestoreObserver = engineObserver{}
)

func (o engineObserver) Observe(s engine.Stats) {
	var d int64
	for _, k := range s.Decisions {
		d += int64(k)
	}
	o.n.decisions.Add(d)
	if s.Stage == 1 {
		o.n.events.Add(int64(s.Records))
	}
	if o.n.snaps != nil {
		o.n.snaps.committed(s) // after the batch's state commit
	}
	o.obs.Observe(s)
}

func (o engineObserver) Rebuilding(topic string, partition int32, done bool) {
	if done {
		o.n.rebuilding.Add(-1)
	} else {
		o.n.rebuilding.Add(1)
	}
	o.obs.Rebuilding(topic, partition, done)
}

func (o engineObserver) Restored(topic string, partition int32) {
	o.n.restores.done(topic, partition)
	o.n.restored(topic, partition)
	o.obs.Restored(topic, partition)
}

// shadowObserver is the shadow engine's observer: batches only (the
// shadow's rebuilds say nothing about the node's readiness).
type shadowObserver struct{ obs Observer }

func (o shadowObserver) Observe(s engine.Stats) { o.obs.Observe(s) }

// counter is an atomic counter.
type counter = atomic.Int64

// restores tracks the live partitions' restores, from the engine's asking
// for a partition's state (begin) through the replay of its log (the
// source's Replay, progress) to its being restored (done), and tells the
// observer. mu is a leaf.
type restores struct {
	n *Node

	mu sync.Mutex
	m  map[partKey]*restoring
}

type restoring struct {
	start    time.Time
	snapshot *SnapshotInfo
	replayed int64
}

// begin records a partition's restore, begun at start; snap is the
// snapshot imported, nil when none was.
func (r *restores) begin(topic string, partition int32, snap *SnapshotInfo, start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[partKey]*restoring{}
	}
	r.m[partKey{topic, partition}] = &restoring{start: start, snapshot: snap}
}

// progress counts n records replayed of total (-1: not known).
func (r *restores) progress(topic string, partition int32, n, total int64) {
	r.mu.Lock()
	x := r.m[partKey{topic, partition}]
	var replayed int64
	if x != nil {
		x.replayed += n
		replayed = x.replayed
	}
	r.mu.Unlock()
	if x != nil {
		r.n.o.Observer.RestoreProgress(topic, partition, replayed, total)
	}
}

// done ends a partition's restore and tells the observer.
func (r *restores) done(topic string, partition int32) {
	k := partKey{topic, partition}
	r.mu.Lock()
	x := r.m[k]
	delete(r.m, k)
	r.mu.Unlock()
	if x == nil {
		return
	}
	res := Restore{Topic: topic, Partition: partition, Source: RestoreLocal, Elapsed: r.n.o.Clock.Now().Sub(x.start),
		Replayed: x.replayed, Snapshot: x.snapshot, EventTime: math.MinInt64}
	switch {
	case x.snapshot != nil:
		res.Source = RestoreSnapshot
	case x.replayed > 0:
		res.Source = RestoreLog
	}
	if p, err := r.n.db.Partition(topic, partition); err == nil {
		res.EventTime = p.EventTime()
	}
	r.n.o.Observer.RestoreDone(res)
}

// liveSource is the live engine's source: the node's streams.Node, whose
// replays it counts for the restores' progress.
type liveSource struct {
	*streams.Node
	r *restores
}

var (
	_ engine.Replayer = liveSource{}
	_ engine.Assigner = liveSource{}
)

// Replay counts what the engine replays into a partition's state: total is
// to-from, or to less the first record's offset when from is the log's
// start (-1).
func (s liveSource) Replay(ctx context.Context, topic string, partition int32, from, to int64, fn func([]engine.Record) error) error {
	total := int64(-1)
	if from >= 0 {
		total = to - from
	}
	return s.Node.Replay(ctx, topic, partition, from, to, func(recs []engine.Record) error {
		if total < 0 && len(recs) > 0 {
			total = to - recs[0].Offset
		}
		s.r.progress(topic, partition, int64(len(recs)), total)
		return fn(recs)
	})
}
