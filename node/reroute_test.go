package node_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestNodeReroutes: a node is wired to reroute (the streams test proves
// the mechanism): an ad's events produced half to a partition its key does
// not belong to give the same decisions as the file backtest, and the
// misplaced ones are copied to where they belong.
func TestNodeReroutes(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	start(t, options(t, addrs, topics, "r"))
	lines := kafkatest.History(t, 71, gen.Options{Accounts: 2})
	want, _ := kafkatest.Backtest(t, kafkatest.DefaultRules(t, ".."), lines)
	// Every event of about half the ads goes to the partition after its
	// own.
	wrong := kafkatest.Client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var misplaced int
	for i, l := range lines {
		ad := kafkatest.IDs(t, lines[i:i+1], "ad_id")[0]
		p := streams.KeyPartition([]byte(ad), 4)
		r := &kgo.Record{Topic: topics.Metrics, Key: []byte(ad), Value: l, Partition: p}
		if ad[len(ad)-1]%2 == 0 {
			r.Partition = (p + 1) % 4
			misplaced++
		}
		if err := wrong.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if misplaced == 0 {
		t.Fatal("nothing misplaced: the test would prove nothing")
	}
	got, _ := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want), time.Minute)
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Fatalf("%d decisions differ from the backtest's %d", len(g), len(w))
	}
	copies := 0
	for _, r := range kafkatest.ConsumeRecords(t, addrs, topics.Metrics, len(lines)+misplaced, time.Minute) {
		for _, h := range r.Headers {
			if h.Key == "adrules.rerouted_from" {
				copies++
			}
		}
	}
	if copies != misplaced {
		t.Fatalf("%d rerouted copies, want %d", copies, misplaced)
	}
}
