package streams_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

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

// TestNodeMatchesBacktest: the decisions a node writes for a topic equal
// those of the file backtest over the same events; poison records go to the
// dead-letter topic with their reason and the good ones flow.
func TestNodeMatchesBacktest(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	lines := kafkatest.History(t, 21, gen.Options{Accounts: 2, BadPct: 2, DupPct: 2, EpochMsPct: 30})
	want, sum := kafkatest.Backtest(t, rs, lines)
	if len(want) == 0 || sum.Rejected == 0 {
		t.Fatalf("the history has %d decisions and %d bad lines: the test would prove little", len(want), sum.Rejected)
	}
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines)
	startNode(t, addrs, topics, "n1", t.TempDir(), rs)
	got := kafkatest.Consume(t, addrs, topics.Decisions, len(want), time.Minute)
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("node decisions differ from the backtest's: %d vs %d", len(g), len(w))
	}
	dlq := kafkatest.Consume(t, addrs, topics.DLQ, int(sum.Rejected), time.Minute)
	for _, d := range dlq {
		var r struct{ Reason, Topic, Value string }
		if err := json.Unmarshal(d, &r); err != nil || r.Reason == "" || r.Topic != topics.Metrics || r.Value == "" {
			t.Fatalf("dead letter %s lacks reason, source or value", d)
		}
	}
}
