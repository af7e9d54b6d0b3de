package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/node/nodeprom"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// nodeConfig is what cmdRun and cmdDev read from their flags: a node's
// options (node.Options) before they are built.
type nodeConfig struct {
	kafka        kafkaFlags
	clientOpts   []kgo.Opt // added to every client (tests: kfake's settings)
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
	// signs what it publishes with (versions.Keys.Validate).
	keys versions.Keys
	// http bounds the HTTP server; the zero value takes node.DefaultHTTPLimits.
	http node.HTTPLimits
	// snapshots is the URL of the snapshot store ("": none); snapshotEvery
	// the records of a partition between two snapshots (0: the default).
	snapshots     string
	snapshotEvery int64
}

// options are the node.Options of nc; the node's /metrics are reg's.
func (nc nodeConfig) options(cl *streams.Cluster, env map[string]string, log *slog.Logger) node.Options {
	vars := map[string]string{}
	for _, k := range []string{"ADRULES_ENV", "ENVIRONMENT"} {
		if v, ok := env[k]; ok {
			vars[k] = v
		}
	}
	return node.Options{
		Cluster: cl, Group: nc.group, NodeID: nc.nodeID, DataDir: nc.dataDir, HTTPAddr: nc.httpAddr, Ruleset: nc.ruleset,
		// The --rules file with the environments overlay, never with
		// variables: a node takes rule parameters from the topic only.
		Bootstrap:     func() (*rules.RuleSet, error) { return loadRules(nc.rulesFile, nc.envName, vars) },
		BootstrapName: nc.rulesFile,
		Partitions:    nc.partitions, CreateTopics: nc.createTopics,
		SessionTimeout: nc.sessionTimeout, IdleAfter: nc.idleAfter,
		Keys: nc.keys, AdminToken: env["ADRULES_ADMIN_TOKEN"], HTTP: nc.http, Env: env, Logger: log,
		Snapshots: nc.snapshots, SnapshotEvery: nc.snapshotEvery,
	}
}

// heartbeatEvery is how often a node says which version it runs.
const heartbeatEvery = node.DefaultHeartbeatEvery

// nodeRun is a running node, for dev's status line and for tests.
type nodeRun struct {
	*node.Node
	addr string
}

func (n *nodeRun) ruleSet() *rules.RuleSet { return n.RuleSet() }

// runNode runs a node until ctx ends or it fails (node.Run): it owns the
// node's Kafka connection and its Prometheus registry, whose /metrics the
// node serves. started, when not nil, is called once the node runs.
func runNode(ctx context.Context, nc nodeConfig, stderr io.Writer, env map[string]string, started func(*nodeRun)) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	conn := nc.kafka.connection(env)
	conn.ClientOpts = nc.clientOpts
	cl, err := streams.Open(conn)
	if err != nil {
		return err
	}
	defer cl.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	live, shadow := nodeprom.New(reg, nodeprom.Live), nodeprom.New(reg, nodeprom.Shadow)
	o := nc.options(cl, env, log)
	o.Observer, o.ShadowObserver = live, shadow
	o.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	o.Started = func(n *node.Node) {
		live.Attach(n)
		if started != nil {
			started(&nodeRun{Node: n, addr: n.Addr()})
		}
	}
	n, err := node.Start(ctx, o)
	if err != nil {
		return err
	}
	return n.Wait()
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
	fs.StringVar(&nc.snapshots, "snapshots", "", "URL of the store of partitions' snapshots (file:///DIR; mem://): a partition taken over is restored from its newest snapshot and the tail of its log (docs/operations.md, Snapshots); default none")
	fs.Int64Var(&nc.snapshotEvery, "snapshot-every", node.DefaultSnapshotEvery, "input records of a partition between two of its snapshots, with --snapshots")
	var kf keyFlags
	kf.registerNode(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules run --brokers LIST --trust FILE [--signing-key FILE] [--group ID] [--data-dir DIR] [--http-addr ADDR]\n\nJoins the consumer group and runs both stages for the partitions this node owns,\nunder the newest valid rule set version signed by a key of the trust list.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if _, err := nc.kafka.connection(env).Security.ClientOpts(); err != nil {
		return err
	}
	var err error
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
