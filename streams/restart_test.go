package streams_test

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kfake"
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
