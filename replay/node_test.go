package replay_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/replay"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The tests play production with a node wired as `adrules run` wires its
// pipeline (streams.Node, the engine writing its switch points, Pebble),
// without the config follower: a test publishes a version on the config
// topics and swaps the engine to it, as the follower does.

// document reads examples/rules.yaml with each pair of replace applied
// (old, new, ...), as a record publishes it.
func document(t *testing.T, replace ...string) *config.Document {
	t.Helper()
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("examples/rules.yaml holds no %q", replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	doc, err := config.Load("examples/rules.yaml", []byte(s), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// publish writes doc as version v of rule set "default" to the config
// topics and returns the rule set a node compiles of it.
func publish(t *testing.T, cl *kgo.Client, topics streams.Topics, v int64, doc *config.Document) *rules.RuleSet {
	t.Helper()
	c := versions.Record{Name: "default", Version: v, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()}
	if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
		t.Fatal(err)
	}
	rs, err := versions.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// node is a running production pipeline.
type node struct {
	eng  *engine.Engine
	stop func()
}

// startNode runs a node in the test's group under rs until the test ends.
func startNode(t *testing.T, addrs []string, topics streams.Topics, rs *rules.RuleSet) *node {
	t.Helper()
	db, err := state.Open(t.TempDir(), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := streams.NewNode(streams.Options{Brokers: addrs, Group: kafkatest.Group(topics), NodeID: "n1", Topics: topics,
		CommitTimeout: 10 * time.Second, IdleAfter: 500 * time.Millisecond})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) { return db.Partition(topic, p) })
	eng, err := engine.New(rs, sn, sn, store, engine.WithKeyCheck(engine.KeyRequired), engine.WithSwitchRecords(),
		engine.WithPartitioner(sn.PartitionOf), engine.WithProposalTopics(topics.Proposals), engine.WithRelayTopics(topics.Actions))
	if err != nil {
		sn.Close()
		db.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := eng.Run(ctx)
		sn.Close()
		db.Close()
		if ctx.Err() != nil {
			err = nil
		}
		done <- err
	}()
	n := &node{eng: eng}
	n.stop = func() {
		if cancel == nil {
			return
		}
		cancel()
		cancel = nil
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}
	t.Cleanup(n.stop)
	return n
}

// waitProcessed waits until the test's group has processed every record of
// the metric topic (which makes the proposals, in the same transactions),
// then until every proposal has its verdict: stage 2 judges the last ones
// once every source partition is idle.
func waitProcessed(t *testing.T, addrs []string, topics streams.Topics) {
	t.Helper()
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, time.Minute)
	cl := kafkatest.Client(t, addrs)
	count := func(topic string) int {
		n := 0
		err := streams.ReadTopic(context.Background(), cl, cl.Opts(), topic, func(v []byte) error {
			if !rules.IsProgress(v) {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	proposals := count(topics.Proposals)
	deadline := time.After(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for count(topics.Verdicts) < proposals {
		select {
		case <-deadline:
			t.Fatalf("not every one of %d proposals judged within a minute", proposals)
		case <-tick.C:
		}
	}
}

// options are the replay's options over the test's topics, with a fresh
// store, in the test's group.
func options(t *testing.T, addrs []string, topics streams.Topics) replay.Options {
	t.Helper()
	cluster, err := streams.Open(streams.Connection{Brokers: addrs, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	store, closeStore, err := backtest.TempStore()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	return replay.Options{Cluster: cluster, Group: kafkatest.Group(topics), Store: store,
		Log: tlog{t}}
}

// verify runs replay.Verify with o.
func verify(t *testing.T, o replay.Options) *replay.Result {
	t.Helper()
	res, err := replay.Verify(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// tlog writes to the test's log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
