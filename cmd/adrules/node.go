package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// nodeConfig is what a node needs.
type nodeConfig struct {
	kafka        kafkaFlags
	clientOpts   []kgo.Opt
	group        string
	nodeID       string
	dataDir      string
	httpAddr     string
	rulesFile    string // published as the first version when none exists
	ruleset      string // the rule set's name on the config topic
	envName      string
	partitions   int
	createTopics bool
	// sessionTimeout and idleAfter: streams.Options; 0 takes its defaults.
	sessionTimeout, idleAfter time.Duration
	// keys: the publishers whose versions the node runs, and the key it
	// signs what it publishes with (keyring.validateNode).
	keys keyring
	// http bounds the HTTP server; the zero value takes defaultHTTPLimits.
	http httpLimits
}

// httpLimits bound the node's HTTP server (docs/operations.md, Limits):
// how long a client may take to send a request and read its answer, how
// long an idle connection stays, how large the headers may be, and how
// many requests without the admin token are served at once.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
	// unauthenticated is how many requests without a valid admin token
	// (probes aside) are served at once; more are answered 503 at once.
	unauthenticated int
}

// defaultHTTPLimits: a rules document of 1 MiB (the body limit) at 35
// KB/s is read within the read timeout.
func defaultHTTPLimits() httpLimits {
	return httpLimits{readHeader: 5 * time.Second, read: 30 * time.Second, write: time.Minute, idle: time.Minute,
		maxHeaderBytes: 16 << 10, unauthenticated: 64}
}

// server returns the HTTP server of h with limits l.
func (l httpLimits) server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: l.readHeader, ReadTimeout: l.read, WriteTimeout: l.write,
		IdleTimeout: l.idle, MaxHeaderBytes: l.maxHeaderBytes}
}

// node is a running node, for dev's status line and for tests.
type node struct {
	metrics *metrics
	streams atomic.Pointer[streams.Node]  // nil until the node has joined
	rs      *rules.RuleSet                // the rule set the node started with
	eng     atomic.Pointer[engine.Engine] // nil until the engine exists
	addr    string                        // the HTTP server's address
	shadow  *shadowRunner                 // the shadow pipeline (docs/shadow.md)

	// stopped: the engine stopped (the node shuts down, or failed):
	// /healthz and /readyz say 503 from then on.
	stopped atomic.Bool

	mu       sync.Mutex
	assigned map[string]map[int32]bool // the partitions this node owns now: restored (true) or not yet
	swapMu   sync.Mutex                // orders rule set swaps
}

// healthz answers /healthz: 200 from the moment the HTTP server listens
// until the engine stops, for whatever reason; 503 while the node shuts
// down (after a signal, or a fatal error it exits on).
func (n *node) healthz(w http.ResponseWriter, _ *http.Request) {
	if n.stopped.Load() {
		http.Error(w, "stopped: the node is shutting down and processes nothing", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// ready: the node owns partitions and has restored the state of every one
// of them. A partition is restored when it is assigned (the engine replays
// what its state lacks, partitions in parallel): /readyz is 503 until all
// are.
func (n *node) ready() bool {
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
	return owned > 0 && n.metrics.nRebuilding.Load() == 0
}

// readyz answers /readyz: 200 while the node is ready.
func (n *node) readyz(w http.ResponseWriter, _ *http.Request) {
	if !n.ready() {
		http.Error(w, "not ready: waiting for partitions, rebuilding state, or stopped", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (n *node) assign(m map[string][]int32, on bool) {
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

// Restored is told by the engine that a partition's state is restored
// (engine.RestoreObserver).
func (n *node) Restored(topic string, partition int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ps := n.assigned[topic]; ps != nil {
		if _, ok := ps[partition]; ok {
			ps[partition] = true
		}
	}
}

// observer is the engine's observer of a node: the metrics, and the node
// for readiness.
type observer struct {
	*metrics
	n *node
}

func (o observer) Restored(topic string, partition int32) { o.n.Restored(topic, partition) }

var _ engine.RestoreObserver = observer{}

// newer reports whether c should replace the running version
// (versions.Replaces): a higher version, or another record of the same
// version (the later record wins), as for a node that starts later
// (nodeRules, versions.Newest), so two publishers racing to one version
// number still leave every node on one document.
func (n *node) newer(c versions.Record) bool {
	cur := n.ruleSet()
	return versions.Replaces(cur.Version, cur.SHA256, c)
}

// swap installs rs unless a newer version got there first (the follower and
// the reload endpoint may race); it reports whether it did.
func (n *node) swap(rs *rules.RuleSet) bool {
	n.swapMu.Lock()
	defer n.swapMu.Unlock()
	eng := n.eng.Load()
	if eng == nil || rs.Version < eng.RuleSet().Version {
		return false
	}
	eng.Swap(rs)
	n.metrics.version.Set(float64(rs.Version))
	return true
}

// ruleSet returns the rule set the node runs now.
func (n *node) ruleSet() *rules.RuleSet {
	if e := n.eng.Load(); e != nil {
		return e.RuleSet()
	}
	return n.rs
}

// lag returns the consumer lag per input partition (none before joining).
func (n *node) lag() map[string]map[int32]int64 {
	if sn := n.streams.Load(); sn != nil {
		return sn.Lag()
	}
	return nil
}

// stopTimeout bounds a node's shutdown once its engine stopped: the
// shadow's batch, the heartbeat's tombstone, leaving the group. Past it,
// runNode returns anyway (and the process exits): what was left is fenced
// or aborted by the next session, as after a crash.
const stopTimeout = 30 * time.Second

// runNode runs a node until ctx ends or it fails: it joins the group,
// serves HTTP, and runs both stages for the partitions it owns. started,
// when not nil, is called once the HTTP server listens.
//
// It never outlives its engine: when the engine stops on an error (a
// record the broker refuses, a state that cannot commit), runNode logs it,
// stops everything the node started (the config follower, the shadow
// pipeline and its watcher, the heartbeats) and returns the error, so the
// process exits non-zero and its supervisor restarts it. It returns nil
// only when ctx ended (a signal) and the current batch was committed.
func runNode(parent context.Context, nc nodeConfig, stderr io.Writer, env map[string]string, started func(*node)) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := nc.keys.validateNode(); err != nil {
		return err
	}
	// The node's context ends when parent does or when the node stops for
	// any other reason: every goroutine the node starts ends with it.
	ctx, stop := context.WithCancel(parent)
	defer stop()
	// A node takes its rule set from the config topic only: its own
	// environment never changes rule parameters.
	if ignored := config.ParamOverrides(env); len(ignored) > 0 {
		log.Warn("rule parameters in the node's environment are ignored; publish them with adrules config publish", "variables", strings.Join(ignored, ","))
	}
	if err := os.MkdirAll(nc.dataDir, 0o755); err != nil {
		return err
	}
	db, err := state.Open(filepath.Join(nc.dataDir, "state"), state.Options{Sync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	brokers := nc.kafka.brokerList()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, nc.clientOpts...)...)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = ping(pctx, cl)
	cancel()
	if err == nil && nc.createTopics {
		err = streams.EnsureTopics(ctx, cl, nc.kafka.topics.Specs(int32(nc.partitions), 7), -1)
	}
	cl.Close()
	if err != nil {
		return err
	}
	rs, err := nodeRules(ctx, nc, env, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n := &node{rs: rs, metrics: newMetrics(reg, func() float64 { return float64(db.Size()) })}
	types := map[string]string{}
	for _, r := range rs.Doc.Rules {
		if r.Emit != nil {
			types[r.ID] = r.Emit.Type
		}
	}
	n.metrics.setRuleTypes(types)
	n.metrics.version.Set(float64(rs.Version))
	reg.MustRegister(newLagCollector(n.lag))
	n.shadow = newShadowRunner(ctx, nc, reg, n.metrics.refused, log)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", n.healthz)
	mux.HandleFunc("/readyz", n.readyz)
	adm := &admin{nc: nc, n: n, token: env["ADRULES_ADMIN_TOKEN"], log: log}
	adm.routes(mux)
	limits := nc.http
	if limits == (httpLimits{}) {
		limits = defaultHTTPLimits()
	}
	ln, err := net.Listen("tcp", nc.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	n.addr = ln.Addr().String()
	srv := limits.server(adm.capUnauthenticated(mux, limits.unauthenticated, "/healthz", "/readyz"))
	go srv.Serve(ln)
	defer srv.Close()

	// The HTTP server answers before the node joins the group: /readyz
	// says 503 until it owns partitions.
	log.Info("node starting", "group", nc.group, "node", nc.nodeID, "brokers", nc.kafka.brokers, "http", n.addr,
		"ruleset", rs.Name, "version", rs.Version, "sha256", rs.SHA256[:12], "data", nc.dataDir)
	if started != nil {
		started(n)
	}
	sn, err := streams.NewNode(streams.Options{
		Brokers: brokers, Group: nc.group, NodeID: nc.nodeID, Topics: nc.kafka.topics,
		ClientOpts: nc.clientOpts, Logger: log, SessionTimeout: nc.sessionTimeout, IdleAfter: nc.idleAfter,
		OnAssigned: func(m map[string][]int32) {
			n.assign(m, true)
			log.Info("partitions assigned", "partitions", fmt.Sprint(m))
		},
		OnRevoked: func(m map[string][]int32) {
			n.assign(m, false)
			log.Info("partitions revoked", "partitions", fmt.Sprint(m))
		},
	})
	if err != nil {
		return err
	}
	n.streams.Store(sn) // closed when the node stops (below), leaving the group

	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) { return db.Partition(topic, p) })
	// Rebuilds replay each record under the version recorded for it,
	// found by number and sha256 (which binds the document): what ran,
	// which this node or another accepted then; the signature decides
	// what runs next, not what ran.
	history := streams.NewHistory(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, nc.clientOpts...), nc.kafka.topics, nc.ruleset, versions.Compile)
	eng, err := engine.New(rs, sn, sn, store,
		engine.WithObserver(observer{n.metrics, n}), engine.WithLogger(log), engine.WithKeyCheck(engine.KeyRequired), engine.WithSwitchRecords(),
		engine.WithHistory(history), engine.WithPartitioner(sn.PartitionOf),
		engine.WithProposalTopics(nc.kafka.topics.Proposals), engine.WithRelayTopics(nc.kafka.topics.Actions))
	if err != nil {
		sn.Close()
		return err
	}
	n.eng.Store(eng)
	// The shadow, if one is published, after the live rule set: it runs
	// beside the live pipeline and stops (after its batch) before
	// runNode returns.
	if err := n.shadow.start(ctx); err != nil && ctx.Err() == nil {
		log.Error("cannot read the shadow at start; the config follower takes it up", "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { follow(ctx, nc, eng, n, log) })
	wg.Go(func() { watchShadow(ctx, nc, reg, log) })
	stopBeat := heartbeat(ctx, nc, n, log)
	err = eng.Run(ctx)

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
	}()
	select {
	case <-stopped:
	case <-time.After(stopTimeout):
		log.Error("the node did not stop in time: exiting anyway", "after", stopTimeout)
	}
	if clean {
		log.Info("node stopped: the current batch finished and was committed")
		return nil
	}
	return err
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nc nodeConfig
	nc.kafka.register(fs, "127.0.0.1:9092")
	fs.StringVar(&nc.group, "group", "adrules", "consumer group")
	fs.StringVar(&nc.nodeID, "node-id", "", "this node's id, unique in the group and stable across restarts (its transactional id is GROUP-ID); default: the host name and a hash of the data directory")
	fs.StringVar(&nc.dataDir, "data-dir", ".data/node", "directory of the node's Pebble state")
	fs.StringVar(&nc.httpAddr, "http-addr", "127.0.0.1:8080", "address of /metrics, /healthz and /readyz")
	fs.StringVar(&nc.rulesFile, "rules", "examples/rules.yaml", "rules file, published as the first version when the config topic has none")
	fs.StringVar(&nc.ruleset, "ruleset", "default", "the rule set (its name on the config topic) this node runs")
	fs.StringVar(&nc.envName, "env", "", "environments overlay of the rules file")
	fs.IntVar(&nc.partitions, "partitions", 4, "partitions of the topics it creates")
	fs.BoolVar(&nc.createTopics, "create-topics", true, "create missing topics")
	fs.DurationVar(&nc.sessionTimeout, "session-timeout", 45*time.Second, "group session timeout: a node that restarts within it gets its partitions back at once (static membership); one that stays down keeps them unprocessed this long")
	fs.DurationVar(&nc.idleAfter, "idle-after", time.Minute, "a source partition without records this long is idle: stage 2 stops waiting for it once every source is idle (docs/guards.md)")
	var kf keyFlags
	kf.registerNode(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules run --brokers LIST --trust FILE [--signing-key FILE] [--group ID] [--data-dir DIR] [--http-addr ADDR]\n\nJoins the consumer group and runs both stages for the partitions this node owns,\nunder the newest valid rule set version signed by a key of the trust list.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	opts, err := nc.kafka.clientOpts(env)
	if err != nil {
		return err
	}
	nc.clientOpts = opts
	if nc.keys, err = kf.load(env); err != nil {
		return err
	}
	if nc.nodeID == "" {
		nc.nodeID = defaultNodeID(nc.dataDir)
	}
	return runNode(ctx, nc, stderr, env, nil)
}

// defaultNodeID is the host name and a short hash of the absolute data
// directory: two nodes on one host, each with its own directory, get
// different transactional ids, and a node keeps its id across restarts.
func defaultNodeID(dataDir string) string {
	host, _ := os.Hostname()
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return fmt.Sprintf("%s-%x", host, sum[:4])
}

// newFlagSet returns a flag set that is only used to fill defaults.
func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("", flag.ContinueOnError) }

// nodeRules reads the config topic and its history to their ends and
// returns the highest valid version of the rule set signed by a trusted
// key (versions.Newest), the one running nodes keep (node.newer): the
// config topic alone may hold a lower version than one published earlier
// (a racing publisher, or compaction after one), or only an invalid
// record, or a tombstone. Among valid records of one version the later
// wins, the history's records coming before the config topic's (Publish
// writes the history first). An invalid or untrusted version is refused
// (logged) and never picked; when versions were published but none is
// valid and trusted, the node refuses to start. When none was ever
// published, it publishes the --rules file (with the environments
// overlay, never with variables), signed with its --signing-key, as the
// first version: every node then follows the topic.
func nodeRules(ctx context.Context, nc nodeConfig, env map[string]string, log *slog.Logger) (*rules.RuleSet, error) {
	name := nc.ruleset
	var bad int
	published, err := readLive(ctx, &nc.kafka, nc.clientOpts, name, func(topic, reason string) {
		log.Warn("config record refused", "topic", topic, "reason", reason)
		bad++
	})
	if err != nil {
		return nil, err
	}
	if _, rs, ok := versions.Newest(published, nc.keys.Accept, func(c versions.Record, err error) {
		log.Error("published version refused", "version", c.Version, "err", err)
	}); ok {
		return rs, nil
	}
	if len(published)+bad > 0 {
		if nc.keys.Checks() {
			return nil, fmt.Errorf("rule set %q: no published version is valid and signed by a key of the trust list (publish one with adrules config publish --signing-key, or sign an old one anew with adrules config rollback --signing-key)", name)
		}
		return nil, fmt.Errorf("rule set %q: no published version is valid", name)
	}
	vars := map[string]string{}
	for _, k := range []string{"ADRULES_ENV", "ENVIRONMENT"} {
		if v, ok := env[k]; ok {
			vars[k] = v
		}
	}
	boot, err := loadRules(nc.rulesFile, nc.envName, vars)
	if err != nil {
		return nil, err
	}
	if boot.Name != name {
		return nil, fmt.Errorf("--rules %s holds rule set %q, not %q (--ruleset)", nc.rulesFile, boot.Name, name)
	}
	c, err := publishDoc(ctx, &nc.kafka, nc.clientOpts, nc.keys, boot.Doc, "bootstrap:"+nc.nodeID)
	if err != nil {
		return nil, fmt.Errorf("rule set %q: nothing is published, and the node cannot publish --rules %s: %w", name, nc.rulesFile, err)
	}
	log.Info("no rule set was published: published the rules file", "file", nc.rulesFile, "version", c.Version, "sha256", short(c.SHA256), "signer", nc.keys.signedBy(c))
	return nc.keys.Accept(c)
}

// follow reads the config topic from its start for as long as the node
// runs, and swaps in every newer valid version of the node's rule set
// signed by a trusted key between batches. A record that is not signed by
// a trusted key (unsigned, another key, a signature made for another
// version) is refused and counted whatever its number, before anything
// else is done with it; an invalid version is refused (logged and counted)
// and the last good one stays; a tombstone changes nothing. Records of the
// shadow's key go to the shadow runner.
func follow(ctx context.Context, nc nodeConfig, eng *engine.Engine, n *node, log *slog.Logger) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(nc.kafka.brokerList()...),
		kgo.ConsumeTopics(nc.kafka.topics.Config), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, nc.clientOpts...)...)
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
			if string(r.Key) == nc.ruleset && r.Value == nil {
				log.Warn("config tombstone ignored: the live rule set stays", "name", nc.ruleset)
			}
		}
		good, bad := versions.Live(streams.Entries(recs), nc.ruleset)
		for _, b := range bad {
			n.metrics.refused.Inc()
			log.Error("config record refused", "reason", b)
		}
		for _, c := range good {
			if _, err := nc.keys.Check(c); err != nil {
				n.metrics.refused.Inc()
				log.Error("published version refused: not signed by a trusted key; the last good one stays", "version", c.Version, "err", err)
				continue
			}
			if !n.newer(c) {
				continue
			}
			rs, err := versions.Compile(c)
			if err != nil {
				n.metrics.refused.Inc()
				log.Error("published version refused; the last good one stays", "version", c.Version, "err", err)
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

// heartbeatEvery is how often a node says which version it runs.
const heartbeatEvery = 2 * time.Second

// heartbeat publishes the node's version to the status topic every
// heartbeatEvery, until ctx ends; the returned func writes a tombstone.
func heartbeat(ctx context.Context, nc nodeConfig, n *node, log *slog.Logger) func() {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(nc.kafka.brokerList()...), kgo.DefaultProduceTopic(nc.kafka.topics.Status)}, nc.clientOpts...)...)
	if err != nil {
		log.Error("no heartbeats", "err", err)
		return func() {}
	}
	beat := func() {
		rs := n.ruleSet()
		b, _ := json.Marshal(streams.Heartbeat{Node: nc.nodeID, Group: nc.group, Ruleset: rs.Name, Version: rs.Version,
			SHA256: rs.SHA256, HTTP: n.addr, At: time.Now().UTC().Format(time.RFC3339), Shadow: n.shadow.version()})
		cl.Produce(ctx, &kgo.Record{Key: []byte(nc.nodeID), Value: b}, func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				log.Warn("heartbeat not written", "err", err)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			beat()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		<-done
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cl.ProduceSync(tctx, &kgo.Record{Key: []byte(nc.nodeID)}) // gone: a tombstone
		cl.Close()
	}
}
