package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/adrules/adrules/node"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// versionRecord is the default rule set with its CTR threshold set to ctr,
// as published version v: valid, and a document of its own for each ctr.
func versionRecord(t *testing.T, v int64, ctr string) versions.Record {
	t.Helper()
	path := t.TempDir() + "/rules.yaml"
	writeReplaced(t, "../../examples/rules.yaml", path, "ctr_threshold: 0.03", "ctr_threshold: "+ctr)
	rs, err := loadRules(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return signed(t, versions.Record{Name: "default", Version: v, SHA256: rs.SHA256, Author: "test", Document: rs.Doc.Canonical()})
}

// uncompilableRecord is version v of the default rule set with a condition
// that reads a field no ad has. The document loads and hashes to its
// sha256, so only compiling its expressions refuses it; the test checks
// that, so that it never passes on a refusal for another reason.
func uncompilableRecord(t *testing.T, v int64) versions.Record {
	t.Helper()
	rs, err := loadRules("../../examples/rules.yaml", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	doc := *rs.Doc
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

// startupRules returns the rule set a node starting now would run, and
// what it logged choosing it.
func startupRules(t *testing.T, nc nodeConfig) (*rules.RuleSet, string, error) {
	t.Helper()
	var log bytes.Buffer
	conn := nc.kafka.connection(nil)
	conn.ClientOpts = nc.clientOpts
	o := nc.options(nil, nil, slog.New(slog.NewTextHandler(&log, nil)))
	o.Cluster, o.Connection = nil, conn
	rs, err := node.StartupRuleSet(context.Background(), o)
	return rs, log.String(), err
}

func wantRules(t *testing.T, rs *rules.RuleSet, err error, want versions.Record) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if rs.Version != want.Version || rs.SHA256 != want.SHA256 {
		t.Fatalf("a starting node runs v%d %s, want v%d %s", rs.Version, short(rs.SHA256), want.Version, short(want.SHA256))
	}
}

// TestStartupRunsHighestVersionNotLastRecord: the config topic holds v2,
// then a v1' (a racing or buggy publisher). Running nodes stay on v2 (a
// lower version never replaces a higher one); a starting node runs v2 too,
// not the last record.
func TestStartupRunsHighestVersionNotLastRecord(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	v2, v1b := versionRecord(t, 2, "0.05"), versionRecord(t, 1, "0.04")
	for _, c := range []versions.Record{v2, v1b} {
		if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
			t.Fatal(err)
		}
	}
	rs, _, err := startupRules(t, testNodeConfig(addrs, topics, "s", t.TempDir()))
	wantRules(t, rs, err, v2)
}

// TestStartupAfterCompactionRunsHistorysHighest: compaction left the config
// topic with only a v1 record while the history holds v1 and v2 (as after a
// v1' published after v2, compacted). A starting node runs v2.
func TestStartupAfterCompactionRunsHistorysHighest(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	v1, v2 := versionRecord(t, 1, "0.03"), versionRecord(t, 2, "0.05")
	produceConfigs(t, cl, topics.ConfigHistory, v1, v2)
	produceConfigs(t, cl, topics.Config, v1)
	rs, _, err := startupRules(t, testNodeConfig(addrs, topics, "s", t.TempDir()))
	wantRules(t, rs, err, v2)
}

// TestStartupSameVersionConfigRecordWins: two publishers raced to v2. A
// wrote its history record, B wrote both of its records, then A wrote the
// config topic: running nodes end on A's document (the last config record),
// and so does a starting node, although B's is the history's last.
func TestStartupSameVersionConfigRecordWins(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	a, b := versionRecord(t, 2, "0.05"), versionRecord(t, 2, "0.06")
	produceConfigs(t, cl, topics.ConfigHistory, a, b)
	produceConfigs(t, cl, topics.Config, b, a)
	rs, _, err := startupRules(t, testNodeConfig(addrs, topics, "s", t.TempDir()))
	wantRules(t, rs, err, a)
}

// TestStartupRefusesUncompilableVersion: a published v3 whose document
// hashes correctly but whose condition does not compile is refused by a
// running node (counted; it stays on v2) and by a starting node (logged; it
// starts on v2).
func TestStartupRefusesUncompilableVersion(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	v1, v2, v3 := versionRecord(t, 1, "0.03"), versionRecord(t, 2, "0.05"), uncompilableRecord(t, 3)
	for _, c := range []versions.Record{v1, v2} {
		if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
			t.Fatal(err)
		}
	}
	r := startRunNode(t, testNodeConfig(addrs, topics, "running", t.TempDir()))
	if got := r.n.ruleSet(); got.Version != 2 {
		t.Fatalf("the running node started on v%d, want 2", got.Version)
	}
	if err := streams.Publish(context.Background(), cl, topics, v3); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the running node refusing v3", func() bool { return r.n.refused() >= 1 })
	if got := r.n.ruleSet(); got.Version != 2 || got.SHA256 != v2.SHA256 {
		t.Fatalf("the running node runs v%d after an uncompilable v3, want v2", got.Version)
	}

	rs, log, err := startupRules(t, testNodeConfig(addrs, topics, "starting", t.TempDir()))
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
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	badHash := versionRecord(t, 1, "0.03")
	badHash.SHA256 = "0"
	badHash = signed(t, badHash)
	for _, c := range []versions.Record{badHash, uncompilableRecord(t, 2)} {
		if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
			t.Fatal(err)
		}
	}
	nc := testNodeConfig(addrs, topics, "s", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := runNode(ctx, nc, io.Discard, nil, func(*nodeRun) { t.Error("the node started"); cancel() })
	if err == nil || !strings.Contains(err.Error(), `rule set "default"`) || !strings.Contains(err.Error(), "no published version is valid") {
		t.Fatalf("runNode: %v, want a refusal naming rule set \"default\"", err)
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
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs, kgo.ProducerBatchMaxBytes(2<<20))
	v1, v2 := versionRecord(t, 1, "0.03"), versionRecord(t, 2, "0.05")
	for _, c := range []versions.Record{v1, v2} {
		if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
			t.Fatal(err)
		}
	}
	r := startRunNode(t, testNodeConfig(addrs, topics, "running", t.TempDir()))
	rs, err := loadRules("../../examples/rules.yaml", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	doc := *rs.Doc
	doc.Rules = slices.Clone(doc.Rules)
	const depth = 450_000
	doc.Rules[0].When = strings.Repeat("(", depth) + "true" + strings.Repeat(")", depth)
	hostile := signed(t, versions.Record{Name: "default", Version: 3, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()})
	if err := streams.Publish(context.Background(), cl, topics, hostile); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the running node refusing v3", func() bool { return r.n.refused() >= 1 })
	if got := r.n.ruleSet(); got.Version != 2 {
		t.Fatalf("the running node runs v%d after a hostile v3, want v2", got.Version)
	}
	// It still follows the topic.
	v4 := versionRecord(t, 4, "0.04")
	if err := streams.Publish(context.Background(), cl, topics, v4); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the running node on v4", func() bool { return r.n.ruleSet().Version == 4 })
	got, _, err := startupRules(t, testNodeConfig(addrs, topics, "starting", t.TempDir()))
	wantRules(t, got, err, v4)
}
