package node

import (
	"sync/atomic"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
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
}

// NopObserver does nothing.
type NopObserver struct{}

func (NopObserver) Observe(engine.Stats)              {}
func (NopObserver) Rebuilding(string, int32, bool)    {}
func (NopObserver) Assigned(map[string][]int32, bool) {}
func (NopObserver) Restored(string, int32)            {}
func (NopObserver) RuleSet(*rules.RuleSet)            {}
func (NopObserver) ConfigRefused(string)              {}
func (NopObserver) ShadowJudged(*Judgement)           {}
func (NopObserver) Promoted(int64, int64)             {}
func (NopObserver) Heartbeat(error)                   {}

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
	o.n.restored(topic, partition)
	o.obs.Restored(topic, partition)
}

// shadowObserver is the shadow engine's observer: batches only (the
// shadow's rebuilds say nothing about the node's readiness).
type shadowObserver struct{ obs Observer }

func (o shadowObserver) Observe(s engine.Stats) { o.obs.Observe(s) }

// counter is an atomic counter.
type counter = atomic.Int64
