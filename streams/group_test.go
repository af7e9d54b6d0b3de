package streams_test

import (
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
)

// TestThreeNodes: three nodes in one group, one stopped mid-stream and
// another joining; the read_committed output equals the single-node
// output, with nothing lost or doubled. External proposals are relayed to
// stage 2 and get exactly one verdict each.
func TestThreeNodes(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	lines := kafkatest.History(t, 33, gen.Options{Accounts: 3, BadPct: 1, DupPct: 2, Events: 30000})
	want, sum := kafkatest.Backtest(t, rs, lines)
	half := len(lines) / 2
	cl := kafkatest.Client(t, addrs)

	// Two nodes share the first half; one of them stops mid-stream, as soon
	// as output shows, and a third joins.
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[:half])
	a := startNode(t, addrs, topics, "a", t.TempDir(), rs)
	startNode(t, addrs, topics, "b", t.TempDir(), rs)
	kafkatest.WaitFor(t, addrs, topics.Decisions, 1, time.Minute)
	a.stop(t)
	if done, end := kafkatest.Committed(t, addrs, kafkatest.Group(topics), topics.Metrics); done >= end {
		t.Fatalf("all %d events were processed when a node stopped: the test would prove little", end)
	} else {
		t.Logf("a node stopped with %d of %d events committed", done, end)
	}
	startNode(t, addrs, topics, "c", t.TempDir(), rs)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[half:])
	var proposals [][]byte
	{
		var b bytesBuffer
		if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: 5, Accounts: 3, Count: 200}); err != nil {
			t.Fatal(err)
		}
		proposals = b.lines()
	}
	kafkatest.Produce(t, cl, topics.Actions, "account_id", proposals)
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, 2*time.Minute)

	got := kafkatest.Consume(t, addrs, topics.Decisions, len(want), time.Minute)
	gotIDs := kafkatest.IDs(t, got, "decision_id")
	if dup := kafkatest.Duplicates(gotIDs); len(dup) > 0 {
		t.Fatalf("decisions written twice: %v", dup)
	}
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("three nodes wrote %d decisions that differ from one backtest's %d", len(g), len(w))
	}
	verdicts := kafkatest.Consume(t, addrs, topics.Verdicts, len(proposals)+sum.Proposals, time.Minute)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, verdicts, "action_id")); len(dup) > 0 {
		t.Fatalf("verdicts written twice: %v", dup)
	}
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func (w *bytesBuffer) lines() [][]byte {
	var out [][]byte
	start := 0
	for i, c := range w.b {
		if c == '\n' {
			if i > start {
				out = append(out, w.b[start:i])
			}
			start = i + 1
		}
	}
	return out
}
