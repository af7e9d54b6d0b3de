package streams_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestVerdictsWhateverTheTiming: three nodes share the work; two partitions
// of the metric events arrive long after the others (their proposals reach
// stage 2 last). The verdicts are still the file backtest's, one for one:
// stage 2 judges each account's proposals in their order, once every
// source partition has passed them, not in the order they arrive.
func TestVerdictsWhateverTheTiming(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	// Tight quotas: which proposals pass depends on the order they are
	// judged in.
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.NewReplacer("max_per_hour: 15", "max_per_hour: 3", "max_per_day: 100", "max_per_day: 12").Replace(string(data))
	doc, err := config.Load("rules.yaml", []byte(src), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 0)
	if err != nil {
		t.Fatal(err)
	}

	const parts = 4
	events := kafkatest.History(t, 51, gen.Options{Accounts: 5, Events: 20000})
	var b bytesBuffer
	if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: 51, Accounts: 5, Count: 900}); err != nil {
		t.Fatal(err)
	}
	actions := b.lines()
	// Every partition of both input topics gets a record first (so none is
	// empty, which would make it idle at once), and one last, far in event
	// time, so that every source passes every proposal without waiting for
	// idleness: the data ends, the verdicts are complete.
	first, _ := streams.RecordTime(events[0])
	opening, closing := edgeEvents(parts, first.Add(-time.Hour), first.Add(60*24*time.Hour))
	openActs, closeActs := edgeActions(parts, first.Add(-time.Hour), first.Add(60*24*time.Hour))
	allEvents := append(append(append([][]byte(nil), opening...), events...), closing...)
	allActions := append(append(append([][]byte(nil), openActs...), actions...), closeActs...)
	want := kafkatest.BacktestAll(t, rs, allEvents, allActions)
	wantVerdicts := kafkatest.Verdicts(t, want.Verdicts)
	rejected := 0
	for _, v := range wantVerdicts {
		if strings.HasPrefix(v, "rejected rate_limit") {
			rejected++
		}
	}
	if want.Summary.Proposals == 0 || rejected < 50 {
		t.Fatalf("%d proposals of the rules, %d rejected by the rate limits: the order would hardly matter", want.Summary.Proposals, rejected)
	}

	cl := kafkatest.Client(t, addrs)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", opening)
	kafkatest.Produce(t, cl, topics.Actions, "account_id", openActs)
	for _, id := range []string{"a", "b", "c"} {
		runOrderNode(t, addrs, topics, id, rs)
	}
	// Partitions 0 and 1 of the metric events and all external proposals
	// first, processed to the end; then partitions 2 and 3.
	early, late := byPartition(t, events, "ad_id", parts, 0, 1), byPartition(t, events, "ad_id", parts, 2, 3)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", early)
	kafkatest.Produce(t, cl, topics.Actions, "account_id", actions)
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, 2*time.Minute)
	queued := countVerdicts(t, addrs, topics.Verdicts)
	t.Logf("with partitions 2 and 3 held back: %d of %d verdicts written", queued, len(wantVerdicts))
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", late)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", closing)
	kafkatest.Produce(t, cl, topics.Actions, "account_id", closeActs)

	// The closing proposals themselves stay queued: no source passes them.
	for _, l := range closeActs {
		delete(wantVerdicts, kafkatest.IDs(t, [][]byte{l}, "action_id")[0])
	}
	got := kafkatest.Verdicts(t, kafkatest.Consume(t, addrs, topics.Verdicts, len(wantVerdicts), 2*time.Minute))
	if d := kafkatest.DiffVerdicts(got, wantVerdicts, 10); d != "" {
		t.Fatalf("the nodes' verdicts are not the backtest's: %s", d)
	}
}

// runOrderNode runs a node until the test ends, with wall-clock idleness
// out of the way (the data ends with records far in event time).
func runOrderNode(t *testing.T, addrs []string, topics streams.Topics, id string, rs *rules.RuleSet) {
	t.Helper()
	startRunner(t, addrs, topics, rs, runnerOptions{id: id, dir: t.TempDir(), partitioner: true, small: true, idle: time.Hour})
}

// edgeEvents returns one metric event per partition at from, and one at
// to, of ads made up for the purpose (keys that land on each partition);
// they make no decision.
func edgeEvents(parts int32, from, to time.Time) (opening, closing [][]byte) {
	for p := range parts {
		ad := keyOn(p, parts, "edge-ad-")
		line := func(id string, ts time.Time) []byte {
			return fmt.Appendf(nil, `{"event_id":%q,"ts":%q,"account_id":"edge","ad_id":%q,"impressions":0,"clicks":0,"spend":0}`,
				id, ts.UTC().Format(time.RFC3339), ad)
		}
		opening = append(opening, line(ad+"-open", from))
		closing = append(closing, line(ad+"-close", to))
	}
	return opening, closing
}

// edgeActions is edgeEvents for the actions topic: a pause of a made-up ad
// of an account on each partition.
func edgeActions(parts int32, from, to time.Time) (opening, closing [][]byte) {
	for p := range parts {
		acct := keyOn(p, parts, "edge-acct-")
		line := func(id string, ts time.Time) []byte {
			return fmt.Appendf(nil, `{"action_id":%q,"ts":%q,"account_id":%q,"ad_id":"edge-ad","type":"pause"}`,
				id, ts.UTC().Format(time.RFC3339), acct)
		}
		opening = append(opening, line(acct+"-open", from))
		closing = append(closing, line(acct+"-close", to))
	}
	return opening, closing
}

// keyOn returns a key with prefix that murmur2 puts on partition p.
func keyOn(p, parts int32, prefix string) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if streams.KeyPartition([]byte(k), parts) == p {
			return k
		}
	}
}

// byPartition keeps the lines whose field lands on one of ps.
func byPartition(t *testing.T, lines [][]byte, field string, parts int32, ps ...int32) [][]byte {
	var out [][]byte
	for _, l := range lines {
		key := kafkatest.IDs(t, [][]byte{l}, field)[0]
		for _, p := range ps {
			if streams.KeyPartition([]byte(key), parts) == p {
				out = append(out, l)
			}
		}
	}
	return out
}

// countVerdicts counts the committed records of the verdicts topic.
func countVerdicts(t *testing.T, addrs []string, topic string) int {
	t.Helper()
	n := 0
	rs, err := streams.ResolveRange(context.Background(), kafkatest.Client(t, addrs), topic, streams.Bound{}, streams.Bound{}, streams.Warm{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		err := streams.ReadRange(context.Background(), []kgo.Opt{kgo.SeedBrokers(addrs...)}, r, func(recs []engine.Record, _ []time.Time) error {
			n += len(recs)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestEmptySourcesDoNotHoldBack: with no external proposals at all (the
// actions topic empty, as for most users), stage 2 does not wait for its
// partitions: an empty partition is idle from its assignment, without
// waiting for the idle timeout (an hour here).
func TestEmptySourcesDoNotHoldBack(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	events := kafkatest.History(t, 52, gen.Options{Accounts: 4, Events: 8000})
	last, _ := streams.RecordTime(events[len(events)-1])
	_, closing := edgeEvents(4, last, last.Add(30*24*time.Hour))
	all := append(append([][]byte(nil), events...), closing...)
	want := kafkatest.BacktestAll(t, rs, all, nil)
	if len(want.Verdicts) == 0 {
		t.Fatal("no proposals: the test would prove nothing")
	}
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", all)
	runOrderNode(t, addrs, topics, "a", rs)
	got := kafkatest.Verdicts(t, kafkatest.Consume(t, addrs, topics.Verdicts, len(want.Verdicts), time.Minute))
	if d := kafkatest.DiffVerdicts(got, kafkatest.Verdicts(t, want.Verdicts), 10); d != "" {
		t.Fatal(d)
	}
}
