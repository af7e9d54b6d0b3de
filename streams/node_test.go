package streams_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"
)

// brokers returns the cluster to test against: $KAFKA_BROKERS when set (a
// real cluster; topics get a unique prefix), else an in-process kfake.
func brokers(t *testing.T) ([]string, streams.Topics) {
	t.Helper()
	topics := streams.DefaultTopics()
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		prefix := fmt.Sprintf("t%d-", time.Now().UnixNano())
		topics = streams.Topics{
			Metrics: prefix + topics.Metrics, Actions: prefix + topics.Actions, Proposals: prefix + topics.Proposals,
			Decisions: prefix + topics.Decisions, Verdicts: prefix + topics.Verdicts, DLQ: prefix + topics.DLQ,
			Config: prefix + topics.Config, ConfigHistory: prefix + topics.ConfigHistory,
		}
		return strings.Split(env, ","), topics
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs(), topics
}

func defaultRules(t testing.TB) *rules.RuleSet {
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("examples/rules.yaml", data, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func client(t *testing.T, addrs []string, opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes lines to topic keyed by field.
func produce(t *testing.T, cl *kgo.Client, topic, field string, lines [][]byte) {
	t.Helper()
	var p fastjson.Parser
	var recs []*kgo.Record
	for _, l := range lines {
		var key []byte
		if v, err := p.ParseBytes(l); err == nil {
			key = append(key, v.GetStringBytes(field)...)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: key, Value: append([]byte(nil), l...)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// testNode runs a node (engine, streams.Node, Pebble) until its ctx ends.
type testNode struct {
	cancel context.CancelFunc
	done   chan error
}

func startNode(t *testing.T, addrs []string, topics streams.Topics, id, dir string, rs *rules.RuleSet) *testNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{cancel: cancel, done: make(chan error, 1)}
	db, err := state.Open(dir, state.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := streams.NewNode(streams.Options{Brokers: addrs, NodeID: id, Topics: topics, CommitTimeout: 10 * time.Second,
		ClientOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) { return db.Partition(topic, p) })
	eng, err := engine.New(rs, sn, sn, store, engine.WithProposalTopics(topics.Proposals), engine.WithRelayTopics(topics.Actions))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		err := eng.Run(ctx)
		sn.Close()
		db.Close()
		if ctx.Err() != nil {
			err = nil
		}
		n.done <- err
	}()
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *testNode) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("node: %v", err)
	}
	n.cancel = nil
}

// consume reads topic (read_committed) until want records arrived or the
// deadline passes, and returns their values.
func consume(t *testing.T, addrs []string, topic string, want int, timeout time.Duration) [][]byte {
	t.Helper()
	cl := client(t, addrs, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out [][]byte
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records after %s, want %d", topic, len(out), timeout, want)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r.Value) })
	}
	return out
}

// normalize strips the input position (file line or topic offset) from
// decisions and sorts them, so outputs of different partitionings compare.
func normalize(t *testing.T, lines [][]byte) []string {
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "input")
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

func history(t *testing.T, seed uint64, o gen.Options) [][]byte {
	var b bytes.Buffer
	o.Seed = seed
	if _, err := gen.Events(&b, o); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
}

// backtestDecisions runs the file backtest over lines.
func backtestDecisions(t *testing.T, rs *rules.RuleSet, lines [][]byte) ([][]byte, *backtest.Summary) {
	dir := t.TempDir()
	sum, err := backtest.Run(context.Background(), backtest.Options{
		RuleSet: rs, Input: bytes.NewReader(append(bytes.Join(lines, []byte("\n")), '\n')), InputName: "file", OutDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dir + "/decisions.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, sum
	}
	return bytes.Split(bytes.TrimSpace(data), []byte("\n")), sum
}

func setup(t *testing.T, addrs []string, topics streams.Topics) {
	cl := client(t, addrs)
	if err := streams.EnsureTopics(context.Background(), cl, topics.Specs(4, 7), -1); err != nil {
		t.Fatal(err)
	}
}

// TestNodeMatchesBacktest: the decisions a node writes for a topic equal
// those of the file backtest over the same events; poison records go to the
// dead-letter topic with their reason and the good ones flow.
func TestNodeMatchesBacktest(t *testing.T) {
	addrs, topics := brokers(t)
	setup(t, addrs, topics)
	rs := defaultRules(t)
	lines := history(t, 21, gen.Options{Accounts: 2, BadPct: 2, DupPct: 2, EpochMsPct: 30})
	want, sum := backtestDecisions(t, rs, lines)
	if len(want) == 0 || sum.Rejected == 0 {
		t.Fatalf("the history has %d decisions and %d bad lines: the test would prove little", len(want), sum.Rejected)
	}
	produce(t, client(t, addrs), topics.Metrics, "ad_id", lines)
	startNode(t, addrs, topics, "n1", t.TempDir(), rs)
	got := consume(t, addrs, topics.Decisions, len(want), time.Minute)
	if g, w := normalize(t, got), normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("node decisions differ from the backtest's: %d vs %d", len(g), len(w))
	}
	dlq := consume(t, addrs, topics.DLQ, int(sum.Rejected), time.Minute)
	for _, d := range dlq {
		var r struct{ Reason, Topic, Value string }
		if err := json.Unmarshal(d, &r); err != nil || r.Reason == "" || r.Topic != topics.Metrics || r.Value == "" {
			t.Fatalf("dead letter %s lacks reason, source or value", d)
		}
	}
}
