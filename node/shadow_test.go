package node_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newShadowCluster is kafkatest.NewShadowCluster with the shipped rules
// file, signed by testSigner.
func newShadowCluster(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt, autoPromote bool, decides func(int) bool) *kafkatest.ShadowCluster {
	t.Helper()
	return kafkatest.NewShadowCluster(t, addrs, topics, kafkatest.ShadowOptions{Root: "..", Signer: kafkatest.TestSigner(), ClientOpts: opts, AutoPromote: autoPromote, Decides: decides})
}

// inBubble runs f in a synctest bubble with a kfake of its own on a
// virtual network: the wall clock is virtual (a judging round every 15
// seconds waits for nothing), and every client must dial with opts.
func inBubble(t *testing.T, f func(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt)) {
	t.Helper()
	if kafkatest.Shared() {
		t.Skip("runs on a virtual network of its own")
	}
	synctest.Test(t, func(t *testing.T) {
		// A bubble's clock starts in 2000, before kafkatest.ShadowT0: the records
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
func watchOptions(c *kafkatest.ShadowCluster, id string, obs node.Observer, log *slog.Logger) node.Options {
	return node.Options{Connection: streams.Connection{Brokers: c.Addrs, Topics: c.Topics, ClientOpts: c.ClientOpts},
		Group: kafkatest.Group(c.Topics), NodeID: id, Keys: kafkatest.TestKeys(), Logger: log, Observer: obs}
}

// TestShadowJudged: a node watching a shadow that is no better tells its
// observer the judgement (what nodeprom exports as gauges: the agreement
// per rule, each side's resolved decisions and precision) and promotes
// nothing, auto_promote on or not. Runs in a synctest bubble.
func TestShadowJudged(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, addrs []string, topics streams.Topics, opts []kgo.Opt) {
		// The shadow decides what the live side decides: no improvement.
		c := newShadowCluster(t, addrs, topics, opts, true, func(int) bool { return true })
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
		c := newShadowCluster(t, addrs, topics, opts, true, kafkatest.BetterShadow)
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
		if p.Version <= hist[0].Version || p.SHA256 != c.Shadow.SHA256() || !strings.HasPrefix(p.Author, "auto_promote:n") {
			t.Errorf("promoted v%d sha256 %.12s by %s, want a version after v%d, sha256 %.12s, by auto_promote:<node>",
				p.Version, p.SHA256, p.Author, hist[0].Version, c.Shadow.SHA256())
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
		if len(claims) == 0 || "auto_promote:"+claims[0].Node != p.Author || claims[0].SHA256 != c.Shadow.SHA256() {
			t.Errorf("claims %+v, publisher %s", claims, p.Author)
		}
	})
}

// TestShadowNode: a node runs a published shadow beside the live rule set.
// The shadow starts at its publish time, its state warmed up by the
// records of the window before (not by older ones); its decisions (on the
// shadow topic only, carrying its version) are the shadow rule set's on
// the records after, and they are told to the shadow observer alone: the
// live outputs, Status and the live observer are exactly those of a run
// without a shadow. An invalid shadow version is refused and the shadow
// keeps running; once retired, it decides nothing more.
func TestShadowNode(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	n := start(t, options(t, addrs, topics, "s1")) // bootstraps v1
	live := n.RuleSet()
	cl := kafkatest.Client(t, addrs)
	ctx := context.Background()

	lines := kafkatest.History(t, 6, gen.Options{Accounts: 2, BadPct: 1, DupPct: 1})
	q := len(lines) / 4
	parts := [][][]byte{lines[:q], lines[q : 2*q], lines[2*q : 3*q], lines[3*q:]}

	// First, records stamped 30 days ago, beyond the warm-up: copies of
	// part 2. Were they replayed into the shadow's state, part 2 would be
	// duplicates there and decide nothing. Then part 1, produced before
	// the shadow is published: it only warms the shadow's state up.
	old := parts[1]
	produceAt(t, cl, topics.Metrics, old, time.Now().Add(-30*24*time.Hour))
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", parts[0])
	pub, err := streams.PublishDocument(ctx, clusterOf(t, addrs, topics), kafkatest.TestKeys(), document(t, "ctr_threshold: 0.03", "ctr_threshold: 0.02"), "test", true)
	if err != nil || pub.Version != 2 || !pub.Shadow {
		t.Fatalf("publish the shadow: %+v %v, want shadow v2", pub, err)
	}
	eventually(t, "the shadow running", func() bool { return n.Status().Shadow == 2 && n.shadow.version() == 2 })
	shadow := ruleSet(t, "ctr_threshold: 0.03", "ctr_threshold: 0.02")
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", parts[1])

	// An invalid shadow v3, written by hand: refused, and v2 goes on.
	bad := signed(t, versions.Record{Name: "default", Version: 3, SHA256: "0", Author: "x", Shadow: true,
		Document: []byte(`{"name":"default","rules":[{"id":"r","when":"ad.nope","emit":{"type":"t"}}]}`)})
	if err := streams.Publish(ctx, cl, topics, bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invalid shadow refused", func() bool { return n.obs.refusals() >= 1 })
	if v := n.Status().Shadow; v != 2 {
		t.Fatalf("after an invalid v3 the node runs shadow v%d, want 2", v)
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", parts[2])

	// The shadow's decisions: its rule set's on parts 2 and 3, after a
	// warm-up on part 1.
	upTo3 := slices.Concat(parts[0], parts[1], parts[2])
	t.Logf("%d lines: %d old, %d per part", len(lines), len(old), q)
	all3, sum3 := kafkatest.Backtest(t, shadow, upTo3)
	warm, sumWarm := kafkatest.Backtest(t, shadow, parts[0])
	want := minus(kafkatest.Normalize(t, all3), kafkatest.Normalize(t, warm))
	t.Logf("the shadow decides %d times on part 1 (warm-up) and %d times on parts 2 and 3", len(warm), len(want))
	if len(want) == 0 {
		t.Fatal("the shadow decides nothing on parts 2 and 3: the test would prove little")
	}
	got, applied := kafkatest.ConsumeDecisions(t, addrs, topics.ShadowDecisions, len(want), time.Minute)
	if g := kafkatest.Normalize(t, got); !slices.Equal(g, want) {
		t.Fatalf("the shadow's decisions differ from its rule set's after the warm-up:\ngot  %d %q\nwant %d %q", len(g), g, len(want), want)
	}
	perRule := map[string]int{}
	for _, d := range slices.Concat(got, applied) {
		var m struct {
			Version int64  `json:"ruleset_version"`
			Rule    string `json:"rule_id"`
		}
		json.Unmarshal(d, &m)
		if m.Version != 2 {
			t.Fatalf("a shadow record carries ruleset_version %d, want 2: %s", m.Version, d)
		}
		if m.Rule != "" {
			perRule[m.Rule]++
		}
	}
	if len(applied) == 0 {
		t.Fatal("no config_applied record on the shadow decisions topic")
	}
	shadowEvents := len(parts[1]) + len(parts[2])
	eventually(t, "the shadow observer told of parts 2 and 3", func() bool { in, _ := n.shadow.stage(1); return in == shadowEvents })
	for rule, k := range perRule {
		if c := n.shadow.decided(rule); c != k {
			t.Fatalf("the shadow observer was told of %d decisions of rule %q, want %d", c, rule, k)
		}
	}
	// The shadow's guards judged exactly its own proposals.
	if k := sum3.Proposals - sumWarm.Proposals; k > 0 {
		for _, v := range kafkatest.ConsumeRecords(t, addrs, topics.ShadowVerdicts, k, time.Minute) {
			if !strings.Contains(string(v.Value), `"ruleset_version":2`) {
				t.Fatalf("a shadow verdict without v2: %s", v.Value)
			}
		}
	}

	// Retired: the pipeline stops, and decides nothing on part 4, where it
	// would.
	if err := streams.RetireShadow(ctx, cl, topics, "default", 2, "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the shadow stopped", func() bool { return n.Status().Shadow == 0 && n.shadow.version() == 0 })
	if all, _ := kafkatest.Backtest(t, shadow, lines); len(all) == len(all3) {
		t.Fatal("the shadow would decide nothing on part 4: the test would prove little")
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", parts[3])

	// The live outputs are those of a run without a shadow, and no live
	// topic holds a record of the shadow's version.
	wantLive, sum := kafkatest.Backtest(t, live, slices.Concat(old, lines))
	gotLive, appliedLive := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(wantLive), time.Minute)
	if !slices.Equal(kafkatest.Normalize(t, gotLive), kafkatest.Normalize(t, wantLive)) {
		t.Fatal("the live decisions differ from a run without a shadow")
	}
	kafkatest.CaughtUp(t, addrs, n.o.Group, topics, time.Minute)
	verdicts := 0
	for _, k := range sum.Verdicts {
		verdicts += k
	}
	liveRecs := slices.Concat(gotLive, appliedLive)
	for _, x := range []struct {
		topic string
		n     int
	}{{topics.Proposals, sum.Proposals}, {topics.Verdicts, verdicts}, {topics.DLQ, int(sum.Rejected)}} {
		if x.n == 0 {
			continue
		}
		consume := kafkatest.ConsumeRecords
		if x.topic == topics.Proposals {
			consume = kafkatest.ConsumeProposals
		}
		for _, rec := range consume(t, addrs, x.topic, x.n, time.Minute) {
			liveRecs = append(liveRecs, rec.Value)
		}
	}
	for _, rec := range liveRecs {
		if strings.Contains(string(rec), `"ruleset_version":2`) {
			t.Fatalf("a live topic holds a record of the shadow: %s", rec)
		}
	}
	eventually(t, "the live decisions counted", func() bool {
		return n.Status().Decisions >= int64(len(wantLive)) && n.obs.decidedAll() >= len(wantLive)
	})
	if st, o := n.Status().Decisions, n.obs.decidedAll(); st != int64(len(wantLive)) || o != len(wantLive) {
		t.Fatalf("Status counts %d live decisions and the live observer was told of %d, want %d: they count the shadow's", st, o, len(wantLive))
	}
	kafkatest.ConsumeDecisions(t, addrs, topics.ShadowDecisions, len(want), time.Minute) // exactly: nothing after the retirement
	if in, _ := n.shadow.stage(1); in != shadowEvents {
		t.Fatalf("the retired shadow processed %d events, want %d", in, shadowEvents)
	}
}

// produceAt writes lines to topic keyed by ad_id, stamped ts.
func produceAt(t *testing.T, cl *kgo.Client, topic string, lines [][]byte, ts time.Time) {
	t.Helper()
	var recs []*kgo.Record
	for _, l := range lines {
		var m struct {
			AdID string `json:"ad_id"`
		}
		json.Unmarshal(l, &m)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(m.AdID), Value: l, Timestamp: ts})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// minus returns the sorted lines of a that are not in b, each line as
// often as it is in a more than in b.
func minus(a, b []string) []string {
	n := map[string]int{}
	for _, s := range b {
		n[s]++
	}
	var out []string
	for _, s := range a {
		if n[s] > 0 {
			n[s]--
			continue
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
