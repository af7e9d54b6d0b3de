package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
)

// syncBuffer is a log sink several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedNode is startRunNode with the node's log kept, and a look at
// /readyz the moment its HTTP server answers.
func startLoggedNode(t *testing.T, nc nodeConfig) (*runningNode, *syncBuffer, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningNode{cancel: cancel, done: make(chan error, 1)}
	logs := &syncBuffer{}
	started := make(chan *nodeRun, 1)
	var first int
	go func() {
		r.done <- runNode(ctx, nc, logs, nil, func(n *nodeRun) {
			first, _ = get(t, "http://"+n.addr+"/readyz")
			started <- n
		})
	}()
	select {
	case r.n = <-started:
	case err := <-r.done:
		t.Fatalf("node %s: %v\n%s", nc.nodeID, err, logs)
	}
	t.Cleanup(func() { r.stop(t) })
	return r, logs, first
}

// TestRebuildUnderRecordedVersions: ads become winners under v1; v2, with
// a stricter CTR threshold, is published; a new node with an empty data
// directory takes every partition over. It restores each partition when it
// is assigned, before any new record, and says ready only then; and it
// replays each record under the version that processed it (v1), so one
// more strong event per winner makes no second winner. (Replayed under v2,
// the version in force, the ads that passed 3% but not 6% would have no
// once mark, and win again.)
func TestRebuildUnderRecordedVersions(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	a := startRunNode(t, testNodeConfig(addrs, topics, "a", t.TempDir()))
	cl := kafkatest.Client(t, addrs)
	lines := kafkatest.History(t, 61, gen.Options{Accounts: 4})
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines)
	waitProcessed(t, addrs, kafkatest.Group(topics), topics)
	winners := winnersByAd(t, addrs, topics.Decisions)
	if len(winners) < 5 {
		t.Fatalf("%d winners: the test would prove little", len(winners))
	}

	strict := filepath.Join(t.TempDir(), "strict.yaml")
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.06")
	if _, stderr, err := adrules(t, "", nil, append(append([]string{"config", "publish"}, topicFlags(addrs, topics)...), strict)...); err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr)
	}
	eventually(t, "node a on v2", func() bool { return a.n.ruleSet().Version == 2 })

	b, logs, first := startLoggedNode(t, testNodeConfig(addrs, topics, "b", t.TempDir()))
	if first != http.StatusServiceUnavailable {
		t.Fatalf("/readyz of a node that holds nothing yet: %d, want 503", first)
	}
	a.stop(t) // it leaves the group: b takes every partition
	eventually(t, "node b ready", func() bool { code, _ := get(t, "http://"+b.n.addr+"/readyz"); return code == http.StatusOK })
	// Ready, and no record was produced since: the state was restored at
	// the assignment, every partition of the metric events rebuilt.
	rebuilt := regexp.MustCompile(`rebuilt partition state" topic=` + regexp.QuoteMeta(topics.Metrics) + ` partition=(\d) records=(\d+) versions=\[1\]`)
	if m := rebuilt.FindAllStringSubmatch(logs.String(), -1); len(m) != 4 {
		t.Fatalf("node b ready with %d partitions of %s rebuilt under v1, want 4:\n%s", len(m), topics.Metrics, logs.String())
	}
	if b.n.ruleSet().Version != 2 {
		t.Fatalf("node b runs v%d, want v2", b.n.ruleSet().Version)
	}

	// One more strong event per winner: under v2 each qualifies again.
	var more [][]byte
	for ad, w := range winners {
		more = append(more, fmt.Appendf(nil, `{"event_id":"more-%s","ts":%q,"account_id":%q,"ad_id":%q,"impressions":100000,"clicks":50000,"spend":100}`,
			ad, w.ts.Add(24*time.Hour).UTC().Format(time.RFC3339), w.account, ad))
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", more)
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, time.Minute)
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
