package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/internal/shadow"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// shadowT0 is when the test's shadow was published (its record's Kafka
// timestamp) and where its event time starts.
var shadowT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// shadowCluster is a broker holding a live rule set, its shadow, metric
// events and both sides' decisions.
type shadowCluster struct {
	addrs      []string
	topics     streams.Topics
	live, shad *config.Document
}

// flags are the command-line flags that point adrules at the cluster.
func (c *shadowCluster) flags() []string {
	return []string{"--brokers", strings.Join(c.addrs, ","), "--topic-config", c.topics.Config, "--topic-config-history", c.topics.ConfigHistory,
		"--topic-metrics", c.topics.Metrics, "--topic-decisions", c.topics.Decisions, "--topic-shadow-decisions", c.topics.ShadowDecisions}
}

// newShadowCluster publishes the live rule set (examples/rules.yaml with
// model_evaluation: min_samples 200, min_accuracy_delta 0.01 and
// auto_promote as given) and, when withShadow, its shadow (a higher ROAS
// threshold, published at shadowT0). Then it writes 400 ads: ad i is
// decided at shadowT0 + 10 min·i by the live side always, by the shadow
// when shadowDecides(i), and an hour later gets the event that makes the
// decision hold (ROAS 4, for i%20 < 11: 55% of ads) or not (ROAS 1).
func newShadowCluster(t *testing.T, autoPromote, withShadow bool, shadowDecides func(i int) bool) *shadowCluster {
	t.Helper()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	c := &shadowCluster{addrs: addrs, topics: topics}
	base, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(base), "params:\n", fmt.Sprintf("params:\n  model_evaluation: {min_samples: 200, min_accuracy_delta: 0.01, auto_promote: %v}\n", autoPromote), 1)
	load := func(src string) *config.Document {
		d, err := config.Load("rules.yaml", []byte(src), config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	c.live = load(src)
	c.shad = load(strings.Replace(src, "roas_threshold: 3.0", "roas_threshold: 3.5", 1))
	ctx := context.Background()
	cl := kafkatest.Client(t, addrs)
	if err := streams.Publish(ctx, cl, topics, signed(t, versions.Record{Name: "default", Version: 1, SHA256: c.live.SHA256(), Author: "test", Document: c.live.Canonical()})); err != nil {
		t.Fatal(err)
	}
	if !withShadow {
		return c
	}
	b, _ := json.Marshal(signed(t, versions.Record{Name: "default", Version: 2, SHA256: c.shad.SHA256(), Author: "test",
		PublishedAt: shadowT0.Format(time.RFC3339), Document: c.shad.Canonical(), Shadow: true}))
	for _, topic := range []string{topics.ConfigHistory, topics.Config} {
		r := &kgo.Record{Topic: topic, Key: []byte(versions.ShadowKey("default")), Value: b, Timestamp: shadowT0}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	const n = 400
	t0 := shadowT0.UnixMilli()
	// Each decision comes from an event on the metrics topic (its input):
	// an event of ad0001 stamped before the shadow's start, then one per
	// ad at its decision's ts.
	inputOf := func(r *kgo.Record) rules.Input {
		return rules.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	}
	early := &kgo.Record{Topic: topics.Metrics, Key: []byte("ad0001"), Timestamp: shadowT0.Add(-time.Hour),
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
		live = append(live, decision("l"+ad, ad, c.live.SHA256(), ts, in))
		if shadowDecides(i) {
			shad = append(shad, decision("s"+ad, ad, c.shad.SHA256(), ts, in))
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
		decision("early", "ad0001", c.live.SHA256(), t0-1, inputOf(early)))
	shad = append(shad, decision("old", "ad0002", "0123456789ab", t0+1, inputOf(triggers[2])))
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", events)
	kafkatest.Produce(t, cl, topics.Decisions, "ad_id", live)
	// The shadow's decisions in transactions, as nodes write them: one
	// committed, ending in its marker, and one aborted, which must not count.
	txn := func(commit bool, lines [][]byte) {
		tc := kafkatest.Client(t, addrs, kgo.TransactionalID(kafkatest.Name(topics, fmt.Sprintf("shadow-test-%v", commit))), kgo.DefaultProduceTopic(topics.ShadowDecisions))
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
	txn(false, [][]byte{decision("aborted", "ad0003", c.shad.SHA256(), t0+2, inputOf(triggers[3]))})
	txn(true, shad)
	return c
}

// betterShadow decides every good ad and 6 bad ones in 20: 220/340 =
// 0.6471 against the live side's 220/400 = 0.55.
func betterShadow(i int) bool { return i%20 < 17 }

func TestShadowStatus(t *testing.T) {
	t.Run("no shadow", func(t *testing.T) {
		c := newShadowCluster(t, false, false, nil)
		out, stderr, err := adrules(t, "", nil, append([]string{"shadow", "status"}, c.flags()...)...)
		if err != nil || !strings.Contains(out, "rule set default: live v1") || !strings.Contains(out, "no shadow is published") {
			t.Fatalf("status: %v\n%s%s", err, out, stderr)
		}
		out, _, err = adrules(t, "", nil, append([]string{"shadow", "status", "--json"}, c.flags()...)...)
		if err != nil || !strings.Contains(out, `"shadow": null`) {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
	})

	t.Run("better", func(t *testing.T) {
		c := newShadowCluster(t, false, true, betterShadow)
		out, stderr, err := adrules(t, "", nil, append([]string{"shadow", "status"}, c.flags()...)...)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, stderr)
		}
		t.Logf("\n%s", out)
		for _, want := range []string{
			"shadow v2 (sha256 " + short(c.shad.SHA256()) + ") since 2025-01-01T00:00:00Z",
			"roas >= 3 or ctr > 0.03 (the live thresholds)",
			"live           400       400       220    0.5500\n",
			"shadow         340       340       220    0.6471\n",
			"rule        both live only shadow only\nwinner       340        60           0\n",
			"improvement +17.65% relative, +9.71 points",
			"verdict: promote (auto_promote is off",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q", want)
			}
		}
		out, _, err = adrules(t, "", nil, append([]string{"shadow", "status", "--json"}, c.flags()...)...)
		var v shadowJSON
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Report == nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if r := v.Report; !r.Promote || r.Shadow != (shadow.SideReport{Decisions: 340, Resolved: 340, Held: 220, Precision: 220.0 / 340}) ||
			v.Shadow.SHA256 != c.shad.SHA256() || v.Live.Version != 1 {
			t.Errorf("json: %+v %+v", v, *v.Report)
		}
	})

	t.Run("not better", func(t *testing.T) {
		// The shadow decides what the live side decides: no improvement.
		c := newShadowCluster(t, true, true, func(int) bool { return true })
		out, stderr, err := adrules(t, "", nil, append([]string{"shadow", "status"}, c.flags()...)...)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, stderr)
		}
		for _, want := range []string{
			"shadow         400       400       220    0.5500\n",
			"winner       400         0           0\n",
			"not met  improvement",
			"verdict: keep the live rule set: shadow precision 0.5500 is +0.00% relative to live 0.5500; needs at least +2.00%",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q\n%s", want, out)
			}
		}
	})
}
