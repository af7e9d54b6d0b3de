package streams_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestBrokerRestart: the broker (with a data dir) restarts mid-run; the node
// carries on and the output stays exact.
func TestBrokerRestart(t *testing.T) {
	if kafkatest.Shared() {
		t.Skip("restarts the in-process broker; a real cluster is restarted by its operators")
	}
	dir := t.TempDir()
	port := freePort(t)
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start()
	addrs := c.ListenAddrs()
	topics := streams.DefaultTopics()
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	lines := kafkatest.History(t, 44, gen.Options{Accounts: 2, DupPct: 1})
	want, _ := kafkatest.Backtest(t, rs, lines)
	half := len(lines) / 2
	want1, _ := kafkatest.Backtest(t, rs, lines[:half])

	startNode(t, addrs, topics, "n", t.TempDir(), rs)
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines[:half])
	kafkatest.Consume(t, addrs, topics.Decisions, len(want1), time.Minute)

	c.Close()
	c = start()
	defer c.Close()

	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines[half:])
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, 2*time.Minute)
	got := kafkatest.Consume(t, addrs, topics.Decisions, len(want), time.Minute)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, got, "decision_id")); len(dup) > 0 {
		t.Fatalf("decisions written twice: %v", dup)
	}
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("after a broker restart: %d decisions, want %d", len(g), len(w))
	}
}

// TestBrokerKilledRepeatedly: the broker (with its data) goes down and comes
// back four times while a node works through a history, each time at
// another point of it, and answers the node's first heartbeat after each
// return as a broker that lost the group's members or moved on without
// them does: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
// COORDINATOR_NOT_AVAILABLE. The node rejoins, processes the batch in
// flight again and never stops; the read_committed output (decisions,
// verdicts, proposals, dead letters) equals the file backtest's: nothing
// lost, nothing doubled.
func TestBrokerKilledRepeatedly(t *testing.T) {
	if kafkatest.Shared() {
		t.Skip("restarts the in-process broker; a real cluster is restarted by its operators")
	}
	dir := t.TempDir()
	port := freePort(t)
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := start()
	defer func() { broker.Close() }()
	addrs := broker.ListenAddrs()
	c := newCluster(t, addrs, streams.DefaultTopics())
	in := newInput(t, c.rs, 211)
	in.produce(t, c)

	r := startRunner(t, addrs, c.topics, c.rs, runnerOptions{id: "n", dir: t.TempDir(), group: c.group, partitioner: true, small: true})
	// stopped fails the test if the node's engine returned.
	stopped := func() {
		t.Helper()
		select {
		case err := <-r.done:
			r.cancel()
			r.cancel = nil
			t.Fatalf("the node stopped: %v", err)
		default:
		}
	}
	adm := kadm.NewClient(kafkatest.Client(t, addrs))
	// progress is the share of the metric events the group has committed;
	// -1 while the broker cannot say.
	progress := func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, c.topics.Metrics)
		if err != nil {
			return -1
		}
		offs, err := adm.FetchOffsets(ctx, c.group)
		if err != nil {
			return -1
		}
		var done, all int64
		ends.Each(func(o kadm.ListedOffset) {
			all += o.Offset
			if c, ok := offs.Lookup(o.Topic, o.Partition); ok && c.At > 0 {
				done += min(c.At, o.Offset)
			}
		})
		if all == 0 {
			return -1
		}
		return float64(done) / float64(all)
	}
	// What the broker answers the first heartbeat after each restart.
	answers := []*kerr.Error{kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.RebalanceInProgress, kerr.CoordinatorNotAvailable}
	kills := len(answers)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitLong)
	for i := 1; i <= kills; i++ {
		at := float64(i) / float64(kills+1)
		for p := progress(); p < at; p = progress() {
			stopped()
			select {
			case <-deadline:
				t.Fatalf("kill %d: the group committed %.0f%% of the events, waiting for %.0f%%", i, 100*p, 100*at)
			case <-tick.C:
			}
		}
		t.Logf("kill %d at %.0f%% of the events; the first heartbeat after it gets %s", i, 100*at, answers[i-1].Message)
		broker.Close()
		broker = start()
		h := broker.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: c.group, Err: answers[i-1]})
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		err := h.Wait(ctx, 1)
		cancel()
		if err != nil {
			t.Fatalf("kill %d: the node sent no heartbeat: %v", i, err)
		}
		stopped()
	}
	in.check(t, c)
	stopped()
}
