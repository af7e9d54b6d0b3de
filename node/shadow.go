package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A node runs the shadow rule set (champion/challenger, docs/shadow.md)
// beside the live one: the same machinery a second time, on the same
// inputs, with its own consumer group, Pebble database, engine and output
// topics. Nothing of it is ever written to a live topic.

// ShadowTopics are the topics of the shadow pipeline: the live inputs, the
// shadow's own proposals, decisions and verdicts, and no dead-letter topic
// (the live pipeline dead-letters the very same records).
func ShadowTopics(t streams.Topics) streams.Topics {
	return streams.Topics{Metrics: t.Metrics, Actions: t.Actions,
		Proposals: t.ShadowProposals, Decisions: t.ShadowDecisions, Verdicts: t.ShadowVerdicts}
}

// ShadowGroup is the consumer group of a shadow version: a new one for
// each version, so a new challenger starts fresh.
func ShadowGroup(group string, version int64) string {
	return fmt.Sprintf("%s.shadow.v%d", group, version)
}

// shadowRunner runs a node's shadow pipeline, one version at a time: it
// starts, replaces and stops it as the config topic says.
type shadowRunner struct {
	ctx     context.Context // the node's
	n       *Node
	running atomic.Int64 // the version running, 0 when none

	// seen holds, per partition of the config topic, the offset up to
	// which start read it: the follower skips shadow records below it.
	seen map[int32]int64

	mu      sync.Mutex // orders start, follow and stop
	cur     *versions.Shadow
	stopFn  context.CancelFunc
	done    chan struct{}
	stopped bool
}

func newShadowRunner(ctx context.Context, n *Node) *shadowRunner {
	return &shadowRunner{ctx: ctx, n: n}
}

// version returns the shadow version running, 0 when none.
func (s *shadowRunner) version() int64 { return s.running.Load() }

// start reads the config topic to its end and starts the shadow in force
// there. When the topic's last shadow record is invalid and no valid one
// is left before it (compaction), the history decides, as it does for the
// live rule set. When start fails, the follower, which reads the topic
// from its start, takes the shadow up.
func (s *shadowRunner) start(ctx context.Context) error {
	o := s.n.o
	sh, err := streams.ReadShadow(ctx, s.n.cluster, o.Ruleset, o.Keys.Accept, func(topic string, version int64, reason string) {
		s.n.refused("shadow version refused", reason, "topic", topic, "version", version, "reason", reason)
	})
	if err != nil {
		return err
	}
	seen := map[int32]int64{}
	for _, r := range sh.Recs {
		seen[r.Partition] = max(seen[r.Partition], r.Offset+1)
	}
	s.seen = seen
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh.Cur != nil {
		s.launch(sh.Cur)
	}
	return nil
}

// follow applies the shadow records among recs (read by the config
// follower) that start did not read.
func (s *shadowRunner) follow(recs []*kgo.Record) {
	o := s.n.o
	var fresh []*kgo.Record
	for _, r := range recs {
		if r.Offset >= s.seen[r.Partition] {
			fresh = append(fresh, r)
		}
	}
	good, bad := versions.Shadows(streams.Entries(fresh), o.Ruleset)
	for _, b := range bad {
		s.n.refused("shadow config record refused; the current shadow stays", b, "reason", b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range good {
		next, err := versions.NextShadow(s.cur, c, o.Keys.Accept)
		switch {
		case err != nil:
			s.n.refused("shadow version refused; the current shadow stays", err.Error(), "version", c.Version, "err", err)
		case next == s.cur:
		case next == nil:
			s.halt()
			o.Logger.Info("shadow retired: its pipeline stopped", "version", c.Version)
		default:
			s.halt()
			s.launch(next)
		}
	}
}

// stop stops the shadow pipeline, after its current batch, for good.
func (s *shadowRunner) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopFn != nil {
		s.stopFn()
		<-s.done
	}
	s.stopped = true
}

// dir is the Pebble directory of a shadow version.
func (s *shadowRunner) dir(version int64) string {
	return filepath.Join(s.n.o.DataDir, "shadow", fmt.Sprintf("v%d", version))
}

// launch starts v's pipeline and removes the state of any other shadow
// version (left by a node that was down when the shadow changed). s.mu is
// held.
func (s *shadowRunner) launch(v *versions.Shadow) {
	if s.stopped {
		return
	}
	o := s.n.o
	old, _ := filepath.Glob(filepath.Join(o.DataDir, "shadow", "v*"))
	for _, d := range old {
		if d != s.dir(v.Record.Version) {
			os.RemoveAll(d)
		}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.cur, s.stopFn, s.done = v, cancel, make(chan struct{})
	done := s.done
	s.running.Store(v.Record.Version)
	o.ShadowObserver.RuleSet(v.RuleSet)
	o.Logger.Info("shadow pipeline starting", "version", v.Record.Version, "sha256", short(v.Record.SHA256),
		"group", ShadowGroup(o.Group, v.Record.Version), "published_at", v.Record.PublishedAt)
	go func() {
		defer close(done)
		s.run(ctx, v)
	}()
}

// halt stops the running pipeline after its current batch and removes its
// state: a replaced or retired shadow never comes back. s.mu is held.
func (s *shadowRunner) halt() {
	if s.stopFn == nil {
		return
	}
	s.stopFn()
	<-s.done
	os.RemoveAll(s.dir(s.cur.Record.Version))
	s.cur, s.stopFn, s.done = nil, nil, nil
	s.running.Store(0)
	s.n.o.ShadowObserver.RuleSet(nil)
}

// run runs v's pipeline until ctx ends. A failure of the shadow never
// stops the node: it is logged and the pipeline starts again after
// Options.ShadowRetry.
func (s *shadowRunner) run(ctx context.Context, v *versions.Shadow) {
	o := s.n.o
	for {
		err := s.runOnce(ctx, v)
		if ctx.Err() != nil {
			return
		}
		o.Logger.Error("shadow pipeline failed; it starts again", "version", v.Record.Version, "err", err, "in", o.ShadowRetry)
		if !sleep(o.Clock, o.ShadowRetry, ctx.Done()) {
			return
		}
	}
}

func (s *shadowRunner) runOnce(ctx context.Context, v *versions.Shadow) error {
	o := s.n.o
	publishedMS, err := v.Record.PublishedMilli()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.dir(v.Record.Version)), 0o755); err != nil {
		return err
	}
	db, err := state.Open(s.dir(v.Record.Version), state.Options{Sync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	log := o.Logger.With("shadow", v.Record.Version)
	topics := ShadowTopics(s.n.cluster.Topics())
	at := kgo.NewOffset().AfterMilli(publishedMS)
	sn, err := streams.NewNode(streams.Options{
		Brokers: s.n.cluster.Brokers(), Group: ShadowGroup(o.Group, v.Record.Version), NodeID: o.NodeID,
		Topics: topics, ClientOpts: s.n.cluster.Opts(), Logger: log, SessionTimeout: o.SessionTimeout, IdleAfter: o.IdleAfter,
		Start:       map[string]kgo.Offset{topics.Metrics: at, topics.Actions: at},
		ProposalTag: fmt.Sprintf("v%d", v.Record.Version),
	})
	if err != nil {
		return err
	}
	defer sn.Close()
	if err := warmUp(ctx, kadm.NewClient(sn.Client()), db, topics.Metrics, publishedMS-v.RuleSet.KeepMS()); err != nil {
		return err
	}
	eng, err := s.n.newEngine(v.RuleSet, sn, db, shadowObserver{o.ShadowObserver}, topics, nil)
	if err != nil {
		return err
	}
	err = eng.Run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("shadow pipeline stopped: the current batch finished and was committed")
		return nil
	}
	return err
}

// warmUp sets where the state of each partition of the metrics topic
// begins, when it holds nothing yet: at the first record stamped at or
// after fromMS. The shadow group starts later (at the publish time), so the
// engine replays the records in between into the state, without output,
// before the partition's first batch (engine.Replayer): the warm-up.
func warmUp(ctx context.Context, adm *kadm.Client, db *state.DB, topic string, fromMS int64) error {
	offs, err := adm.ListOffsetsAfterMilli(ctx, fromMS, topic)
	if err != nil {
		return fmt.Errorf("warm-up offsets of %s: %w", topic, err)
	}
	var errs []error
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("warm-up offset of %s/%d: %w", topic, o.Partition, o.Err))
			return
		}
		st, err := db.Partition(topic, o.Partition)
		if err == nil && st.Offset() < 0 {
			err = st.Commit(o.Offset)
		}
		errs = append(errs, err)
	})
	return errors.Join(errs...)
}
