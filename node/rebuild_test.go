package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/streams"
)

// TestRebuildUnderRecordedVersions: ads become winners under v1; v2, with
// a stricter CTR threshold, is published; a new node with an empty data
// directory takes every partition over. It restores each partition when it
// is assigned, before any new record, and says ready only then (its
// observer told of every partition of the metric events rebuilt, its log
// saying under v1); and it replays each record under the version that
// processed it (v1), so one more strong event per winner makes no second
// winner. (Replayed under v2, the version in force, the ads that passed 3%
// but not 6% would have no once mark, and win again.)
func TestRebuildUnderRecordedVersions(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	a := start(t, options(t, addrs, topics, "a"))
	cl := kafkatest.Client(t, addrs)
	lines := kafkatest.History(t, 61, gen.Options{Accounts: 4})
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines)
	kafkatest.CaughtUp(t, addrs, a.o.Group, topics, time.Minute)
	winners := winnersByAd(t, addrs, topics.Decisions)
	if len(winners) < 5 {
		t.Fatalf("%d winners: the test would prove little", len(winners))
	}

	strict := document(t, "ctr_threshold: 0.03", "ctr_threshold: 0.06")
	if pub, err := streams.PublishDocument(context.Background(), clusterOf(t, addrs, topics), kafkatest.TestKeys(), strict, "test", false); err != nil || pub.Version != 2 {
		t.Fatalf("publish: v%d %v", pub.Version, err)
	}
	eventually(t, "node a on v2", func() bool { return a.RuleSet().Version == 2 })

	o := options(t, addrs, topics, "b")
	readyAtStart := true
	o.Started = func(n *node.Node) { readyAtStart = n.Ready() }
	b := start(t, o)
	if readyAtStart {
		t.Fatal("a node that holds nothing yet says it is ready")
	}
	a.stop(t) // it leaves the group: b takes every partition
	eventually(t, "node b ready", b.Ready)
	// Ready, and no record was produced since: the state was restored at
	// the assignment, every partition of the metric events rebuilt.
	if n := b.obs.rebuilds(topics.Metrics); n != 4 {
		t.Fatalf("node b ready, its observer told of %d rebuilds of a partition of %s, want 4", n, topics.Metrics)
	}
	rebuiltV1 := regexp.MustCompile(`rebuilt partition state" topic=` + regexp.QuoteMeta(topics.Metrics) + ` partition=(\d) records=(\d+) versions=\[1\]`)
	if m := rebuiltV1.FindAllStringSubmatch(b.log.String(), -1); len(m) != 4 {
		t.Fatalf("node b ready with %d partitions of %s rebuilt under v1, want 4:\n%s", len(m), topics.Metrics, b.log)
	}
	if v := b.RuleSet().Version; v != 2 {
		t.Fatalf("node b runs v%d, want v2", v)
	}

	// One more strong event per winner: under v2 each qualifies again.
	var more [][]byte
	for ad, w := range winners {
		more = append(more, fmt.Appendf(nil, `{"event_id":"more-%s","ts":%q,"account_id":%q,"ad_id":%q,"impressions":100000,"clicks":50000,"spend":100}`,
			ad, w.ts.Add(24*time.Hour).UTC().Format(time.RFC3339), w.account, ad))
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", more)
	kafkatest.CaughtUp(t, addrs, o.Group, topics, time.Minute)
	after := winnersByAd(t, addrs, topics.Decisions)
	for ad, w := range after {
		if w.n > 1 {
			t.Errorf("ad %s won %d times", ad, w.n)
		}
	}
	if len(after) != len(winners) {
		t.Errorf("%d winners after the takeover, %d before", len(after), len(winners))
	}
}

type winner struct {
	n       int
	account string
	ts      time.Time
}

// winnersByAd counts the committed rag_index_winner decisions of each ad.
func winnersByAd(t *testing.T, addrs []string, topic string) map[string]*winner {
	t.Helper()
	cl := kafkatest.Client(t, addrs)
	out := map[string]*winner{}
	err := streams.ReadTopic(context.Background(), cl, cl.Opts(), topic, func(v []byte) error {
		var d struct {
			Type      string    `json:"type"`
			AdID      string    `json:"ad_id"`
			AccountID string    `json:"account_id"`
			TS        time.Time `json:"ts"`
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		if d.Type != "rag_index_winner" {
			return nil
		}
		if out[d.AdID] == nil {
			out[d.AdID] = &winner{account: d.AccountID, ts: d.TS}
		}
		out[d.AdID].n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
