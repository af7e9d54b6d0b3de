package streams_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
)

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
	// A good event produced without a key is refused too: it could land on
	// any partition and split its ad's state.
	keyless := []byte(`{"event_id":"k1","ts":"2026-11-02T10:00:00Z","account_id":"a","ad_id":"nokey","impressions":1,"clicks":0,"spend":0}`)
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "no_such_field", [][]byte{keyless})
	bad := map[string]bool{string(keyless): true}
	for _, l := range lines {
		var probe rules.Decoder
		var ev rules.Event
		if probe.Decode(l, &ev) != nil {
			bad[string(l)] = true
		}
	}
	dlq := kafkatest.ConsumeRecords(t, addrs, topics.DLQ, int(sum.Rejected)+1, time.Minute)
	for _, d := range dlq {
		h := map[string]string{}
		for _, x := range d.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["adrules.reason"] == "" || h["adrules.topic"] != topics.Metrics || h["adrules.offset"] == "" || !bad[string(d.Value)] {
			t.Fatalf("dead letter %q (headers %v) lacks its reason or source, or is not an original bad record", d.Value, h)
		}
		if string(d.Value) == string(keyless) && !strings.Contains(h["adrules.reason"], "no key") {
			t.Fatalf("keyless record's reason: %q", h["adrules.reason"])
		}
	}
}
