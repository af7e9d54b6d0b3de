package node_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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
	return kafkatest.NewShadowCluster(t, addrs, topics, kafkatest.ShadowOptions{Root: "..", Signer: testSigner(), ClientOpts: opts, AutoPromote: autoPromote, Decides: decides})
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
		Group: kafkatest.Group(c.Topics), NodeID: id, Keys: testKeys(), Logger: log, Observer: obs}
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
