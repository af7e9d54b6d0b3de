package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kfake"
)

// cmdDev runs the embedded default: an in-process Kafka-protocol broker
// (kfake), the topics, a node on the sample rules, synthetic traffic, a
// status line a second, and HTTP.
func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "address of the embedded Kafka broker")
	dataDir := fs.String("data-dir", ".data/dev", "directory of the broker's log and the node's state")
	rulesFile := fs.String("rules", "examples/rules.yaml", "rules file")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "address of /metrics, /healthz and /readyz")
	rate := fs.Float64("generate-rate", 200, "synthetic metric events per second (0: none)")
	partitions := fs.Int("partitions", 4, "partitions per topic")
	status := fs.Bool("status", true, "print a status line every second")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules dev [flags]\n\nStarts an embedded Kafka broker, creates the topics, runs a node on the sample rules and feeds it synthetic traffic.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	host, portStr, err := net.SplitHostPort(*kafkaAddr)
	if err != nil {
		return fmt.Errorf("--kafka-addr: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--kafka-addr: %w", err)
	}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(filepath.Join(*dataDir, "kafka")),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, portStr))
		}),
	)
	if err != nil {
		return fmt.Errorf("start the embedded broker on %s: %w", *kafkaAddr, err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	fmt.Fprintf(stdout, "adrules dev: Kafka on %s (try: kcat -b %s -L), data in %s\n", addr, addr, *dataDir)

	var nc nodeConfig
	nc.kafka.register(newFlagSet(), addr)
	nc.group, nc.nodeID, nc.ruleset = "adrules", "dev", "default"
	nc.dataDir, nc.httpAddr, nc.rulesFile = filepath.Join(*dataDir, "node"), *httpAddr, *rulesFile
	nc.partitions, nc.createTopics = *partitions, true
	// dev makes a publisher key of its own (kept with its data, as the
	// versions it signed are), signs with it and trusts it alone.
	key := filepath.Join(*dataDir, "publisher.key")
	if nc.keys, err = devKeys(key); err != nil {
		return err
	}

	// dev makes an admin token when none is set, and prints it.
	if env["ADRULES_ADMIN_TOKEN"] == "" {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		var b [16]byte
		rand.Read(b[:])
		env["ADRULES_ADMIN_TOKEN"] = hex.EncodeToString(b[:])
	}
	started := make(chan *nodeRun, 1)
	done := make(chan error, 1)
	go func() { done <- runNode(ctx, nc, stderr, env, func(n *nodeRun) { started <- n }) }()
	var n *nodeRun
	select {
	case n = <-started:
	case err := <-done:
		return err
	}
	fmt.Fprintf(stdout, "adrules dev: node on http://%s (/metrics, /readyz), rule set %q sha256 %s\n", n.addr, n.ruleSet().Name, n.ruleSet().SHA256[:12])
	fmt.Fprintf(stdout, "adrules dev: admin API token %s (curl -H 'Authorization: Bearer %s' -X PUT --data-binary @rules.yaml http://%s/api/config)\n",
		env["ADRULES_ADMIN_TOKEN"], env["ADRULES_ADMIN_TOKEN"], n.addr)
	fmt.Fprintf(stdout, "adrules dev: versions are signed by key %s (%s); publish one with: adrules config publish --brokers %s --signing-key %s --trust %s rules.yaml\n",
		nc.keys.Signer.Public().ID(), key, addr, key, strings.TrimSuffix(key, ".key")+".pub")
	fmt.Fprintf(stdout, "adrules dev: watch decisions with: adrules tail --brokers %s   (or kcat -b %s -C -t %s)\n", addr, addr, nc.kafka.topics.Decisions)

	if *rate > 0 {
		go generate(ctx, streams.Connection{Brokers: []string{addr}, Topics: nc.kafka.topics}, *rate, stderr)
	}
	if *status {
		go statusLine(ctx, n.Node, stdout)
	}
	return <-done
}

// generate produces synthetic metric events at rate per second to the
// metrics topic of conn, as adrules produce does (streams.ProduceLines:
// keyed by ad_id). Its pace is the wall clock's; the events carry their
// own time.
func generate(ctx context.Context, conn streams.Connection, rate float64, stderr io.Writer) {
	c, err := streams.Open(conn)
	if err != nil {
		fmt.Fprintln(stderr, "generator:", err)
		return
	}
	defer c.Close()
	events, ew := io.Pipe()
	go func() {
		_, err := gen.Events(ew, gen.Options{Seed: uint64(time.Now().UnixNano()), Events: math.MaxInt32, BadPct: 0.2, DupPct: 0.5, EpochMsPct: 30})
		ew.CloseWithError(err)
	}()
	defer events.Close()
	paced, pw := io.Pipe()
	go func() { pw.CloseWithError(pace(ctx, pw, events, rate)) }()
	defer paced.Close()
	streams.ProduceLines(ctx, c, conn.Topics.Metrics, paced, false) // its errors are the broker's going away: dev is stopping
}

// pace copies the lines of r to w at rate per second, a tenth of them every
// tenth of a second, until ctx ends or r does.
func pace(ctx context.Context, w io.Writer, r io.Reader, rate float64) error {
	sc := bufio.NewScanner(r)
	bw := bufio.NewWriter(w)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	perTick, owed := rate/10, 0.0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		owed += perTick
		for ; owed >= 1; owed-- {
			if !sc.Scan() {
				bw.Flush()
				return sc.Err()
			}
			bw.Write(sc.Bytes())
			bw.WriteByte('\n')
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

// statusLine prints one line a second: events/s, decisions, lag, version.
func statusLine(ctx context.Context, n *node.Node, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := n.Status().Events
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := n.Status()
		ready := "ready"
		if !st.Ready {
			ready = "not ready"
		}
		rs := st.RuleSet
		fmt.Fprintf(w, "%s  %6d events/s  %7d events  %5d decisions  lag %d  rule set %s v%d (%s)  %s\n",
			time.Now().Format("15:04:05"), st.Events-last, st.Events, st.Decisions, st.Lag, rs.Name, rs.Version, rs.SHA256[:12], ready)
		last = st.Events
	}
}

// devKeys returns dev's keyring: the key at path, made (with its public
// half beside it, .pub) when there is none, signing and alone trusted.
func devKeys(path string) (versions.Keys, error) {
	s, err := loadSigner(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			s, err = writeKeyPair(strings.TrimSuffix(path, ".key"), "dev")
		}
	}
	if err != nil {
		return versions.Keys{}, err
	}
	trust, err := versions.NewTrustList(s.Public())
	return versions.Keys{Policy: versions.Policy{Trust: trust}, Signer: s}, err
}
