package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Node is one running node: it has joined its group (or is joining), serves
// HTTP, and runs both stages for the partitions it owns, the shadow
// pipeline beside them. Its methods are safe for concurrent use.
type Node struct {
	o       Options
	cluster *streams.Cluster
	db      *state.DB
	rs      *rules.RuleSet                // the rule set the node started with
	streams atomic.Pointer[streams.Node]  // nil until the node has joined
	eng     atomic.Pointer[engine.Engine] // nil until the engine exists
	shadow  *shadowRunner
	snaps   *snapshotter // nil: no snapshots
	addr    string
	handler http.Handler

	// stopped: the engine stopped (the node shuts down, or failed):
	// /healthz and /readyz say 503 from then on.
	stopped atomic.Bool
	// rebuilding counts the partitions whose state is being rebuilt;
	// events and decisions count the live pipeline's work, for Status.
	rebuilding, events, decisions counter
	// restores tracks the live partitions' restores for the observer.
	restores restores

	mu       sync.Mutex
	assigned map[string]map[int32]bool // the partitions this node owns now: restored (true) or not yet
	swapMu   sync.Mutex                // orders rule set swaps

	done chan struct{} // closed when everything the node started has stopped
	err  error         // Wait's result, set before done is closed
}

// Run runs a node until ctx ends or it fails (Start, then Wait).
func Run(ctx context.Context, o Options) error {
	n, err := Start(ctx, o)
	if err != nil {
		return err
	}
	return n.Wait()
}

// Start starts a node: it opens its state, checks the brokers, creates the
// topics when told to, chooses the version it runs (publishing the
// bootstrap document when none was ever published), listens for HTTP,
// joins the group and starts both stages, the config follower, the shadow
// pipeline and its judge, and the heartbeats. It returns once all run; Wait
// returns when they stopped.
//
// A node never outlives its engine: when the engine stops on an error (a
// record the broker refuses, a state that cannot commit), the node logs
// it, stops everything it started and Wait returns the error, so the
// process exits non-zero and its supervisor restarts it. Wait returns nil
// only when ctx ended and the current batch was committed.
func Start(parent context.Context, o Options) (_ *Node, err error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	// The node's context ends when parent does or when the node stops for
	// any other reason: every goroutine the node starts ends with it.
	ctx, stop := context.WithCancel(parent)
	var cleanup []func()
	defer func() {
		if err != nil {
			stop()
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	// A node takes its rule set from the config topic only: its own
	// environment never changes rule parameters.
	if ignored := config.ParamOverrides(o.Env); len(ignored) > 0 {
		log.Warn("rule parameters in the node's environment are ignored; publish them with adrules config publish", "variables", strings.Join(ignored, ","))
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return nil, err
	}
	db, err := state.Open(filepath.Join(o.DataDir, "state"), state.Options{Sync: true})
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { db.Close() })
	cl := o.Cluster
	if cl == nil {
		if cl, err = streams.Open(o.Connection); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, cl.Close)
	}
	topics := cl.Topics()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = cl.Ping(pctx)
	cancel()
	if err == nil && o.CreateTopics {
		err = streams.EnsureTopics(ctx, cl.Client(), topics.Specs(int32(o.Partitions), 7), -1)
	}
	if err != nil {
		return nil, err
	}
	n := &Node{o: o, cluster: cl, db: db, done: make(chan struct{})}
	n.restores.n = n
	if n.snaps, err = n.openSnapshots(ctx); err != nil {
		return nil, err
	}
	if n.snaps != nil {
		cleanup = append(cleanup, n.snaps.abort)
	}
	rs, err := n.bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	n.rs = rs
	o.Observer.RuleSet(rs)
	n.shadow = newShadowRunner(ctx, n)

	ln, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	n.addr = ln.Addr().String()
	n.handler = n.routes()
	srv := o.HTTP.server(n.handler)
	var serving sync.WaitGroup
	serving.Go(func() { srv.Serve(ln) })
	closeHTTP := func() { srv.Close(); serving.Wait() }
	cleanup = append(cleanup, closeHTTP)

	// The HTTP server answers before the node joins the group: /readyz
	// says 503 until it owns partitions.
	log.Info("node starting", "group", o.Group, "node", o.NodeID, "brokers", strings.Join(cl.Brokers(), ","), "http", n.addr,
		"ruleset", rs.Name, "version", rs.Version, "sha256", rs.SHA256[:12], "data", o.DataDir)
	if o.Started != nil {
		o.Started(n)
	}
	sn, err := streams.NewNode(streams.Options{
		Brokers: cl.Brokers(), Group: o.Group, NodeID: o.NodeID, Topics: topics,
		ClientOpts: cl.Opts(), Logger: log, SessionTimeout: o.SessionTimeout, IdleAfter: o.IdleAfter,
		OnAssigned: func(m map[string][]int32) {
			n.assign(m, true)
			o.Observer.Assigned(m, true)
			log.Info("partitions assigned", "partitions", fmt.Sprint(m))
		},
		OnRevoked: func(m map[string][]int32) {
			n.assign(m, false)
			o.Observer.Assigned(m, false)
			log.Info("partitions revoked", "partitions", fmt.Sprint(m))
		},
	})
	if err != nil {
		return nil, err
	}
	n.streams.Store(sn) // closed when the node stops, leaving the group
	// Rebuilds replay each record under the version recorded for it,
	// found by number and sha256 (which binds the document): what ran,
	// which this node or another accepted then; the signature decides
	// what runs next, not what ran.
	history := streams.NewHistory(cl.Opts(), topics, o.Ruleset, versions.Compile)
	eng, err := n.newEngine(rs, sn, db, engineObserver{n, o.Observer}, topics, history)
	if err != nil {
		sn.Close()
		return nil, err
	}
	n.eng.Store(eng)
	// The shadow, if one is published, after the live rule set: it runs
	// beside the live pipeline and stops (after its batch) before the
	// node does.
	if err := n.shadow.start(ctx); err != nil && ctx.Err() == nil {
		log.Error("cannot read the shadow at start; the config follower takes it up", "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { n.follow(ctx) })
	wg.Go(func() { n.watchShadow(ctx) })
	stopBeat := n.heartbeat(ctx)
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()

	go func() {
		err := <-engDone
		// The engine stopped: whatever the reason, the node stops too.
		n.stopped.Store(true)
		clean := errors.Is(err, context.Canceled) && parent.Err() != nil
		if err == nil {
			err = errors.New("the engine stopped: its source ended") // never, on Kafka
		}
		if !clean {
			log.Error("node stopping on a fatal error; a supervisor restarts it", "err", err)
		}
		stop()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			wg.Wait()
			n.shadow.stop()
			stopBeat()
			sn.Close()
			if n.snaps != nil {
				n.snaps.drain() // the snapshots taken are written
			}
		}()
		t := o.Clock.NewTicker(o.StopTimeout)
		select {
		case <-stopped:
		case <-t.C():
			log.Error("the node did not stop in time: exiting anyway", "after", o.StopTimeout)
		}
		t.Stop()
		closeHTTP()
		if n.snaps != nil {
			n.snaps.abort() // its Pebble snapshots are closed before the state
		}
		db.Close()
		if o.Cluster == nil {
			cl.Close()
		}
		if clean {
			log.Info("node stopped: the current batch finished and was committed")
			err = nil
		}
		n.err = err
		close(n.done)
	}()
	return n, nil
}

// Wait waits until the node stopped and returns why: nil when its context
// ended and the current batch was committed, the fatal error otherwise.
// Every goroutine the node started has ended when it returns (unless the
// shutdown took longer than Options.StopTimeout).
func (n *Node) Wait() error {
	<-n.done
	return n.err
}

// Done is closed when the node stopped (Wait returns at once).
func (n *Node) Done() <-chan struct{} { return n.done }

// Addr is the HTTP server's address.
func (n *Node) Addr() string { return n.addr }

// Handler serves /healthz, /readyz, the admin API and Options.Metrics,
// with the limit on requests without the admin token: what the node's
// HTTP server serves.
func (n *Node) Handler() http.Handler { return n.handler }

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	if n.o.Metrics != nil {
		mux.Handle("/metrics", n.o.Metrics)
	}
	mux.HandleFunc("/healthz", n.healthz)
	mux.HandleFunc("/readyz", n.readyz)
	adm := &admin{n: n, token: n.o.AdminToken, log: n.o.Logger}
	adm.routes(mux)
	return adm.capUnauthenticated(mux, n.o.HTTP.Unauthenticated, "/healthz", "/readyz")
}

// newEngine is the engine of one pipeline of the node (the live one, with
// its history, or a shadow's): both stages over sn, the state in db.
func (n *Node) newEngine(rs *rules.RuleSet, sn *streams.Node, db *state.DB, obs engine.Observer, topics streams.Topics, history engine.History) (*engine.Engine, error) {
	live := db == n.db
	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) {
		if !live {
			return db.Partition(topic, p)
		}
		start := n.o.Clock.Now()
		var snap *SnapshotInfo
		if n.snaps != nil {
			var err error
			if snap, err = n.snaps.restore(topic, p); err != nil {
				return nil, err
			}
		}
		n.restores.begin(topic, p, snap, start)
		return db.Partition(topic, p)
	})
	var src engine.Source = sn
	if live {
		src = liveSource{sn, &n.restores} // counts the replays' progress
	}
	return engine.New(rs, src, sn, store, EngineOptions(sn, obs, n.o.Logger, topics, history)...)
}

// EngineOptions are the engine options of a node's pipeline over sn: keys
// checked, switch points written, misplaced records rerouted by sn's
// partitioner, stage 2 over topics.Proposals, external proposals relayed
// from topics.Actions, and rebuilds under the recorded versions of history
// (nil: none, as for a shadow). A program that runs the node's pipeline
// itself (the end-to-end benchmark) uses them too.
func EngineOptions(sn *streams.Node, obs engine.Observer, log *slog.Logger, topics streams.Topics, history engine.History) []engine.Opt {
	opts := []engine.Opt{engine.WithObserver(obs), engine.WithLogger(log), engine.WithKeyCheck(engine.KeyRequired),
		engine.WithSwitchRecords(), engine.WithPartitioner(sn.PartitionOf),
		engine.WithProposalTopics(topics.Proposals), engine.WithRelayTopics(topics.Actions)}
	if history != nil {
		opts = append(opts, engine.WithHistory(history))
	}
	return opts
}

// healthz answers /healthz: 200 from the moment the HTTP server listens
// until the engine stops, for whatever reason; 503 while the node shuts
// down (after a signal, or a fatal error it exits on).
func (n *Node) healthz(w http.ResponseWriter, _ *http.Request) {
	if n.stopped.Load() {
		http.Error(w, "stopped: the node is shutting down and processes nothing", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Ready reports whether the node owns partitions and has restored the
// state of every one of them. A partition is restored when it is assigned
// (the engine replays what its state lacks, partitions in parallel):
// /readyz is 503 until all are, and from when the node stops.
func (n *Node) Ready() bool {
	if n.stopped.Load() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	owned := 0
	for _, ps := range n.assigned {
		for _, restored := range ps {
			if !restored {
				return false
			}
			owned++
		}
	}
	return owned > 0 && n.rebuilding.Load() == 0
}

// readyz answers /readyz: 200 while the node is ready.
func (n *Node) readyz(w http.ResponseWriter, _ *http.Request) {
	if !n.Ready() {
		http.Error(w, "not ready: waiting for partitions, rebuilding state, or stopped", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (n *Node) assign(m map[string][]int32, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.assigned == nil {
		n.assigned = map[string]map[int32]bool{}
	}
	for t, ps := range m {
		for _, p := range ps {
			if n.assigned[t] == nil {
				n.assigned[t] = map[int32]bool{}
			}
			if on {
				n.assigned[t][p] = false
			} else {
				delete(n.assigned[t], p)
			}
		}
	}
}

// restored is told by the engine that a partition's state is restored.
func (n *Node) restored(topic string, partition int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ps := n.assigned[topic]; ps != nil {
		if _, ok := ps[partition]; ok {
			ps[partition] = true
		}
	}
}

// Status is what a node is doing, for a status line.
type Status struct {
	// Events and Decisions count the live pipeline's metric events and
	// decisions since the node started.
	Events, Decisions int64
	// Lag is the consumer lag summed over the input partitions.
	Lag   int64
	Ready bool
	// RuleSet is the live rule set the node runs; Shadow the shadow version
	// (0: none).
	RuleSet *rules.RuleSet
	Shadow  int64
}

// Status returns the node's status now.
func (n *Node) Status() Status {
	var lag int64
	for _, ps := range n.Lag() {
		for _, l := range ps {
			lag += l
		}
	}
	return Status{Events: n.events.Load(), Decisions: n.decisions.Load(), Lag: lag, Ready: n.Ready(),
		RuleSet: n.RuleSet(), Shadow: n.shadow.version()}
}

// Lag returns the consumer lag per input partition, from the node's last
// fetches.
func (n *Node) Lag() map[string]map[int32]int64 {
	if sn := n.streams.Load(); sn != nil {
		return sn.Lag()
	}
	return nil
}

// StateBytes is the approximate size of the node's Pebble state on disk.
func (n *Node) StateBytes() int64 { return int64(n.db.Size()) }

// RuleSet returns the live rule set the node runs now.
func (n *Node) RuleSet() *rules.RuleSet {
	if e := n.eng.Load(); e != nil {
		return e.RuleSet()
	}
	return n.rs
}

// newer reports whether c should replace the running version
// (versions.Replaces): a higher version, or another record of the same
// version (the later record wins), as for a node that starts later
// (bootstrap, versions.Newest), so two publishers racing to one version
// number still leave every node on one document.
func (n *Node) newer(c versions.Record) bool {
	cur := n.RuleSet()
	return versions.Replaces(cur.Version, cur.SHA256, c)
}

// swap installs rs unless a newer version got there first (the follower and
// the reload endpoint may race); it reports whether it did.
func (n *Node) swap(rs *rules.RuleSet) bool {
	n.swapMu.Lock()
	defer n.swapMu.Unlock()
	eng := n.eng.Load()
	if eng == nil || rs.Version < eng.RuleSet().Version {
		return false
	}
	eng.Swap(rs)
	n.o.Observer.RuleSet(rs)
	return true
}

// refused counts and logs a refused config record or version.
func (n *Node) refused(msg, reason string, args ...any) {
	n.o.Observer.ConfigRefused(reason)
	n.o.Logger.Error(msg, args...)
}

// follow reads the config topic from its start for as long as the node
// runs, and swaps in every newer valid version of the node's rule set
// signed by a trusted key between batches. A record that is not signed by
// a trusted key (unsigned, another key, a signature made for another
// version) is refused and counted whatever its number, before anything
// else is done with it; an invalid version is refused (logged and counted)
// and the last good one stays; a tombstone changes nothing. Records of the
// shadow's key go to the shadow runner.
func (n *Node) follow(ctx context.Context) {
	log, name, topic := n.o.Logger, n.o.Ruleset, n.cluster.Topics().Config
	cl, err := n.cluster.NewClient(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		log.Error("cannot follow the config topic", "err", err)
		return
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		for _, r := range recs {
			if string(r.Key) == name && r.Value == nil {
				log.Warn("config tombstone ignored: the live rule set stays", "name", name)
			}
		}
		good, bad := versions.Live(streams.Entries(recs), name)
		for _, b := range bad {
			n.refused("config record refused", b, "reason", b)
		}
		for _, c := range good {
			if _, err := n.o.Keys.Check(c); err != nil {
				n.refused("published version refused: not signed by a trusted key; the last good one stays", err.Error(), "version", c.Version, "err", err)
				continue
			}
			if !n.newer(c) {
				continue
			}
			rs, err := versions.Compile(c)
			if err != nil {
				n.refused("published version refused; the last good one stays", err.Error(), "version", c.Version, "err", err)
				continue
			}
			if n.swap(rs) {
				log.Info("rule set switched", "version", rs.Version, "sha256", rs.SHA256[:12])
			}
		}
		// The shadow after the live rule set: replacing it waits for its
		// current batch.
		n.shadow.follow(recs)
	}
}

// heartbeat publishes the node's version to the status topic every
// Options.HeartbeatEvery, until ctx ends; the returned func waits for it to
// end and writes a tombstone.
func (n *Node) heartbeat(ctx context.Context) func() {
	o, cl, topic := n.o, n.cluster.Client(), n.cluster.Topics().Status
	beat := func() {
		rs := n.RuleSet()
		b, _ := json.Marshal(streams.Heartbeat{Node: o.NodeID, Group: o.Group, Ruleset: rs.Name, Version: rs.Version,
			SHA256: rs.SHA256, HTTP: n.addr, At: o.Clock.Now().UTC().Format(time.RFC3339), Shadow: n.shadow.version()})
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(o.NodeID), Value: b}, func(_ *kgo.Record, err error) {
			if ctx.Err() != nil {
				return
			}
			o.Observer.Heartbeat(err)
			if err != nil {
				o.Logger.Warn("heartbeat not written", "err", err)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := o.Clock.NewTicker(o.HeartbeatEvery)
		defer t.Stop()
		for {
			beat()
			select {
			case <-ctx.Done():
				return
			case <-t.C():
			}
		}
	}()
	return func() {
		<-done
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cl.ProduceSync(tctx, &kgo.Record{Topic: topic, Key: []byte(o.NodeID)}) // gone: a tombstone
	}
}
