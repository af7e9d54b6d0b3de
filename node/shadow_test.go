package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kfake"
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
	opts       []kgo.Opt // of every client: the virtual network's dialer
	live, shad *config.Document
}

// newShadowCluster publishes the live rule set (examples/rules.yaml with
// model_evaluation: min_samples 200, min_accuracy_delta 0.01 and
// auto_promote as given) and, when withShadow, its shadow (a higher ROAS
// threshold, published at shadowT0). Then it writes 400 ads: ad i is
// decided at shadowT0 + 10 min·i by the live side always, by the shadow
// when shadowDecides(i), and an hour later gets the event that makes the
// decision hold (ROAS 4, for i%20 < 11: 55% of ads) or not (ROAS 1).
func newShadowCluster(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt, autoPromote, withShadow bool, shadowDecides func(i int) bool) *shadowCluster {
	t.Helper()
	c := &shadowCluster{addrs: addrs, topics: topics, opts: opts}
	if err := streams.EnsureTopics(context.Background(), kafkatest.Client(t, addrs, opts...), topics.Specs(4, 7), -1); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(rulesFile)
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
	cl := kafkatest.Client(t, addrs, opts...)
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
		tc := kafkatest.Client(t, addrs, append([]kgo.Opt{kgo.TransactionalID(kafkatest.Name(topics, fmt.Sprintf("shadow-test-%v", commit))),
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
	txn(false, [][]byte{decision("aborted", "ad0003", c.shad.SHA256(), t0+2, inputOf(triggers[3]))})
	txn(true, shad)
	return c
}

// betterShadow decides every good ad and 6 bad ones in 20: 220/340 =
// 0.6471 against the live side's 220/400 = 0.55.
func betterShadow(i int) bool { return i%20 < 17 }

// inBubble runs f in a synctest bubble with a kfake of its own on a
// virtual network: the wall clock is virtual (a judging round every 15
// seconds waits for nothing), and every client must dial with opts.
func inBubble(t *testing.T, f func(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt)) {
	t.Helper()
	if kafkatest.Shared() {
		t.Skip("runs on a virtual network of its own")
	}
	synctest.Test(t, func(t *testing.T) {
		// A bubble's clock starts in 2000, before shadowT0: the records
		// produced (stamped now) would lie before the shadow's start. Move
		// it to 2026, while nothing runs in the bubble yet.
		time.Sleep(time.Until(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
		var stack kfake.VirtualNetwork
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(9092), kfake.ListenFn(stack.Listen))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		f(t, c.ListenAddrs(), streams.DefaultTopics(), []kgo.Opt{kgo.Dialer(stack.DialContext)})
	})
}

// watchOptions are the options of a node that only judges and promotes
// (node.WatchShadow) on c.
func watchOptions(c *shadowCluster, id string, obs node.Observer, log *slog.Logger) node.Options {
	return node.Options{Connection: streams.Connection{Brokers: c.addrs, Topics: c.topics, ClientOpts: c.opts},
		Group: kafkatest.Group(c.topics), NodeID: id, Keys: testKeys(), Logger: log, Observer: obs}
}

// TestShadowJudged: a node watching a shadow that is no better tells its
// observer the judgement (what nodeprom exports as gauges: the agreement
// per rule, each side's resolved decisions and precision) and promotes
// nothing, auto_promote on or not. Runs in a synctest bubble.
func TestShadowJudged(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt) {
		// The shadow decides what the live side decides: no improvement.
		c := newShadowCluster(t, addrs, topics, opts, true, true, func(int) bool { return true })
		obs := &recorder{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- node.WatchShadow(ctx, watchOptions(c, "w", obs, nil)) }()
		// Two rounds: at once, and one ShadowJudgeEvery (15s) later.
		time.Sleep(20 * time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		js := obs.judgements()
		if len(js) != 2 {
			t.Fatalf("%d judging rounds in 20 seconds, want 2 (at once, and after 15 seconds)", len(js))
		}
		for _, j := range js {
			r := j.Report
			if j.Shadow == nil || j.Shadow.Version != 2 || j.Live.Version != 1 {
				t.Fatalf("judged %+v, want shadow v2 against live v1", j)
			}
			if len(r.Agreement) != 1 || r.Agreement[0].Rule != "winner" || r.Agreement[0].Both != 400 || r.Agreement[0].LiveOnly != 0 || r.Agreement[0].ShadowOnly != 0 {
				t.Errorf("agreement %+v, want winner: 400 both, 0 live only, 0 shadow only", r.Agreement)
			}
			if r.Live.Resolved != 400 || r.Shadow.Resolved != 400 || r.Live.Precision != 0.55 || r.Shadow.Precision != 0.55 {
				t.Errorf("live %+v, shadow %+v; want 400 resolved and precision 0.55 each", r.Live, r.Shadow)
			}
			if r.Promote {
				t.Error("a shadow no better than live is to be promoted")
			}
		}
		recs, err := streams.ReadAll(context.Background(), addrs, opts, topics.ConfigHistory)
		if err != nil {
			t.Fatal(err)
		}
		if hist, _ := versions.Live(streams.Entries(recs), "default"); len(hist) != 1 {
			t.Errorf("%d live versions, want 1: nothing promoted", len(hist))
		}
	})
}

// TestShadowAutoPromote: two nodes watch a shadow that is clearly better,
// with auto_promote on: exactly one publishes it, once, as the next live
// version with the shadow's document, and the shadow is retired; both
// judge twice more, see no shadow, and publish nothing more. Runs in a
// synctest bubble: the judging rounds, 15 seconds apart, wait for nothing.
func TestShadowAutoPromote(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt) {
		c := newShadowCluster(t, addrs, topics, opts, true, true, betterShadow)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		obs := map[string]*recorder{}
		done := make(chan error, 2)
		for _, id := range []string{"n1", "n2"} {
			r := &recorder{}
			obs[id] = r
			go func() { done <- node.WatchShadow(ctx, watchOptions(c, id, r, nil)) }()
		}
		readAll := func(topic string) []*kgo.Record {
			recs, err := streams.ReadAll(context.Background(), addrs, opts, topic)
			if err != nil {
				t.Fatal(err)
			}
			return recs
		}
		retired := func() bool {
			var last *kgo.Record
			for _, r := range readAll(topics.Config) {
				if string(r.Key) == versions.ShadowKey("default") {
					last = r
				}
			}
			return last != nil && last.Value == nil
		}
		// The first round promotes; wait for the rounds in progress.
		synctest.Wait()
		time.Sleep(time.Second)
		if !retired() {
			t.Fatal("the shadow was not promoted and retired in the first round")
		}
		// Both nodes judge twice more, seeing no shadow: neither publishes again.
		time.Sleep(2 * 15 * time.Second)
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for id, o := range obs {
			js := o.judgements()
			none := 0
			for _, j := range js {
				if j.Shadow == nil {
					none++
				}
			}
			if none < 2 {
				t.Errorf("%s judged %d rounds without a shadow after the promotion, want 2 or more", id, none)
			}
		}
		promoted := append(obs["n1"].promotions(), obs["n2"].promotions()...)

		recs := readAll(topics.ConfigHistory)
		hist, _ := versions.Live(streams.Entries(recs), "default")
		if len(hist) != 2 {
			t.Fatalf("%d live versions in the history, want 2 (the live one and the promoted shadow)", len(hist))
		}
		p := hist[1]
		if p.Version <= hist[0].Version || p.SHA256 != c.shad.SHA256() || !strings.HasPrefix(p.Author, "auto_promote:n") {
			t.Errorf("promoted v%d sha256 %.12s by %s, want a version after v%d, sha256 %.12s, by auto_promote:<node>",
				p.Version, p.SHA256, p.Author, hist[0].Version, c.shad.SHA256())
		}
		if len(promoted) != 1 || promoted[0] != [2]int64{2, p.Version} {
			t.Errorf("the observers were told of promotions %v, want one: shadow v2 as v%d", promoted, p.Version)
		}
		if _, err := versions.Compile(p); err != nil {
			t.Errorf("the promoted version does not validate: %v", err)
		}
		// The first claim names the node that published.
		type promoteClaim struct {
			SHA256 string `json:"sha256"`
			Node   string `json:"node"`
		}
		var claims []promoteClaim
		for _, r := range recs {
			var pc promoteClaim
			if string(r.Key) == versions.ShadowKey("default")+"/promote" && json.Unmarshal(r.Value, &pc) == nil {
				claims = append(claims, pc)
			}
		}
		if len(claims) == 0 || "auto_promote:"+claims[0].Node != p.Author || claims[0].SHA256 != c.shad.SHA256() {
			t.Errorf("claims %+v, publisher %s", claims, p.Author)
		}
	})
}
