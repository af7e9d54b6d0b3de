package kafkatest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ShadowT0 is when a ShadowCluster's shadow was published (its record's
// Kafka timestamp and PublishedAt) and where its decisions' event time
// starts.
var ShadowT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// ShadowAds is how many ads a ShadowCluster decides, live side and
// shadow.
const ShadowAds = 400

// ShadowCluster is a broker holding a live rule set, its shadow, metric
// events and both sides' decisions (NewShadowCluster): what judging a
// shadow reads.
type ShadowCluster struct {
	Addrs  []string
	Topics streams.Topics
	// ClientOpts are given to every client that reaches the cluster (a
	// virtual network's dialer).
	ClientOpts []kgo.Opt
	// Live and Shadow are the documents of v1 and of its shadow, v2.
	Live, Shadow *config.Document
}

// ShadowOptions configure NewShadowCluster.
type ShadowOptions struct {
	// Root is the path to the repository's root from the test's directory
	// (as for DefaultRules): both rule sets are examples/rules.yaml's.
	Root string
	// Signer signs both versions: the key the test's nodes or commands
	// trust.
	Signer *versions.Signer
	// ClientOpts are given to every client NewShadowCluster makes, and
	// kept in the cluster's.
	ClientOpts []kgo.Opt
	// AutoPromote is model_evaluation.auto_promote of both rule sets.
	AutoPromote bool
	// Decides says whether the shadow decides ad i (0 <= i < ShadowAds);
	// BetterShadow is one that judging promotes. Nil: no shadow is
	// published, and nothing is written but the live version.
	Decides func(i int) bool
}

// NewShadowCluster creates the topics (4 partitions) and publishes the
// live rule set, v1 (examples/rules.yaml with model_evaluation:
// min_samples 200, min_accuracy_delta 0.01 and auto_promote as o says),
// signed by o.Signer. Unless o.Decides is nil, it then publishes its
// shadow, v2 (a higher ROAS threshold, published at ShadowT0), and writes
// ShadowAds ads: ad i is decided at ShadowT0 + 10 min·i by the live side
// always, by the shadow when o.Decides(i), and an hour later gets the
// event that makes the decision hold (ROAS 4, for i%20 < 11: 55% of ads)
// or not (ROAS 1). Beside them lie records judging must not count: a
// config_applied record, a live decision of an event before ShadowT0, a
// shadow decision of another rule set, and one in an aborted transaction.
func NewShadowCluster(t testing.TB, addrs []string, topics streams.Topics, o ShadowOptions) *ShadowCluster {
	t.Helper()
	opts := o.ClientOpts
	c := &ShadowCluster{Addrs: addrs, Topics: topics, ClientOpts: opts}
	ctx := context.Background()
	cl := Client(t, addrs, opts...)
	if err := streams.EnsureTopics(ctx, cl, topics.Specs(4, 7), -1); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(o.Root + "/examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(base), "params:\n", fmt.Sprintf("params:\n  model_evaluation: {min_samples: 200, min_accuracy_delta: 0.01, auto_promote: %v}\n", o.AutoPromote), 1)
	load := func(src string) *config.Document {
		d, err := config.Load("rules.yaml", []byte(src), config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	c.Live = load(src)
	c.Shadow = load(strings.Replace(src, "roas_threshold: 3.0", "roas_threshold: 3.5", 1))
	if err := streams.Publish(ctx, cl, topics, sign(t, o.Signer, versions.Record{Name: "default", Version: 1, SHA256: c.Live.SHA256(), Author: "test", Document: c.Live.Canonical()})); err != nil {
		t.Fatal(err)
	}
	if o.Decides == nil {
		return c
	}
	b, _ := json.Marshal(sign(t, o.Signer, versions.Record{Name: "default", Version: 2, SHA256: c.Shadow.SHA256(), Author: "test",
		PublishedAt: ShadowT0.Format(time.RFC3339), Document: c.Shadow.Canonical(), Shadow: true}))
	for _, topic := range []string{topics.ConfigHistory, topics.Config} {
		r := &kgo.Record{Topic: topic, Key: []byte(versions.ShadowKey("default")), Value: b, Timestamp: ShadowT0}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	const n = ShadowAds
	t0 := ShadowT0.UnixMilli()
	// Each decision comes from an event on the metrics topic (its input):
	// an event of ad0001 stamped before the shadow's start, then one per
	// ad at its decision's ts.
	inputOf := func(r *kgo.Record) rules.Input {
		return rules.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	}
	early := &kgo.Record{Topic: topics.Metrics, Key: []byte("ad0001"), Timestamp: ShadowT0.Add(-time.Hour),
		Value: fmt.Appendf(nil, `{"event_id":"early","ts":%d,"account_id":"acc","ad_id":"ad0001","impressions":0,"clicks":0,"spend":0}`, t0-1)}
	if err := cl.ProduceSync(ctx, early).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var triggers []*kgo.Record
	for i := range n {
		ad := fmt.Sprintf("ad%04d", i)
		ts := t0 + int64(i)*int64(10*time.Minute/time.Millisecond)
		triggers = append(triggers, &kgo.Record{Topic: topics.Metrics, Key: []byte(ad),
			Value: fmt.Appendf(nil, `{"event_id":"t%s","ts":%d,"account_id":"acc","ad_id":"%s","impressions":0,"clicks":0,"spend":0}`, ad, ts, ad)})
	}
	if err := cl.ProduceSync(ctx, triggers...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var events, live, shad [][]byte
	decision := func(id, ad, sha string, ts int64, in rules.Input) []byte {
		b, _ := json.Marshal(rules.Decision{DecisionID: id, RuleID: "winner", RulesetSHA256: sha, Type: "rag_index_winner",
			AccountID: "acc", AdID: ad, TS: rules.Time(ts), Input: in})
		return b
	}
	for i := range n {
		ad := fmt.Sprintf("ad%04d", i)
		ts := t0 + int64(i)*int64(10*time.Minute/time.Millisecond)
		in := inputOf(triggers[i])
		live = append(live, decision("l"+ad, ad, c.Live.SHA256(), ts, in))
		if o.Decides(i) {
			shad = append(shad, decision("s"+ad, ad, c.Shadow.SHA256(), ts, in))
		}
		rev := 10
		if i%20 < 11 {
			rev = 40
		}
		events = append(events, fmt.Appendf(nil, `{"event_id":"e%s","ts":%d,"account_id":"acc","ad_id":"%s","impressions":1000,"clicks":10,"spend":10,"revenue":%d}`,
			ad, ts+int64(time.Hour/time.Millisecond), ad, rev))
	}
	// An event two days after the last decision: every decision resolves.
	events = append(events, fmt.Appendf(nil, `{"event_id":"clock","ts":%d,"account_id":"acc","ad_id":"clock","impressions":0,"clicks":0,"spend":0}`,
		t0+int64(n)*int64(10*time.Minute/time.Millisecond)+48*int64(time.Hour/time.Millisecond)))
	// Neither a switch record, nor a decision of a record before the
	// shadow's start, nor one of an earlier shadow counts.
	live = append(live, []byte(`{"type":"config_applied","ruleset_version":1,"ruleset_sha256":"x","input":{}}`),
		decision("early", "ad0001", c.Live.SHA256(), t0-1, inputOf(early)))
	shad = append(shad, decision("old", "ad0002", "0123456789ab", t0+1, inputOf(triggers[2])))
	Produce(t, cl, topics.Metrics, "ad_id", events)
	Produce(t, cl, topics.Decisions, "ad_id", live)
	// The shadow's decisions in transactions, as nodes write them: one
	// committed, ending in its marker, and one aborted, which must not count.
	txn := func(commit bool, lines [][]byte) {
		tc := Client(t, addrs, append([]kgo.Opt{kgo.TransactionalID(Name(topics, fmt.Sprintf("shadow-test-%v", commit))),
			kgo.DefaultProduceTopic(topics.ShadowDecisions)}, opts...)...)
		if err := tc.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			var d rules.Decision
			json.Unmarshal(l, &d)
			if err := tc.ProduceSync(ctx, &kgo.Record{Key: []byte(d.AdID), Value: l}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tc.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	txn(false, [][]byte{decision("aborted", "ad0003", c.Shadow.SHA256(), t0+2, inputOf(triggers[3]))})
	txn(true, shad)
	return c
}

// BetterShadow decides every good ad and 6 bad ones in 20: a precision of
// 220/340 = 0.6471 against the live side's 220/400 = 0.55, which judging
// promotes.
func BetterShadow(i int) bool { return i%20 < 17 }

// sign returns c signed by s.
func sign(t testing.TB, s *versions.Signer, c versions.Record) versions.Record {
	t.Helper()
	sig, err := s.Sign(c.Signed())
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	return c
}
