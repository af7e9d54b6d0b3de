package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/adrules/adrules/engine"
	adnode "github.com/adrules/adrules/node"
	"github.com/adrules/adrules/snapshot"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The parts of a run.
const (
	PartNoop     = "noop"     // a franz-go consumer that reads every record and does nothing
	PartPlain    = "plain"    // a franz-go loop: encoding/json, a Go map of per-ad sums
	PartPipeline = "pipeline" // a node: streams.Node, the engine, Pebble, exactly once
	PartRestore  = "restore"  // a fresh node taking over every partition
)

// PartConfig is what a part runs against.
type PartConfig struct {
	Brokers []string       `json:"brokers"`
	Topics  streams.Topics `json:"topics"`
	// Expect is the number of metric events the part must consume or
	// process before its window ends (noop, plain, pipeline).
	Expect int64 `json:"expect"`
	// Rules is the live rule set's record (pipeline, restore).
	Rules versions.Record `json:"rules"`
	// Group, NodeID and Dir are the node's (pipeline, restore): its
	// consumer group, instance id and Pebble directory.
	Group  string `json:"group"`
	NodeID string `json:"node_id"`
	Dir    string `json:"dir"`
	// Profile, when set, is a file to write the window's CPU profile to.
	Profile string `json:"profile,omitempty"`
	// Log writes the node's log (streams and engine, level info) to
	// standard error.
	Log bool `json:"log,omitempty"`
	// Snapshots, when set, is a directory of partition snapshots
	// (node.Snapshots on a fileblob store): the pipeline writes one of a
	// partition every SnapshotEvery records (node.DefaultSnapshotEvery when
	// 0), a restore imports the newest and replays the tail.
	Snapshots     string `json:"snapshots,omitempty"`
	SnapshotEvery int64  `json:"snapshot_every,omitempty"`
	// Timeout bounds the part; default 30 minutes.
	Timeout time.Duration `json:"timeout"`
}

// RunPart runs one part in this process and measures it.
func RunPart(ctx context.Context, part string, c PartConfig) (Result, error) {
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	switch part {
	case PartNoop:
		return consume(ctx, c, PartNoop, func([]byte) error { return nil }, nil)
	case PartPlain:
		return plain(ctx, c)
	case PartPipeline:
		return pipeline(ctx, c)
	case PartRestore:
		return restore(ctx, c)
	}
	return Result{}, fmt.Errorf("bench: no part %q", part)
}

// consume reads the metrics topic from its start, every partition, outside
// any group, as a read_committed consumer (as a node reads), handing each
// value to fn, until c.Expect records came.
func consume(ctx context.Context, c PartConfig, part string, fn func([]byte) error, done func(*Result)) (Result, error) {
	r := Result{Part: part}
	m, err := startMeter(c.Profile)
	if err != nil {
		return r, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ConsumeTopics(c.Topics.Metrics),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return r, err
	}
	defer cl.Close()
	var ferr error
	for r.Events < c.Expect && ferr == nil {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("bench: %s: %d of %d records: %w", part, r.Events, c.Expect, err)
		}
		if err := fs.Err0(); err != nil {
			return r, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if ferr == nil {
				ferr = fn(rec.Value)
				r.Events++
			}
		})
	}
	if ferr != nil {
		return r, ferr
	}
	if done != nil {
		done(&r)
	}
	m.end(&r)
	return r, nil
}

// metric is the plain loop's view of a metric event.
type metric struct {
	EventID     string  `json:"event_id"`
	TS          string  `json:"ts"`
	AccountID   string  `json:"account_id"`
	AdID        string  `json:"ad_id"`
	Impressions int64   `json:"impressions"`
	Clicks      int64   `json:"clicks"`
	Spend       float64 `json:"spend"`
	Revenue     float64 `json:"revenue"`
	Conversions int64   `json:"conversions"`
}

// sums are the plain loop's per-ad totals.
type sums struct {
	events, impressions, clicks, conversions int64
	spend, revenue                           float64
}

// plain is the plain franz-go loop: decode each record into a struct with
// encoding/json and add it to a Go map of per-ad sums; no durable state.
func plain(ctx context.Context, c PartConfig) (Result, error) {
	ads := map[string]*sums{}
	var ev metric
	return consume(ctx, c, PartPlain, func(v []byte) error {
		ev = metric{}
		if err := json.Unmarshal(v, &ev); err != nil {
			return err
		}
		s := ads[ev.AdID]
		if s == nil {
			s = &sums{}
			ads[ev.AdID] = s
		}
		s.events++
		s.impressions += ev.Impressions
		s.clicks += ev.Clicks
		s.conversions += ev.Conversions
		s.spend += ev.Spend
		s.revenue += ev.Revenue
		return nil
	}, func(r *Result) {
		r.Ads = len(ads)
		for _, s := range ads {
			r.Impressions += s.impressions
		}
	})
}

// node is a node's pipeline as node.New wires it (node/node.go
// newEngine): Pebble with synced commits, a streams.Node on the group, the
// engine with the node's options, recording switch points and rebuilding
// under the recorded versions (streams.History). No config follower, no
// HTTP server, no metrics: the rule set is fixed for the run.
type node struct {
	db  *state.DB
	sn  *streams.Node
	src *source
	eng *engine.Engine
	obs *observer
	// snaps and store, when c.Snapshots is set.
	snaps *adnode.Snapshots
	store *snapshot.Store
}

func startNode(c PartConfig) (*node, error) {
	rs, err := versions.Compile(c.Rules)
	if err != nil {
		return nil, err
	}
	db, err := state.Open(c.Dir, state.Options{Sync: true})
	if err != nil {
		return nil, err
	}
	obs := newObserver(c.Topics.Metrics)
	log := slog.New(slog.DiscardHandler)
	if c.Log {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", c.NodeID)
	}
	sn, err := streams.NewNode(streams.Options{
		Brokers: c.Brokers, Group: c.Group, NodeID: c.NodeID, Topics: c.Topics, Logger: log,
		OnAssigned: func(m map[string][]int32) { obs.assign(m, true) },
		OnRevoked:  func(m map[string][]int32) { obs.assign(m, false) },
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	src := &source{Node: sn, obs: obs}
	var snaps *adnode.Snapshots
	var sstore *snapshot.Store
	if c.Snapshots != "" {
		abs, err := filepath.Abs(c.Snapshots)
		if err == nil {
			sstore, err = snapshot.Open(context.Background(), "file://"+abs, snapshot.Options{Prefix: c.Group})
		}
		if err != nil {
			sn.Close()
			db.Close()
			return nil, err
		}
		snaps = adnode.NewSnapshots(context.Background(), sstore, db, c.SnapshotEvery, rs, log)
		obs.snaps = snaps
	}
	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) {
		if snaps != nil {
			imported, err := snaps.Restore(topic, p)
			if err != nil {
				return nil, err
			}
			if imported {
				obs.mu.Lock()
				obs.imported++
				obs.mu.Unlock()
			}
		}
		return db.Partition(topic, p)
	})
	history := streams.NewHistory([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.Topics, c.Rules.Name, versions.Compile)
	eng, err := engine.New(rs, src, sn, store, adnode.EngineOptions(sn, obs, log, c.Topics, history)...)
	if err != nil {
		sn.Close()
		db.Close()
		return nil, err
	}
	return &node{db: db, sn: sn, src: src, eng: eng, obs: obs, snaps: snaps, store: sstore}, nil
}

// run runs the engine until until says the part is done (or ctx ends or
// the engine fails), then stops the node cleanly: it leaves the group.
func (n *node) run(ctx context.Context, until <-chan struct{}) error {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.eng.Run(rctx) }()
	var err error
	ended := false
	select {
	case <-until:
	case <-ctx.Done():
		err = ctx.Err()
	case err = <-done:
		ended = true
		if err == nil {
			err = errors.New("bench: the engine stopped: its source ended")
		}
	}
	cancel()
	if !ended {
		if rerr := <-done; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
			err = rerr
		}
	}
	n.sn.Close()
	if n.snaps != nil {
		n.snaps.Close() // the snapshots taken are written
		n.store.Close()
	}
	if cerr := n.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// pipeline processes c.Expect new metric events on a node with the state
// in c.Dir (empty or a previous run's), until their batches are
// committed.
func pipeline(ctx context.Context, c PartConfig) (Result, error) {
	m, err := startMeter(c.Profile)
	if err != nil {
		return Result{}, err
	}
	n, err := startNode(c)
	if err != nil {
		return Result{}, err
	}
	n.obs.expect = c.Expect
	r, err := n.measure(ctx, m, n.obs.processed)
	if err != nil {
		return r, err
	}
	r.Part = PartPipeline
	n.obs.mu.Lock()
	r.Events, r.Decisions, r.FirstBatch = n.obs.records, n.obs.decisions, n.obs.first.Sub(m.start)
	n.obs.mu.Unlock()
	if d, ok := n.obs.takeCommit(); ok { // the last batch's
		n.src.commits = append(n.src.commits, d)
	}
	r.Batches = len(n.src.commits)
	r.CommitP50, r.CommitP99 = percentile(n.src.commits, 50), percentile(n.src.commits, 99)
	r.StateBytes = dirSize(c.Dir)
	return r, nil
}

// restore starts a node with the state in c.Dir (a fresh node: an empty
// directory) and measures until it is ready: it holds partitions and has
// restored every one of them, as /readyz says 200. It processes nothing
// more.
func restore(ctx context.Context, c PartConfig) (Result, error) {
	m, err := startMeter(c.Profile)
	if err != nil {
		return Result{}, err
	}
	n, err := startNode(c)
	if err != nil {
		return Result{}, err
	}
	n.obs.mu.Lock()
	n.obs.start = m.start
	n.obs.mu.Unlock()
	r, err := n.measure(ctx, m, n.obs.ready)
	if err != nil {
		return r, err
	}
	r.Part = PartRestore
	n.obs.mu.Lock()
	r.Ready, r.Assigned = n.obs.readyAt.Sub(m.start), n.obs.assignedAt.Sub(m.start)
	r.RebuildMax, r.RebuildSum = n.obs.rebuildMax, n.obs.rebuildSum
	for _, ps := range n.obs.restored {
		r.Partitions += len(ps)
	}
	r.Imported = n.obs.imported
	n.obs.mu.Unlock()
	r.Replayed = n.src.replayedByTopic()
	r.Events = r.Replayed[c.Topics.Metrics]
	return r, nil
}

// measure runs the node until done is closed and ends m's window then,
// before the node stops.
func (n *node) measure(ctx context.Context, m *meter, done <-chan struct{}) (Result, error) {
	var win Result
	until := make(chan struct{})
	go func() {
		select {
		case <-done:
			m.end(&win)
			close(until)
		case <-ctx.Done():
		}
	}()
	if err := n.run(ctx, until); err != nil {
		return win, err
	}
	return win, nil // run returns nil only once until is closed
}

// source is the node as the engine's Source: it times each batch's
// commits and counts what the engine replays into the state.
type source struct {
	*streams.Node
	obs *observer

	commits []time.Duration // the engine goroutine's only

	mu       sync.Mutex
	replayed map[string]int64
}

// Poll notes the commit time of the batch before (the engine observes a
// batch's partitions after its commits, all with the same Commit).
func (s *source) Poll(ctx context.Context) ([]engine.Record, error) {
	if d, ok := s.obs.takeCommit(); ok {
		s.commits = append(s.commits, d)
	}
	return s.Node.Poll(ctx)
}

// Replay counts the records replayed (partitions replay in parallel).
func (s *source) Replay(ctx context.Context, topic string, partition int32, from, to int64, fn func([]engine.Record) error) error {
	return s.Node.Replay(ctx, topic, partition, from, to, func(recs []engine.Record) error {
		s.mu.Lock()
		if s.replayed == nil {
			s.replayed = map[string]int64{}
		}
		s.replayed[topic] += int64(len(recs))
		s.mu.Unlock()
		return fn(recs)
	})
}

func (s *source) replayedByTopic() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for k, v := range s.replayed {
		out[k] = v
	}
	return out
}

var (
	_ engine.Replayer = (*source)(nil)
	_ engine.Assigner = (*source)(nil)
)

// observer counts the processed metric events and tells when the part is
// done: c.Expect events processed (pipeline), or every assigned partition
// restored (restore, the node's readiness).
type observer struct {
	metrics   string
	processed chan struct{} // closed when records reach expect
	ready     chan struct{} // closed when every assigned partition is restored

	mu          sync.Mutex
	expect      int64
	records     int64
	decisions   int64
	first, last time.Time
	commit      time.Duration
	commitSet   bool

	start, assignedAt, readyAt time.Time
	assigned                   map[string]map[int32]bool
	restored                   map[string]map[int32]bool
	rebuilding                 map[string]map[int32]time.Time
	rebuildMax, rebuildSum     time.Duration
	imported                   int // partitions restored from a snapshot

	snaps *adnode.Snapshots // told of each batch, when the node writes snapshots
}

func newObserver(metrics string) *observer {
	return &observer{metrics: metrics, processed: make(chan struct{}), ready: make(chan struct{}),
		assigned: map[string]map[int32]bool{}, restored: map[string]map[int32]bool{}, rebuilding: map[string]map[int32]time.Time{}}
}

var (
	_ engine.RestoreObserver = (*observer)(nil)
	_ engine.RebuildObserver = (*observer)(nil)
)

func (o *observer) Observe(s engine.Stats) {
	if o.snaps != nil {
		o.snaps.Committed(s) // after the batch's state commit
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commit, o.commitSet = s.Commit, true
	if s.Topic != o.metrics {
		return
	}
	now := time.Now()
	if o.first.IsZero() {
		o.first = now
	}
	o.records += int64(s.Records)
	for _, n := range s.Decisions {
		o.decisions += int64(n)
	}
	if o.expect > 0 && o.records >= o.expect && o.last.IsZero() {
		o.last = now
		close(o.processed)
	}
}

func (o *observer) takeCommit() (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.commit, o.commitSet
	o.commitSet = false
	return d, ok
}

func (o *observer) assign(m map[string][]int32, own bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if own && o.assignedAt.IsZero() {
		o.assignedAt = time.Now()
	}
	for topic, ps := range m {
		if o.assigned[topic] == nil {
			o.assigned[topic] = map[int32]bool{}
		}
		for _, p := range ps {
			if own {
				o.assigned[topic][p] = true
			} else {
				delete(o.assigned[topic], p)
			}
		}
	}
	o.checkReady()
}

func (o *observer) Rebuilding(topic string, partition int32, done bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rebuilding[topic] == nil {
		o.rebuilding[topic] = map[int32]time.Time{}
	}
	if !done {
		o.rebuilding[topic][partition] = time.Now()
		return
	}
	d := time.Since(o.rebuilding[topic][partition])
	o.rebuildMax = max(o.rebuildMax, d)
	o.rebuildSum += d
}

func (o *observer) Restored(topic string, partition int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.restored[topic] == nil {
		o.restored[topic] = map[int32]bool{}
	}
	o.restored[topic][partition] = true
	o.checkReady()
}

// checkReady closes ready once the node holds partitions and has restored
// every one of them (o.mu held).
func (o *observer) checkReady() {
	if !o.readyAt.IsZero() || o.start.IsZero() {
		return
	}
	n := 0
	for topic, ps := range o.assigned {
		for p := range ps {
			if !o.restored[topic][p] {
				return
			}
			n++
		}
	}
	if n == 0 {
		return
	}
	o.readyAt = time.Now()
	close(o.ready)
}

// dirSize is the size of the files under dir.
func dirSize(dir string) uint64 {
	var n uint64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += uint64(info.Size())
			}
		}
		return nil
	})
	return n
}
