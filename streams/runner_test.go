package streams_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startNode runs a node as `adrules run` wires it, with small fetches, in
// the test's group, until the test ends.
func startNode(t *testing.T, addrs []string, topics streams.Topics, id, dir string, rs *rules.RuleSet) *runner {
	t.Helper()
	return startRunner(t, addrs, topics, rs, runnerOptions{id: id, dir: dir, partitioner: true, small: true})
}

// runner runs a node (engine, streams.Node, Pebble) until it is stopped,
// cleanly or as a crash.
type runner struct {
	sn     *streams.Node
	dialer *cutDialer
	cancel context.CancelFunc
	crash  atomic.Bool // set before cancel: how the node goes
	done   chan error

	mu    sync.Mutex
	owned map[string]map[int32]bool // what the node holds, from the group's callbacks
}

type runnerOptions struct {
	id, dir, group string
	session        time.Duration // streams.Options.SessionTimeout
	partitioner    bool          // engine.WithPartitioner(sn.PartitionOf), as cmd/adrules wires it
	idle           time.Duration // streams.Options.IdleAfter; default a second
	// small fetches make many small batches, so a stop lands mid-stream
	// (small per partition only: kfake leaves aborted records in a
	// read_committed fetch cut short by the request's byte limit).
	small bool
}

func startRunner(t *testing.T, addrs []string, topics streams.Topics, rs *rules.RuleSet, o runnerOptions) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{dialer: &cutDialer{}, cancel: cancel, done: make(chan error, 1), owned: map[string]map[int32]bool{}}
	db, err := state.Open(o.dir, state.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	track := func(m map[string][]int32, own bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for topic, ps := range m {
			if r.owned[topic] == nil {
				r.owned[topic] = map[int32]bool{}
			}
			for _, p := range ps {
				if own {
					r.owned[topic][p] = true
				} else {
					delete(r.owned[topic], p)
				}
			}
		}
	}
	if o.idle == 0 {
		o.idle = time.Second
	}
	if o.group == "" {
		o.group = kafkatest.Group(topics)
	}
	copts := []kgo.Opt{kgo.Dialer(r.dialer.DialContext)}
	if o.small {
		copts = append(copts, kgo.FetchMaxPartitionBytes(32<<10), kgo.FetchMaxBytes(16<<20))
	}
	sn, err := streams.NewNode(streams.Options{Brokers: addrs, Group: o.group, NodeID: o.id, Topics: topics,
		CommitTimeout: 10 * time.Second, IdleAfter: o.idle, SessionTimeout: o.session,
		ClientOpts: copts,
		OnAssigned: func(m map[string][]int32) { track(m, true) },
		OnRevoked:  func(m map[string][]int32) { track(m, false) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.sn = sn
	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) { return db.Partition(topic, p) })
	opts := []engine.Opt{engine.WithProposalTopics(topics.Proposals), engine.WithRelayTopics(topics.Actions),
		engine.WithKeyCheck(engine.KeyRequired)}
	if o.partitioner {
		opts = append(opts, engine.WithPartitioner(sn.PartitionOf))
	}
	eng, err := engine.New(rs, sn, sn, store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		err := eng.Run(ctx)
		if r.crash.Load() {
			// The process is gone: its connections drop and nothing
			// more reaches the broker (no leave, whatever the client
			// would send on closing), then its client is killed.
			r.dialer.Cut()
			sn.Kill()
		} else {
			sn.Close()
		}
		db.Close()
		if ctx.Err() != nil {
			err = nil
		}
		r.done <- err
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop stops the node cleanly: its batch ends, it leaves the group.
func (r *runner) stop(t *testing.T) {
	t.Helper()
	r.end(t, false)
}

// kill stops the node as a crash after its batch: no leave, its
// connections gone.
func (r *runner) kill(t *testing.T) {
	t.Helper()
	r.end(t, true)
}

func (r *runner) end(t *testing.T, crash bool) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.crash.Store(crash)
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("node: %v", err)
	}
	r.cancel = nil
}

// holds returns the partitions of topic the node holds, sorted.
func (r *runner) holds(topic string) []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int32
	for p := range r.owned[topic] {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// cutDialer dials as net.Dialer does until Cut, which closes every
// connection it made and refuses new ones: a process that died, as the
// broker sees it.
type cutDialer struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (d *cutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, errors.New("cutDialer: the process is gone")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) Cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	for _, c := range d.conns {
		c.Close()
	}
}
