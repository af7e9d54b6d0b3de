package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// uncompilableRecord is version v of the default rule set with a condition
// that reads a field no ad has. The document loads and hashes to its
// sha256, so only compiling its expressions refuses it; the test checks
// that, so that it never passes on a refusal for another reason.
func uncompilableRecord(t *testing.T, v int64) versions.Record {
	t.Helper()
	doc := *document(t)
	doc.Rules = slices.Clone(doc.Rules)
	doc.Rules[0].When = "ad.no_such_field > 1"
	c := versions.Record{Name: "default", Version: v, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()}
	loaded, err := config.Load("check", c.Document, config.Options{})
	if err != nil || loaded.SHA256() != c.SHA256 {
		t.Fatalf("the crafted record must load and hash to its sha256: %v", err)
	}
	if _, err := versions.Compile(c); err == nil || !strings.Contains(err.Error(), "no_such_field") {
		t.Fatalf("the crafted record must fail to compile on its expression, got %v", err)
	}
	return signed(t, c)
}

// produceConfigs writes cs to topic, in order, under the rule set's name,
// as a publisher would, or as compaction leaves them.
func produceConfigs(t *testing.T, cl *kgo.Client, topic string, cs ...versions.Record) {
	t.Helper()
	for _, c := range cs {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(c.Name), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// publish publishes cs (streams.Publish) in order.
func publish(t *testing.T, cl *kgo.Client, topics streams.Topics, cs ...versions.Record) {
	t.Helper()
	for _, c := range cs {
		if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
			t.Fatal(err)
		}
	}
}

// startupRules returns the rule set a node with o would start with
// (node.StartupRuleSet), and what it logged choosing it.
func startupRules(t *testing.T, o node.Options) (*rules.RuleSet, string, error) {
	t.Helper()
	var log bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	rs, err := node.StartupRuleSet(context.Background(), o)
	return rs, log.String(), err
}

func wantRules(t *testing.T, rs *rules.RuleSet, err error, want versions.Record) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if rs.Version != want.Version || rs.SHA256 != want.SHA256 {
		t.Fatalf("a starting node runs v%d %.12s, want v%d %.12s", rs.Version, rs.SHA256, want.Version, want.SHA256)
	}
}

// TestStartupVersion: the version a starting node chooses
// (node.StartupRuleSet, as Start chooses it) from what the config topics
// hold.
func TestStartupVersion(t *testing.T) {
	t.Parallel()
	v1, v1b, v2, v2b := versionRecord(t, 1, "0.03"), versionRecord(t, 1, "0.04"), versionRecord(t, 2, "0.05"), versionRecord(t, 2, "0.06")
	for _, tc := range []struct {
		name            string
		history, config []versions.Record // the records of each topic, in order
		want            versions.Record
	}{
		// The config topic holds v2, then a v1' (a racing or buggy
		// publisher): running nodes stay on v2 (a lower version never
		// replaces a higher one); a starting node runs v2 too, not the
		// last record.
		{"highest version, not last record", []versions.Record{v2, v1b}, []versions.Record{v2, v1b}, v2},
		// Compaction left the config topic with only a v1 record while the
		// history holds v1 and v2 (as after a v1' published after v2,
		// compacted): the history's highest.
		{"after compaction the history's highest", []versions.Record{v1, v2}, []versions.Record{v1}, v2},
		// Two publishers raced to v2. A wrote its history record, B wrote
		// both of its records, then A wrote the config topic: running
		// nodes end on A's document (the last config record), and so does
		// a starting node, although B's is the history's last.
		{"same version: the config record wins", []versions.Record{v2, v2b}, []versions.Record{v2b, v2}, v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addrs, topics := kafkatest.Brokers(t)
			kafkatest.Setup(t, addrs, topics)
			cl := kafkatest.Client(t, addrs)
			produceConfigs(t, cl, topics.ConfigHistory, tc.history...)
			produceConfigs(t, cl, topics.Config, tc.config...)
			rs, _, err := startupRules(t, options(t, addrs, topics, "s"))
			wantRules(t, rs, err, tc.want)
		})
	}
}

// TestStartupRefusesUncompilableVersion: a published v3 whose document
// hashes correctly but whose condition does not compile is refused by a
// running node (told to its observer; it stays on v2) and by a starting
// node (logged; it starts on v2).
func TestStartupRefusesUncompilableVersion(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	v1, v2, v3 := versionRecord(t, 1, "0.03"), versionRecord(t, 2, "0.05"), uncompilableRecord(t, 3)
	publish(t, cl, topics, v1, v2)
	n := start(t, options(t, addrs, topics, "running"))
	if got := n.RuleSet(); got.Version != 2 {
		t.Fatalf("the running node started on v%d, want 2", got.Version)
	}
	publish(t, cl, topics, v3)
	eventually(t, "the running node refusing v3", func() bool { return n.obs.refusals() >= 1 })
	if got := n.RuleSet(); got.Version != 2 || got.SHA256 != v2.SHA256 {
		t.Fatalf("the running node runs v%d after an uncompilable v3, want v2", got.Version)
	}

	rs, log, err := startupRules(t, options(t, addrs, topics, "starting"))
	wantRules(t, rs, err, v2)
	if !strings.Contains(log, "refused") || !strings.Contains(log, "version=3") || !strings.Contains(log, "no_such_field") {
		t.Fatalf("a starting node must say it refused v3 and why; it logged:\n%s", log)
	}
}

// TestStartupRefusesWhenEveryVersionIsInvalid: every published version is
// invalid (a bad hash, an uncompilable condition). The node refuses to
// start, naming the rule set, and does not bootstrap its rules file over
// them.
func TestStartupRefusesWhenEveryVersionIsInvalid(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	badHash := versionRecord(t, 1, "0.03")
	badHash.SHA256 = "0"
	publish(t, cl, topics, signed(t, badHash), uncompilableRecord(t, 2))
	o := options(t, addrs, topics, "s")
	o.Started = func(*node.Node) { t.Error("the node started") }
	_, err := startNode(t, o)
	if err == nil || !strings.Contains(err.Error(), `rule set "default"`) || !strings.Contains(err.Error(), "no published version is valid") {
		t.Fatalf("Start: %v, want a refusal naming rule set \"default\"", err)
	}
	recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.ConfigHistory)
	if err != nil {
		t.Fatal(err)
	}
	if hist, _ := versions.Live(streams.Entries(recs), "default"); len(hist) != 2 {
		t.Fatalf("the history holds %d versions, want the 2 published: the node must not bootstrap", len(hist))
	}
}

// TestNodeSurvivesHostileVersion (issue 11, row 2): a trusted publisher's
// version whose condition nests 450,000 brackets deep, correctly hashed and
// signed, is refused by a running node, which keeps its version and goes
// on following the topic; a starting node refuses it too. (Compiled, the
// condition overflowed expr's parser stack and killed every node.)
func TestNodeSurvivesHostileVersion(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs, kgo.ProducerBatchMaxBytes(2<<20))
	publish(t, cl, topics, versionRecord(t, 1, "0.03"), versionRecord(t, 2, "0.05"))
	n := start(t, options(t, addrs, topics, "running"))
	doc := *document(t)
	doc.Rules = slices.Clone(doc.Rules)
	const depth = 450_000
	doc.Rules[0].When = strings.Repeat("(", depth) + "true" + strings.Repeat(")", depth)
	publish(t, cl, topics, signed(t, versions.Record{Name: "default", Version: 3, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()}))
	eventually(t, "the running node refusing v3", func() bool { return n.obs.refusals() >= 1 })
	if got := n.RuleSet(); got.Version != 2 {
		t.Fatalf("the running node runs v%d after a hostile v3, want v2", got.Version)
	}
	// It still follows the topic.
	v4 := versionRecord(t, 4, "0.04")
	publish(t, cl, topics, v4)
	eventually(t, "the running node on v4", func() bool { return n.RuleSet().Version == 4 })
	got, _, err := startupRules(t, options(t, addrs, topics, "starting"))
	wantRules(t, got, err, v4)
}

// TestNodeFallsBackToHistory: when compaction has left the config topic
// with nothing valid (here: only a tombstone), a starting node runs the
// newest valid version of the history instead of bootstrapping its file.
func TestNodeFallsBackToHistory(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	v7 := versionRecord(t, 7, "0.05")
	rec, _ := json.Marshal(v7)
	cl := kafkatest.Client(t, addrs)
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: topics.ConfigHistory, Key: []byte("default"), Value: rec},
		&kgo.Record{Topic: topics.Config, Key: []byte("default")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	n := start(t, options(t, addrs, topics, "h"))
	if got := n.RuleSet(); got.Version != 7 || got.SHA256 != v7.SHA256 {
		t.Fatalf("the node runs v%d %.12s, want the history's v7", got.Version, got.SHA256)
	}
}

// latestBeats returns each node's last heartbeat on the status topic (none
// for a node whose last word is a tombstone).
func latestBeats(t *testing.T, addrs []string, topics streams.Topics) map[string]streams.Heartbeat {
	t.Helper()
	recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.Status)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]streams.Heartbeat{}
	for _, r := range recs {
		var h streams.Heartbeat
		if r.Value == nil || json.Unmarshal(r.Value, &h) != nil {
			delete(out, string(r.Key))
			continue
		}
		out[string(r.Key)] = h
	}
	return out
}

// TestNodesFollowConfig: three nodes on one broker. Publish version 2: all
// run it, say so in their next heartbeat, and their decisions carry it.
// Publish an invalid version 3: all refuse it and stay on 2. Restart a
// node: it comes back on 2. A fresh node replaying the recorded input
// writes byte-identical decisions.
func TestNodesFollowConfig(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	var opts []node.Options
	var nodes []*testNode
	for i, id := range []string{"n1", "n2", "n3"} {
		opts = append(opts, options(t, addrs, topics, id))
		nodes = append(nodes, start(t, opts[i])) // n1 bootstraps v1
	}
	pub, err := streams.PublishDocument(context.Background(), clusterOf(t, addrs, topics), kafkatest.TestKeys(),
		document(t, "ctr_threshold: 0.03", "ctr_threshold: 0.045"), "test", false)
	if err != nil || pub.Version != 2 {
		t.Fatalf("publish: v%d %v", pub.Version, err)
	}
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d on v2", i+1), func() bool { return n.RuleSet().Version == 2 })
		n.clock.Advance(node.DefaultHeartbeatEvery)
	}
	eventually(t, "three nodes on v2 in their heartbeats", func() bool {
		beats := latestBeats(t, addrs, topics)
		for _, n := range nodes {
			if h := beats[n.o.NodeID]; h.Version != 2 || h.Ruleset != "default" || h.Group != n.o.Group {
				return false
			}
		}
		return true
	})

	// An invalid v3, written by hand: refused everywhere.
	bad := signed(t, versions.Record{Name: "default", Version: 3, SHA256: "0", Author: "x", Document: []byte(`{"name":"default","rules":[{"id":"r","when":"ad.nope","emit":{"type":"t"}}]}`)})
	publish(t, kafkatest.Client(t, addrs), topics, bad)
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d refusing v3", i+1), func() bool { return n.obs.refusals() >= 1 })
		if v := n.RuleSet().Version; v != 2 {
			t.Fatalf("node %d runs v%d after an invalid v3, want 2", i+1, v)
		}
	}
	nodes[2].stop(t)
	if _, ok := latestBeats(t, addrs, topics)["n3"]; ok {
		t.Fatal("a stopped node's last heartbeat is not a tombstone")
	}
	o := opts[2] // the same data directory
	o.Observer, o.Clock = &recorder{}, newFakeClock()
	nodes[2] = start(t, o)
	if v := nodes[2].RuleSet().Version; v != 2 {
		t.Fatalf("a restarted node runs v%d, want 2", v)
	}

	// Decisions carry v2.
	lines := kafkatest.History(t, 6, gen.Options{Accounts: 2, BadPct: 1, DupPct: 1})
	want, _ := kafkatest.Backtest(t, nodes[0].RuleSet(), lines)
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
	rc := options(t, addrs, topics, "replay")
	rc.Group = kafkatest.Name(topics, "replay")
	rt := &rc.Connection.Topics
	rt.Decisions, rt.Verdicts, rt.Proposals, rt.DLQ = "replay."+topics.Decisions, "replay."+topics.Verdicts, "replay."+topics.Proposals, "replay."+topics.DLQ
	start(t, rc)
	again, _ := kafkatest.ConsumeDecisions(t, addrs, rt.Decisions, len(want), time.Minute)
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

// TestNodesRefuseUntrustedVersions: issue 11, signed versions, and row 9.
// Two nodes with the same trust list run v2, published and signed. Then,
// by hand on the config topics: an unsigned v3, a v3 signed by a key they
// do not trust, v2's record and signature replayed as v4, a shadow's
// signature on a live v5, and a record numbered 9223372036854775807. Both
// nodes refuse each of them, tell their observer, never swap to any of
// them and agree; a node starting now runs v2 too and says why it refused
// the others. Publishing goes on at v3, a rollback to v2's document at v4,
// and the nodes follow. (cmd's TestForgedVersionsHistory checks what
// config history and rollback print of the same records.)
func TestNodesRefuseUntrustedVersions(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	nodes := []*testNode{start(t, options(t, addrs, topics, "n1"))} // bootstraps v1, signed
	nodes = append(nodes, start(t, options(t, addrs, topics, "n2")))
	cluster := clusterOf(t, addrs, topics)
	v2doc := document(t, "ctr_threshold: 0.03", "ctr_threshold: 0.045")
	if _, err := streams.PublishDocument(context.Background(), cluster, kafkatest.TestKeys(), v2doc, "test", false); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d on v2", i+1), func() bool { return n.RuleSet().Version == 2 })
	}
	v2 := nodes[0].RuleSet()

	cl := kafkatest.Client(t, addrs)
	publish(t, cl, topics, kafkatest.Forge(t, addrs, topics, "..", kafkatest.TestSigner()).Records()...)
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d refusing the five records", i+1), func() bool { return n.obs.refusals() >= 5 })
		if got := n.RuleSet(); got.Version != 2 || got.SHA256 != v2.SHA256 {
			t.Fatalf("node %d runs v%d %.12s after the forgeries, want v2 %.12s", i+1, got.Version, got.SHA256, v2.SHA256)
		}
	}
	rs, log, err := startupRules(t, options(t, addrs, topics, "n3"))
	if err != nil || rs.Version != 2 || rs.SHA256 != v2.SHA256 {
		t.Fatalf("a starting node runs %v (%v), want v2\n%s", rs, err, log)
	}
	for _, want := range []string{"unsigned", "not trusted", "bad signature"} {
		if !strings.Contains(log, want) {
			t.Errorf("a starting node does not say why it refused a version (%q):\n%s", want, log)
		}
	}

	// Row 9: publish and rollback go on after the highest trusted version,
	// and every node follows.
	if c, err := streams.PublishDocument(context.Background(), cluster, kafkatest.TestKeys(), document(t), "test", false); err != nil || c.Version != 3 {
		t.Fatalf("publish after the forgeries: v%d %v, want v3", c.Version, err)
	}
	if c, err := streams.PublishDocument(context.Background(), cluster, kafkatest.TestKeys(), v2.Doc, "rollback", false); err != nil || c.Version != 4 {
		t.Fatalf("v2's document again after the forgeries: v%d %v, want v4", c.Version, err)
	}
	for i, n := range nodes {
		eventually(t, fmt.Sprintf("node %d on v4", i+1), func() bool { return n.RuleSet().Version == 4 && n.RuleSet().SHA256 == v2.SHA256 })
		// Every record before v3 and v4 was read: exactly the five
		// forgeries were refused, and the node ran v1 to v4 only.
		if got := n.obs.refusals(); got != 5 {
			t.Errorf("node %d refused %d records, want 5", i+1, got)
		}
		n.obs.mu.Lock()
		swaps := slices.Compact(slices.Clone(n.obs.ruleSets))
		n.obs.mu.Unlock()
		if !slices.Equal(swaps, []int64{1, 2, 3, 4}) && !slices.Equal(swaps, []int64{2, 3, 4}) {
			t.Errorf("node %d ran versions %v, want 1 (or 2) to 4 and no forgery", i+1, swaps)
		}
	}
}

// TestNodeNeedsATrustList: a node refuses to start without a trust list,
// with a trust list and unsigned versions accepted both, or with a signing
// key its trust list lacks. Accepting unsigned versions alone, it runs an
// unsigned version; with a trust list, it refuses to.
func TestNodeNeedsATrustList(t *testing.T) {
	t.Parallel()
	stranger := kafkatest.SeededSigner("stranger", 9)
	strangerTrust, _ := versions.NewTrustList(stranger.Public())
	for _, tc := range []struct {
		keys versions.Keys
		want string
	}{
		{versions.Keys{}, "no trust list"},
		{versions.Keys{Policy: versions.Policy{Trust: kafkatest.TestKeys().Trust, AcceptUnsigned: true}}, "contradict"},
		{versions.Keys{Policy: versions.Policy{Trust: strangerTrust}, Signer: kafkatest.TestSigner()}, "is not in the trust list"},
	} {
		o := options(t, []string{"127.0.0.1:1"}, streams.DefaultTopics(), "x")
		o.Keys = tc.keys
		o.Started = func(*node.Node) { t.Error("the node started") }
		if _, err := startNode(t, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.keys, err, tc.want)
		}
	}

	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	v1 := versionRecord(t, 1, "0.04")
	v1.Signature = nil
	produceConfigs(t, kafkatest.Client(t, addrs), topics.Config, v1)
	o := options(t, addrs, topics, "s")
	if _, _, err := startupRules(t, o); err == nil || !strings.Contains(err.Error(), "signed by a key of the trust list") {
		t.Fatalf("a node with a trust list and only an unsigned version: %v", err)
	}
	o.Keys = versions.Keys{Policy: versions.Policy{AcceptUnsigned: true}, PublishUnsigned: true}
	rs, _, err := startupRules(t, o)
	wantRules(t, rs, err, v1)
}
