package streams_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
)

// caughtUp waits until the group has committed every partition of the
// metrics and actions topics to its end: everything produced to them is
// processed and its output committed. (The proposals topic is written in
// transactions, whose commit markers follow the last record: a consumer's
// committed offset stops before them. Its progress shows in the verdicts.)
func caughtUp(t *testing.T, addrs []string, topics streams.Topics, timeout time.Duration) {
	t.Helper()
	adm := kadm.NewClient(client(t, addrs))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ends, err := adm.ListEndOffsets(ctx, topics.Metrics, topics.Actions)
		if err == nil {
			committed, ferr := adm.FetchOffsets(ctx, "adrules")
			done := ferr == nil
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					done = false
				}
			})
			if done {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the group did not catch up within %s", timeout)
		case <-tick.C:
		}
	}
}

func ids(t *testing.T, lines [][]byte, field string) []string {
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m[field].(string))
	}
	return out
}

// TestThreeNodes: three nodes in one group, one stopped mid-stream and
// another joining; the read_committed output equals the single-node
// output, with nothing lost or doubled. External proposals are relayed to
// stage 2 and get exactly one verdict each.
func TestThreeNodes(t *testing.T) {
	addrs, topics := brokers(t)
	setup(t, addrs, topics)
	rs := defaultRules(t)
	lines := history(t, 33, gen.Options{Accounts: 3, BadPct: 1, DupPct: 2})
	want, sum := backtestDecisions(t, rs, lines)
	half := len(lines) / 2
	want1, _ := backtestDecisions(t, rs, lines[:half])
	if len(want1) == 0 || len(want1) == len(want) {
		t.Fatalf("decisions %d in the first half, %d in all: the test would prove little", len(want1), len(want))
	}
	cl := client(t, addrs)

	a := startNode(t, addrs, topics, "a", t.TempDir(), rs)
	startNode(t, addrs, topics, "b", t.TempDir(), rs)
	produce(t, cl, topics.Metrics, "ad_id", lines[:half])
	consume(t, addrs, topics.Decisions, len(want1), time.Minute)

	a.stop(t)
	startNode(t, addrs, topics, "c", t.TempDir(), rs)
	produce(t, cl, topics.Metrics, "ad_id", lines[half:])
	var proposals [][]byte
	{
		var b bytesBuffer
		if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: 5, Accounts: 3, Count: 200}); err != nil {
			t.Fatal(err)
		}
		proposals = b.lines()
	}
	produce(t, cl, topics.Actions, "account_id", proposals)
	caughtUp(t, addrs, topics, 2*time.Minute)

	got := consume(t, addrs, topics.Decisions, len(want), time.Minute)
	gotIDs := ids(t, got, "decision_id")
	if dup := duplicates(gotIDs); len(dup) > 0 {
		t.Fatalf("decisions written twice: %v", dup)
	}
	if g, w := normalize(t, got), normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("three nodes wrote %d decisions that differ from one backtest's %d", len(g), len(w))
	}
	verdicts := consume(t, addrs, topics.Verdicts, len(proposals)+sum.Proposals, time.Minute)
	if dup := duplicates(ids(t, verdicts, "action_id")); len(dup) > 0 {
		t.Fatalf("verdicts written twice: %v", dup)
	}
}

func duplicates(ids []string) []string {
	seen := map[string]bool{}
	var dup []string
	for _, id := range ids {
		if seen[id] {
			dup = append(dup, id)
		}
		seen[id] = true
	}
	return dup
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
