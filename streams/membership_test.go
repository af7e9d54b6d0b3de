package streams_test

import (
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
)

// session is the nodes' group session timeout in these tests: far longer
// than handOver, so that a node that waits for a member's session to
// expire (or for a rebalance to give up on it: kgo's rebalance timeout is
// 60s) fails them.
const session = 2 * time.Minute

// handOver is how long the partitions may take to move and their records
// to be processed.
const handOver = 45 * time.Second

// TestStaticRestart: issue 10 defect 7. A node crashes (no leave: its
// connections are gone) and comes back with the same node id and data
// directory: a static member of its group, it gets its partitions back at
// once, not after the dead member's session times out, and the output
// stays exact.
func TestStaticRestart(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	lines := kafkatest.History(t, 71, gen.Options{Accounts: 2, DupPct: 1})
	want, _ := kafkatest.Backtest(t, rs, lines)
	half := len(lines) / 2
	group, dir := kafkatest.Group(topics), t.TempDir()
	cl := kafkatest.Client(t, addrs)

	n := startRunner(t, addrs, topics, rs, runnerOptions{id: "n1", dir: dir, group: group, session: session, partitioner: true})
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[:half])
	waitConsumed(t, addrs, group, topics.Metrics, time.Minute)
	n.kill(t)

	restart := time.Now()
	n = startRunner(t, addrs, topics, rs, runnerOptions{id: "n1", dir: dir, group: group, session: session, partitioner: true})
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[half:])
	waitConsumed(t, addrs, group, topics.Metrics, handOver)
	t.Logf("the restarted node processed %d events within %s of its start", len(lines)-half, time.Since(restart).Round(time.Millisecond))
	if got := n.holds(topics.Metrics); len(got) != partitions {
		t.Errorf("the restarted node holds partitions %v of %s, want all %d", got, topics.Metrics, partitions)
	}
	got := topicValues(t, addrs, topics.Decisions)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, got, "decision_id")); len(dup) > 0 {
		t.Fatalf("decisions written twice: %v", dup)
	}
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("across the crash: %d decisions that differ from the backtest's %d:\n%s", len(g), len(w), firstDifference(g, w))
	}
}

// TestCleanCloseHandsOver: a static member does not leave its group when
// its client closes, so Close leaves explicitly. A node that stops cleanly
// hands its partitions to the other node at once: the records produced to
// them afterwards are processed long before its session would time out.
func TestCleanCloseHandsOver(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	lines := kafkatest.History(t, 72, gen.Options{Accounts: 2, DupPct: 1})
	want, _ := kafkatest.Backtest(t, rs, lines)
	half := len(lines) / 2
	group := kafkatest.Group(topics)
	cl := kafkatest.Client(t, addrs)

	a := startRunner(t, addrs, topics, rs, runnerOptions{id: "a", dir: t.TempDir(), group: group, session: session, partitioner: true})
	b := startRunner(t, addrs, topics, rs, runnerOptions{id: "b", dir: t.TempDir(), group: group, session: session, partitioner: true})
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[:half])
	waitConsumed(t, addrs, group, topics.Metrics, time.Minute)
	waitFor(t, "both nodes holding partitions of "+topics.Metrics, time.Minute, func() bool {
		return len(a.holds(topics.Metrics)) > 0 && len(b.holds(topics.Metrics)) > 0
	})
	moved := a.holds(topics.Metrics)

	a.stop(t)
	stopped := time.Now()
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[half:])
	waitConsumed(t, addrs, group, topics.Metrics, handOver)
	t.Logf("partitions %v of %s moved, and %d events were processed, within %s of the stop", moved, topics.Metrics, len(lines)-half, time.Since(stopped).Round(time.Millisecond))
	if got := b.holds(topics.Metrics); len(got) != partitions {
		t.Errorf("the remaining node holds partitions %v of %s, want all %d", got, topics.Metrics, partitions)
	}
	got := topicValues(t, addrs, topics.Decisions)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, got, "decision_id")); len(dup) > 0 {
		t.Fatalf("decisions written twice: %v", dup)
	}
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("across the hand-over: %d decisions that differ from the backtest's %d:\n%s", len(g), len(w), firstDifference(g, w))
	}
}

// waitFor waits for cond, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
