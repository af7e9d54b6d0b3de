package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// configFlags are the flags of a config command against the test's topics.
func configFlags(addrs []string, topics streams.Topics) []string {
	return []string{"--brokers", strings.Join(addrs, ","), "--topic-config", topics.Config,
		"--topic-config-history", topics.ConfigHistory, "--topic-status", topics.Status}
}

// TestShadowPublish: publish --shadow refuses an invalid file with its
// position, and takes the next number of the one sequence that live and
// shadow versions share; get --shadow shows it, history lists it, and
// retire-shadow ends it.
func TestShadowPublish(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	flags := configFlags(addrs, topics)
	config := func(args ...string) (string, string, error) {
		return adrules(t, "", nil, append(append([]string{"config", args[0]}, flags...), args[1:]...)...)
	}
	dir := t.TempDir()
	loose, bad := filepath.Join(dir, "loose.yaml"), filepath.Join(dir, "bad.yaml")
	writeReplaced(t, "../../examples/rules.yaml", loose, "ctr_threshold: 0.03", "ctr_threshold: 0.02")
	writeReplaced(t, "../../examples/rules.yaml", bad, "ad.ctr >", "ad.ctx >")

	if out, _, err := config("publish", "../../examples/rules.yaml"); err != nil || !strings.Contains(out, "published default v1 sha256") {
		t.Fatalf("publish v1: %v %s", err, out)
	}
	_, stderr, err := config("publish", "--shadow", bad)
	if exitCode(err) != 1 || !regexp.MustCompile(regexp.QuoteMeta(bad)+`:\d+:\d+: rule winner: `).MatchString(stderr) {
		t.Fatalf("publishing an invalid shadow: exit %d, %q; want 1 and FILE:LINE:COL", exitCode(err), stderr)
	}
	if out, _, err := config("publish", "--shadow", loose); err != nil || !strings.Contains(out, "published default v2 as the shadow") {
		t.Fatalf("publish --shadow: %v %s", err, out)
	}
	// The next live version comes after the shadow's.
	if out, _, err := config("publish", "../../examples/rules.yaml"); err != nil || !strings.Contains(out, "published default v3 sha256") {
		t.Fatalf("publish v3: %v %s", err, out)
	}
	if out, stderr, err := config("get", "--shadow"); err != nil || !strings.Contains(out, `"ctr_threshold":0.02`) || !strings.Contains(stderr, "default v2 (shadow)") {
		t.Fatalf("get --shadow: %v %s %s", err, out, stderr)
	}
	if out, _, err := config("get"); err != nil || !strings.Contains(out, `"ctr_threshold":0.03`) {
		t.Fatalf("get: %v %s", err, out)
	}
	if out, _, err := config("history"); err != nil || strings.Count(out, "\n") != 3 || !regexp.MustCompile(`(?m)^v2 .*shadow$`).MatchString(out) {
		t.Fatalf("history: %v\n%s", err, out)
	}
	if out, _, err := config("retire-shadow"); err != nil || !strings.Contains(out, "retired the shadow of default (v2)") {
		t.Fatalf("retire-shadow: %v %s", err, out)
	}
	if _, _, err := config("get", "--shadow"); err == nil {
		t.Fatal("get --shadow after the retirement found a shadow")
	}
	if _, _, err := config("retire-shadow"); err == nil {
		t.Fatal("retiring a retired shadow succeeded")
	}
	if out, _, err := config("history"); err != nil || !regexp.MustCompile(`(?m)^v2 .*shadow retired$`).MatchString(out) {
		t.Fatalf("history after the retirement: %v\n%s", err, out)
	}
	if out, _, err := config("publish", "--shadow", loose); err != nil || !strings.Contains(out, "published default v4 as the shadow") {
		t.Fatalf("a second shadow: %v %s", err, out)
	}
}

// TestShadowNode: a node runs a published shadow beside the live rule set.
// The shadow starts at its publish time, its state warmed up by the
// records of the window before (not by older ones); its decisions (on the shadow topic only, carrying its
// version) are the shadow rule set's on the records after, and the live
// outputs are exactly those of a run without a shadow. An invalid shadow
// version is refused and the shadow keeps running; once retired, it
// decides nothing more.
func TestShadowNode(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	flags := configFlags(addrs, topics)
	r := startRunNode(t, testNodeConfig(addrs, topics, "s1", t.TempDir())) // bootstraps v1
	live := r.n.ruleSet()
	cl := kafkatest.Client(t, addrs)

	lines := kafkatest.History(t, 6, gen.Options{Accounts: 2, BadPct: 1, DupPct: 1})
	q := len(lines) / 4
	parts := [][][]byte{lines[:q], lines[q : 2*q], lines[2*q : 3*q], lines[3*q:]}

	// First, records stamped 30 days ago, beyond the warm-up: copies of
	// part 2. Were they replayed into the shadow's state, part 2 would be
	// duplicates there and decide nothing. Then part 1, produced before
	// the shadow is published: it only warms the shadow's state up.
	old := parts[1]
	produceAt(t, topics.Metrics, old, time.Now().Add(-30*24*time.Hour), cl)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", parts[0])
	loose := filepath.Join(t.TempDir(), "loose.yaml")
	writeReplaced(t, "../../examples/rules.yaml", loose, "ctr_threshold: 0.03", "ctr_threshold: 0.02")
	if out, _, err := adrules(t, "", nil, append(append([]string{"config", "publish"}, flags...), "--shadow", loose)...); err != nil || !strings.Contains(out, "v2 as the shadow") {
		t.Fatalf("publish --shadow: %v %s", err, out)
	}
	eventually(t, "the shadow running", func() bool { return r.n.Status().Shadow == 2 })
	shadow, err := loadRules(loose, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", parts[1])

	// An invalid shadow v3, written by hand: refused, and v2 goes on.
	bad := signed(t, versions.Record{Name: "default", Version: 3, SHA256: "0", Author: "x", Shadow: true,
		Document: []byte(`{"name":"default","rules":[{"id":"r","when":"ad.nope","emit":{"type":"t"}}]}`)})
	if err := streams.Publish(context.Background(), cl, topics, bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invalid shadow refused", func() bool { return r.n.refused() >= 1 })
	if v := r.n.Status().Shadow; v != 2 {
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
	eventually(t, "the shadow through part 3", func() bool {
		return r.n.metricOf("shadow", "adrules_records_in_total", "stage", "1") == float64(len(parts[1])+len(parts[2]))
	})
	for rule, n := range perRule {
		if c := r.n.metricOf("shadow", "adrules_decisions_total", "rule", rule); c != float64(n) {
			t.Fatalf("adrules_shadow_decisions_total{rule=%q} = %v, want %d", rule, c, n)
		}
	}
	// The shadow's guards judged exactly its own proposals.
	if n := sum3.Proposals - sumWarm.Proposals; n > 0 {
		for _, v := range kafkatest.ConsumeRecords(t, addrs, topics.ShadowVerdicts, n, time.Minute) {
			if !strings.Contains(string(v.Value), `"ruleset_version":2`) {
				t.Fatalf("a shadow verdict without v2: %s", v.Value)
			}
		}
	}

	// Retired: the pipeline stops, and decides nothing on part 4, where it
	// would.
	if out, _, err := adrules(t, "", nil, append([]string{"config", "retire-shadow"}, flags...)...); err != nil || !strings.Contains(out, "(v2)") {
		t.Fatalf("retire-shadow: %v %s", err, out)
	}
	eventually(t, "the shadow stopped", func() bool { return r.n.Status().Shadow == 0 })
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
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, time.Minute)
	verdicts := 0
	for _, n := range sum.Verdicts {
		verdicts += n
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
	eventually(t, "the live decisions counted", func() bool { return r.n.Status().Decisions >= int64(len(wantLive)) })
	if n := r.n.Status().Decisions; n != int64(len(wantLive)) {
		t.Fatalf("the live metrics count %d decisions, want %d: they count the shadow's", n, len(wantLive))
	}
	kafkatest.ConsumeDecisions(t, addrs, topics.ShadowDecisions, len(want), time.Minute) // exactly: nothing after the retirement
	if n := r.n.metricOf("shadow", "adrules_records_in_total", "stage", "1"); n != float64(len(parts[1])+len(parts[2])) {
		t.Fatalf("the retired shadow processed %v events, want %d", n, len(parts[1])+len(parts[2]))
	}
}

// produceAt writes lines to topic keyed by ad_id, stamped ts.
func produceAt(t *testing.T, topic string, lines [][]byte, ts time.Time, cl *kgo.Client) {
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
