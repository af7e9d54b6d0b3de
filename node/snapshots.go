package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/snapshot"
	"github.com/adrules/adrules/state"
)

// DefaultSnapshotEvery is how many input records of a partition lie
// between two of its snapshots when Options.SnapshotEvery is 0.
const DefaultSnapshotEvery = 100_000

// snapshotter writes snapshots of the live pipeline's partitions to a
// store and restores a partition from the newest one when its local state
// is behind it (docs/operations.md, Snapshots).
//
// A snapshot is taken (a Pebble snapshot: cheap, at once) after a batch's
// state commit, when the partition's offset has moved SnapshotEvery
// records past its last one; a goroutine of its own exports and uploads
// it, off the processing path. Whatever Pebble holds is safe to snapshot:
// the state is committed after the Kafka transaction of its output, so a
// snapshot's offset never lies ahead of the committed output.
//
// mu guards last and queued; it is a leaf, held for a few map reads and
// writes.
type snapshotter struct {
	store *snapshot.Store
	db    *state.DB
	every int64
	log   *slog.Logger
	obs   Observer // told of the snapshots written
	// version returns the sha256 of a rule set version the node ran, ""
	// when it does not know it.
	version func(int64) string

	ctx    context.Context // the restores'; ends with the node
	save   context.Context // the uploads'; abort ends it
	cancel context.CancelFunc
	queue  chan job
	done   chan struct{}
	once   sync.Once
	closed sync.Once
	// closeStore closes the store once the uploader stopped.
	closeStore func() error

	mu     sync.Mutex
	last   map[partKey]int64 // the offset of the partition's last snapshot (or restore)
	queued map[partKey]bool  // a snapshot of the partition waits for the uploader
}

type partKey struct {
	topic     string
	partition int32
}

type job struct {
	k       partKey
	snap    *state.Snapshot
	version int64
}

func newSnapshotter(ctx context.Context, store *snapshot.Store, db *state.DB, every int64, log *slog.Logger, obs Observer, version func(int64) string) *snapshotter {
	save, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &snapshotter{store: store, db: db, every: every, log: log, obs: obs, version: version, ctx: ctx, save: save, cancel: cancel,
		queue: make(chan job, 64), done: make(chan struct{}), last: map[partKey]int64{}, queued: map[partKey]bool{}}
	go s.upload()
	return s
}

// restore imports the newest snapshot of a partition that lies past its
// local state, before the engine opens it (and replays the tail). A
// snapshot that does not check is refused (logged) and an older one tried;
// with none, the engine replays from the local state as without
// snapshots. A store that cannot be read fails the restore: the node
// stops and its supervisor restarts it, rather than rebuild from a log
// whose retention may no longer hold the start. It returns the snapshot
// imported, nil when none was.
func (s *snapshotter) restore(topic string, partition int32) (*SnapshotInfo, error) {
	p, err := s.db.Partition(topic, partition)
	if err != nil {
		return nil, err
	}
	local := p.Offset()
	res, err := s.store.Restore(s.ctx, s.db, topic, partition, local)
	for _, r := range res.Refused {
		s.log.Warn("snapshot refused: an older one, or the log, restores the partition", "topic", topic, "partition", partition, "err", r)
	}
	if err != nil {
		return nil, fmt.Errorf("restore %s/%d from snapshots: %w", topic, partition, err)
	}
	k := partKey{topic, partition}
	s.mu.Lock()
	s.last[k] = max(local, res.Manifest.Offset)
	s.mu.Unlock()
	if res.Entry.Key == "" {
		return nil, nil
	}
	m := res.Manifest
	s.log.Info("partition restored from a snapshot; the engine replays the tail", "topic", topic, "partition", partition,
		"snapshot", res.Entry.Key, "offset", m.Offset, "local_offset", local, "keys", m.Keys, "bytes", m.Bytes, "sha256", m.SHA256, "created_at", m.CreatedAt)
	return &SnapshotInfo{Topic: topic, Partition: partition, Offset: m.Offset, EventTime: m.EventTime, Bytes: m.Bytes}, nil
}

// committed is told of a partition's batch after its state commit (the
// engine's Observer): it takes a snapshot when one is due.
func (s *snapshotter) committed(st engine.Stats) {
	k := partKey{st.Topic, st.Partition}
	s.mu.Lock()
	last, known := s.last[k]
	if !known {
		s.last[k] = st.Offset
	}
	due := known && !s.queued[k] && st.Offset-last >= s.every
	if due {
		s.queued[k] = true
	}
	s.mu.Unlock()
	if !due {
		return
	}
	snap, err := s.db.Snapshot(st.Topic, st.Partition)
	if err == nil && snap.Offset() != st.Offset {
		// Not the batch the version is known for (never, while the
		// engine calls its observer between its commits).
		snap.Close()
		err = fmt.Errorf("offset %d, the batch's %d", snap.Offset(), st.Offset)
	}
	if err != nil {
		s.log.Warn("no snapshot taken", "topic", st.Topic, "partition", st.Partition, "err", err)
		s.obs.SnapshotWritten(SnapshotInfo{Topic: st.Topic, Partition: st.Partition, Offset: st.Offset}, err)
		s.unqueue(k, -1)
		return
	}
	select {
	case s.queue <- job{k, snap, st.Version}:
	default: // the uploader is behind: a later batch tries again
		snap.Close()
		s.unqueue(k, -1)
	}
}

// unqueue marks k's snapshot done; offset >= 0 is where it was taken.
func (s *snapshotter) unqueue(k partKey, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.queued, k)
	if offset >= 0 {
		s.last[k] = max(s.last[k], offset)
	}
}

// upload exports and writes the snapshots queued, one at a time, until
// the queue is closed (drain) or the uploads' context ends (abort).
func (s *snapshotter) upload() {
	defer close(s.done)
	for j := range s.queue {
		if s.save.Err() != nil {
			j.snap.Close()
			continue
		}
		vs := []state.Version{{Version: j.version, SHA256: s.version(j.version), From: -1}}
		e, m, err := s.store.Save(s.save, j.snap, j.k.topic, j.k.partition, vs)
		j.snap.Close()
		info := SnapshotInfo{Topic: j.k.topic, Partition: j.k.partition, Offset: j.snap.Offset(), EventTime: j.snap.EventTime(), Bytes: m.Bytes}
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.log.Warn("snapshot not written (or old ones not deleted)", "topic", j.k.topic, "partition", j.k.partition, "snapshot", e.Key, "err", err)
			s.obs.SnapshotWritten(info, err)
		case err == nil:
			s.log.Debug("snapshot written", "snapshot", e.Key, "keys", m.Keys, "bytes", m.Bytes, "sha256", m.SHA256)
			s.obs.SnapshotWritten(info, nil)
		}
		s.unqueue(j.k, j.snap.Offset())
	}
}

// drain writes what is queued and stops the uploader; abort gives up what
// is left and waits for the uploader to stop, so the state can close.
func (s *snapshotter) drain() {
	s.once.Do(func() { close(s.queue) })
	<-s.done
	s.closed.Do(func() {
		if s.closeStore != nil {
			s.closeStore()
		}
	})
}

func (s *snapshotter) abort() {
	s.cancel()
	s.drain()
}

// openSnapshots opens the node's snapshot store, nil when it has none.
func (n *Node) openSnapshots(ctx context.Context) (*snapshotter, error) {
	o := n.o
	so := snapshot.Options{Prefix: o.Group, Keep: o.SnapshotKeep}
	var store *snapshot.Store
	switch {
	case o.SnapshotBucket != nil:
		store = snapshot.New(o.SnapshotBucket, so)
	case o.Snapshots != "":
		var err error
		if store, err = snapshot.Open(ctx, o.Snapshots, so); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	version := func(v int64) string {
		for _, rs := range []*rules.RuleSet{n.RuleSet(), n.rs} {
			if rs != nil && rs.Version == v {
				return rs.SHA256
			}
		}
		return ""
	}
	s := newSnapshotter(ctx, store, n.db, o.SnapshotEvery, o.Logger, o.Observer, version)
	s.closeStore = store.Close
	return s, nil
}

// Snapshots are a node's snapshots for a program that runs the node's
// pipeline itself (the end-to-end benchmark), as EngineOptions are its
// engine options: what Options.Snapshots does inside a node.
type Snapshots struct{ s *snapshotter }

// NewSnapshots writes snapshots of db's partitions to store every
// records of a partition (DefaultSnapshotEvery when 0) and restores them
// from it; rs is the rule set the pipeline runs. Close it before db.
func NewSnapshots(ctx context.Context, store *snapshot.Store, db *state.DB, every int64, rs *rules.RuleSet, log *slog.Logger) *Snapshots {
	if every <= 0 {
		every = DefaultSnapshotEvery
	}
	version := func(v int64) string {
		if v == rs.Version {
			return rs.SHA256
		}
		return ""
	}
	return &Snapshots{newSnapshotter(ctx, store, db, every, log, NopObserver{}, version)}
}

// Restore imports the newest snapshot of a partition past its local state
// (call it before the engine opens the partition: in its Store), and
// reports whether it did.
func (s *Snapshots) Restore(topic string, partition int32) (bool, error) {
	info, err := s.s.restore(topic, partition)
	return info != nil, err
}

// Committed is told of each batch after its state commit (from the
// engine's Observer): it takes a snapshot when one is due.
func (s *Snapshots) Committed(st engine.Stats) { s.s.committed(st) }

// Close writes the snapshots taken and stops.
func (s *Snapshots) Close() { s.s.drain() }
