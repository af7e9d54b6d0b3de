package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

type runningNode struct {
	n      *nodeRun
	cancel context.CancelFunc
	done   chan error
}

func startRunNode(t *testing.T, nc nodeConfig) *runningNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningNode{cancel: cancel, done: make(chan error, 1)}
	started := make(chan *nodeRun, 1)
	go func() { r.done <- runNode(ctx, nc, io.Discard, nil, func(n *nodeRun) { started <- n }) }()
	select {
	case r.n = <-started:
	case err := <-r.done:
		t.Fatalf("node %s: %v", nc.nodeID, err)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runningNode) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("node: %v", err)
	}
	r.cancel = nil
}

// eventually waits for cond, failing the test after 30 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestNodesFollowConfig: three nodes on one broker. Publish version 2: all
// run it, say so on the status topic, and their decisions carry it. Publish
// an invalid version 3: all refuse it and stay on 2. Restart a node: it
// comes back on 2. A fresh node replaying the recorded input writes
// byte-identical decisions.
func TestNodesFollowConfig(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	b := strings.Join(addrs, ",")
	conf := func(id, dir string) nodeConfig { return testNodeConfig(addrs, topics, id, dir) }
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	nodes := []*runningNode{startRunNode(t, conf("n1", dirs[0]))} // bootstraps v1
	nodes = append(nodes, startRunNode(t, conf("n2", dirs[1])), startRunNode(t, conf("n3", dirs[2])))
	flags := []string{"--brokers", b, "--topic-config", topics.Config, "--topic-config-history", topics.ConfigHistory, "--topic-status", topics.Status}

	strict := t.TempDir() + "/strict.yaml"
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.045")
	if out, _, err := adrules(t, "", nil, append(append([]string{"config", "publish"}, flags...), strict)...); err != nil || !strings.Contains(out, "v2") {
		t.Fatalf("publish: %v %s", err, out)
	}
	for i, r := range nodes {
		eventually(t, fmt.Sprintf("node %d on v2", i+1), func() bool { return r.n.ruleSet().Version == 2 })
	}
	eventually(t, "three live nodes on v2 in config status", func() bool {
		out, _, err := adrules(t, "", nil, append([]string{"config", "status"}, flags...)...)
		return err == nil && strings.Count(out, "live") == 3 && strings.Count(out, "default v2") == 3
	})

	// An invalid v3, written by hand: refused everywhere.
	bad := signed(t, versions.Record{Name: "default", Version: 3, SHA256: "0", Author: "x", Document: []byte(`{"name":"default","rules":[{"id":"r","when":"ad.nope","emit":{"type":"t"}}]}`)})
	if err := streams.Publish(context.Background(), kafkatest.Client(t, addrs), topics, bad); err != nil {
		t.Fatal(err)
	}
	for i, r := range nodes {
		eventually(t, fmt.Sprintf("node %d refusing v3", i+1), func() bool { return r.n.refused() >= 1 })
		if v := r.n.ruleSet().Version; v != 2 {
			t.Fatalf("node %d runs v%d after an invalid v3, want 2", i+1, v)
		}
	}
	nodes[2].stop(t)
	nodes[2] = startRunNode(t, conf("n3", dirs[2]))
	if v := nodes[2].n.ruleSet().Version; v != 2 {
		t.Fatalf("a restarted node runs v%d, want 2", v)
	}

	// Decisions carry v2.
	lines := kafkatest.History(t, 6, gen.Options{Accounts: 2, BadPct: 1, DupPct: 1})
	want, _ := kafkatest.Backtest(t, nodes[0].n.ruleSet(), lines)
	if len(want) == 0 {
		t.Fatal("no decisions: the test would prove little")
	}
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines)
	got, _ := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want), time.Minute)
	for _, d := range got {
		if !strings.Contains(string(d), `"ruleset_version":2,`) {
			t.Fatalf("decision without v2: %s", d)
		}
	}

	// Replay the recorded input on a fresh node with its own group and
	// outputs: the same decisions, byte for byte.
	rc := conf("replay", t.TempDir())
	rc.group = kafkatest.Name(topics, "replay")
	rc.kafka.topics.Decisions, rc.kafka.topics.Verdicts = "replay."+topics.Decisions, "replay."+topics.Verdicts
	rc.kafka.topics.Proposals, rc.kafka.topics.DLQ = "replay."+topics.Proposals, "replay."+topics.DLQ
	startRunNode(t, rc)
	again, _ := kafkatest.ConsumeDecisions(t, addrs, rc.kafka.topics.Decisions, len(want), time.Minute)
	a, g := toStrings(got), toStrings(again)
	slices.Sort(a)
	slices.Sort(g)
	if !slices.Equal(a, g) {
		t.Fatal("a replay of the recorded logs wrote other decisions")
	}
}

func toStrings(b [][]byte) []string {
	out := make([]string, len(b))
	for i, x := range b {
		out[i] = string(x)
	}
	return out
}

// TestNodeFallsBackToHistory: when compaction has left the config topic
// with nothing valid (here: only a tombstone), a starting node runs the
// newest valid version of the history instead of bootstrapping its file.
func TestNodeFallsBackToHistory(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	strict := t.TempDir() + "/strict.yaml"
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.05")
	rs, err := loadRules(strict, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(signed(t, versions.Record{Name: "default", Version: 7, SHA256: rs.SHA256, Author: "a", Document: rs.Doc.Canonical()}))
	cl := kafkatest.Client(t, addrs)
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: topics.ConfigHistory, Key: []byte("default"), Value: rec},
		&kgo.Record{Topic: topics.Config, Key: []byte("default")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	nc := testNodeConfig(addrs, topics, "h", t.TempDir())
	r := startRunNode(t, nc)
	if got := r.n.ruleSet(); got.Version != 7 || got.SHA256 != rs.SHA256 {
		t.Fatalf("the node runs v%d %s, want the history's v7", got.Version, short(got.SHA256))
	}
}

// testNodeConfig is a node's configuration for tests: the test's group,
// the default rules file and rule set, its own data directory, an HTTP
// port of its own.
func testNodeConfig(addrs []string, topics streams.Topics, id, dir string) nodeConfig {
	var nc nodeConfig
	nc.kafka.register(newFlagSet(), strings.Join(addrs, ","))
	nc.kafka.topics = topics
	nc.group, nc.nodeID, nc.dataDir, nc.httpAddr = kafkatest.Group(topics), id, dir, "127.0.0.1:0"
	nc.rulesFile, nc.ruleset, nc.partitions, nc.createTopics = "../../examples/rules.yaml", "default", 4, true
	// Stage 2 judges the last proposals once every source is idle: soon.
	nc.idleAfter = time.Second
	nc.keys = testKeys()
	return nc
}
