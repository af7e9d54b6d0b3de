package streams_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// countObserver counts stage-1 records and dead letters of processed
// batches (a warm-up replay is not a batch).
type countObserver struct{ events, rejected, dups atomic.Int64 }

func (o *countObserver) Observe(s engine.Stats) {
	if s.Stage == 1 {
		o.events.Add(int64(s.Records))
		o.rejected.Add(int64(s.Rejected))
		o.dups.Add(int64(s.Duplicates))
	}
}

// TestNodeShadowOptions: a Node with Start, ProposalTag and no DLQ, as the
// shadow pipeline runs one: a fresh group starts the metrics topic at the
// first record stamped at or after the start time; of the proposals topic
// it reads only the records of its own tag; dead letters are dropped.
func TestNodeShadowOptions(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	event := func(id string) []byte {
		return []byte(`{"event_id":"` + id + `","ts":"2026-11-02T10:00:00Z","account_id":"act_1","ad_id":"ad_1","impressions":10,"clicks":1,"spend":1}`)
	}
	proposal := func(id string) []byte {
		return []byte(`{"action_id":"` + id + `","ts":"2026-11-02T10:00:00Z","account_id":"act_1","ad_id":"ad_1","type":"pause","source":"external"}`)
	}
	tag := func(v string) []kgo.RecordHeader { return []kgo.RecordHeader{{Key: "adrules.tag", Value: []byte(v)}} }
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: topics.Metrics, Key: []byte("ad_1"), Value: event("e1"), Timestamp: at(1000)},
		&kgo.Record{Topic: topics.Metrics, Key: []byte("ad_1"), Value: event("e2"), Timestamp: at(1200)},
		&kgo.Record{Topic: topics.Metrics, Key: []byte("ad_1"), Value: event("e3"), Timestamp: at(2000)},
		&kgo.Record{Topic: topics.Metrics, Key: []byte("ad_1"), Value: []byte("not json"), Timestamp: at(2100)},
		&kgo.Record{Topic: topics.Metrics, Key: []byte("ad_1"), Value: event("e1"), Timestamp: at(2200)}, // a duplicate of a warm-up event
		&kgo.Record{Topic: topics.ShadowProposals, Key: []byte("act_1"), Value: proposal("p1"), Headers: tag("v1")},
		&kgo.Record{Topic: topics.ShadowProposals, Key: []byte("act_1"), Value: proposal("p2")},
		&kgo.Record{Topic: topics.ShadowProposals, Key: []byte("act_1"), Value: proposal("p3"), Headers: tag("v2")},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	db, err := state.Open(t.TempDir(), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sh := streams.Topics{Metrics: topics.Metrics, Actions: topics.Actions,
		Proposals: topics.ShadowProposals, Decisions: topics.ShadowDecisions, Verdicts: topics.ShadowVerdicts}
	start := kgo.NewOffset().AfterMilli(1500)
	sn, err := streams.NewNode(streams.Options{Brokers: addrs, Group: kafkatest.Name(topics, "g.shadow"), NodeID: "n1", Topics: sh,
		Start: map[string]kgo.Offset{sh.Metrics: start, sh.Actions: start}, ProposalTag: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var obs countObserver
	store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) { return db.Partition(topic, p) })
	eng, err := engine.New(kafkatest.DefaultRules(t, ".."), sn, sn, store, engine.WithObserver(&obs),
		engine.WithProposalTopics(sh.Proposals), engine.WithRelayTopics(sh.Actions), engine.WithKeyCheck(engine.KeyRequired))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// Only p3 is judged: p1 is another pipeline's, p2 nobody's.
	v := kafkatest.ConsumeRecords(t, addrs, sh.Verdicts, 1, time.Minute)
	if !strings.Contains(string(v[0].Value), `"action_id":"p3"`) {
		t.Fatalf("verdict of %s, want p3's", v[0].Value)
	}
	// e3, the bad record and the copy of e1: e1 and e2 came before the
	// start and only warmed the state up, so the copy is a duplicate.
	deadline := time.After(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for obs.events.Load() < 3 {
		select {
		case <-deadline:
			t.Fatalf("processed %d events, want 3", obs.events.Load())
		case <-tick.C:
		}
	}
	if e, r, d := obs.events.Load(), obs.rejected.Load(), obs.dups.Load(); e != 3 || r != 1 || d != 1 {
		t.Fatalf("processed %d events with %d dead letters and %d duplicates, want 3, 1 and 1", e, r, d)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topics.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Fatalf("%s/%d holds %d records: a node without a DLQ wrote dead letters", o.Topic, o.Partition, o.Offset)
		}
	})
}
