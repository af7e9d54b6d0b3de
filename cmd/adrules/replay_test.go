package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicFlags names the brokers and every topic of the test on a command
// line, each --topic-* flag of the Kafka commands: a command left with a
// default name would use another test's topic on a shared cluster.
func topicFlags(addrs []string, t streams.Topics) []string {
	var k kafkaFlags
	fs := newFlagSet()
	k.register(fs, "")
	k.topics = t // the flags' values
	out := []string{"--brokers", strings.Join(addrs, ",")}
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "topic-") {
			out = append(out, "--"+f.Name, f.Value.String())
		}
	})
	return out
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for l := range bytes.SplitSeq(data, []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// decisionInput reads a decision's input position.
func decisionInput(t *testing.T, line []byte) rules.Input {
	t.Helper()
	var d struct {
		Input rules.Input `json:"input"`
	}
	if err := json.Unmarshal(line, &d); err != nil {
		t.Fatal(err)
	}
	return d.Input
}

// TestTopicBacktest: a history on a topic of four partitions. The topic
// backtest over all of it gives the file backtest's decisions; one from a
// time on, warmed up from the whole log before it, gives exactly those of
// the full run whose input lies in the range; Kafka keeps no trace of it
// (no consumer group).
func TestTopicBacktest(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	lines := kafkatest.History(t, 11, gen.Options{Accounts: 8, BadPct: 1, DupPct: 1})
	kafkatest.ProduceAtEventTime(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines)
	rs := kafkatest.DefaultRules(t, "../..")
	want, _ := kafkatest.Backtest(t, rs, lines)
	if len(want) < 10 {
		t.Fatalf("%d decisions: the test would prove little", len(want))
	}
	flags := topicFlags(addrs, topics)

	all := t.TempDir()
	args := append([]string{"backtest"}, flags...)
	if _, stderr, err := adrules(t, "", nil, append(args, "--rules", "../../examples/rules.yaml", "--out", all)...); err != nil {
		t.Fatalf("backtest: %v\n%s", err, stderr)
	}
	full := readLines(t, filepath.Join(all, "decisions.jsonl"))
	g, w := kafkatest.Normalize(t, full), kafkatest.Normalize(t, want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Fatalf("the topic backtest made %d decisions, the file backtest %d, or other ones", len(g), len(w))
	}

	// From the middle of the history on, warmed up from everything before.
	mid := lines[len(lines)/2]
	at, ok := streams.RecordTime(mid)
	if !ok {
		t.Fatalf("no ts in %s", mid)
	}
	from := at.UTC().Format(time.RFC3339Nano)
	part := t.TempDir()
	if _, stderr, err := adrules(t, "", nil, append(args, "--rules", "../../examples/rules.yaml", "--out", part, "--from", from, "--warmup", "100000h")...); err != nil {
		t.Fatalf("backtest --from: %v\n%s", err, stderr)
	}
	ranges, err := streams.ResolveRange(context.Background(), kafkatest.Client(t, addrs), topics.Metrics,
		streams.Bound{Time: at}, streams.Bound{}, streams.Warm{})
	if err != nil {
		t.Fatal(err)
	}
	var inRange []string
	for _, d := range full {
		if ranges.Contains(decisionInput(t, d)) {
			inRange = append(inRange, string(d))
		}
	}
	got := toStrings(readLines(t, filepath.Join(part, "decisions.jsonl")))
	if len(inRange) == 0 || len(inRange) == len(full) {
		t.Fatalf("%d of %d decisions in the range: the test would prove little", len(inRange), len(full))
	}
	if !slices.Equal(got, inRange) {
		t.Fatalf("from %s: %d decisions, want the full run's %d in the range", from, len(got), len(inRange))
	}

	// No consumer group: on a broker of the test's own, none exists; on a
	// shared one, where other tests' groups come and go, none has
	// committed offsets of the test's topic.
	adm := kadm.NewClient(kafkatest.Client(t, addrs))
	groups, err := adm.ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !kafkatest.Shared() && len(groups.Groups()) != 0 {
		t.Fatalf("a backtest left consumer groups: %v", groups.Groups())
	}
	offs := adm.FetchManyOffsets(context.Background(), groups.Groups()...)
	if err := offs.Error(); err != nil {
		t.Fatal(err)
	}
	for _, o := range offs {
		if _, ok := o.CommittedPartitions()[topics.Metrics]; ok {
			t.Fatalf("a backtest left consumer group %s with offsets of %s", o.Group, topics.Metrics)
		}
	}
}

// TestBacktestBaseline: a candidate with a stricter CTR threshold against
// the baseline rules, on a topic: the diff names as lost exactly the ads
// that decide on the baseline's side only (each side run alone), and the
// report files are written. --baseline live and --baseline 1 read the
// published version.
func TestBacktestBaseline(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	lines := kafkatest.History(t, 12, gen.Options{Accounts: 8})
	kafkatest.ProduceAtEventTime(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines)
	strict := filepath.Join(t.TempDir(), "strict.yaml")
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.045")
	args := append([]string{"backtest"}, topicFlags(addrs, topics)...)

	adsOf := func(rulesFile string) map[string]bool {
		dir := t.TempDir()
		if _, stderr, err := adrules(t, "", nil, append(args, "--rules", rulesFile, "--out", dir)...); err != nil {
			t.Fatalf("backtest %s: %v\n%s", rulesFile, err, stderr)
		}
		ads := map[string]bool{}
		for _, l := range readLines(t, filepath.Join(dir, "decisions.jsonl")) {
			var d rules.Decision
			if err := json.Unmarshal(l, &d); err != nil {
				t.Fatal(err)
			}
			if d.Type == "rag_index_winner" {
				ads[d.AdID] = true
			}
		}
		return ads
	}
	base, cand := adsOf("../../examples/rules.yaml"), adsOf(strict)
	var wantLost []string
	for ad := range base {
		if !cand[ad] {
			wantLost = append(wantLost, ad)
		}
	}
	slices.Sort(wantLost)
	if len(wantLost) == 0 || len(cand) == 0 {
		t.Fatalf("%d ads lost, %d kept: the test would prove little", len(wantLost), len(cand))
	}

	out := t.TempDir()
	stdout, stderr, err := adrules(t, "", nil, append(args, "--rules", strict, "--baseline", "../../examples/rules.yaml", "--out", out)...)
	if err != nil {
		t.Fatalf("backtest --baseline: %v\n%s", err, stderr)
	}
	lost, gained := diffAds(t, filepath.Join(out, "diff.jsonl"), "rag_index_winner")
	slices.Sort(lost)
	if !slices.Equal(lost, wantLost) || len(gained) != 0 {
		t.Fatalf("lost %v gained %v, want lost %v and none gained", lost, gained, wantLost)
	}
	for _, f := range []string{"report.html", "report.md", "candidate/decisions.jsonl", "baseline/actions.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("no %s: %v", f, err)
		}
	}
	if !strings.Contains(stdout, "lost") {
		t.Errorf("stdout does not summarize the diff:\n%s", stdout)
	}

	// The published version as the baseline: live, and by number.
	pub := append([]string{"config", "publish"}, topicFlags(addrs, topics)...)
	if _, stderr, err := adrules(t, "", nil, append(pub, "../../examples/rules.yaml")...); err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr)
	}
	for _, spec := range []string{"live", "1"} {
		dir := t.TempDir()
		_, stderr, err := adrules(t, "", nil, append(args, "--rules", strict, "--baseline", spec, "--out", dir)...)
		if err != nil {
			t.Fatalf("--baseline %s: %v\n%s", spec, err, stderr)
		}
		if !strings.Contains(stderr, "baseline: "+map[string]string{"live": "live", "1": "published"}[spec]+" (version 1,") {
			t.Errorf("--baseline %s does not name v1:\n%s", spec, stderr)
		}
		if l, g := diffAds(t, filepath.Join(dir, "diff.jsonl"), "rag_index_winner"); !slices.Equal(l, lost) || !slices.Equal(g, gained) {
			t.Errorf("--baseline %s: other ads changed than with the same rules from a file", spec)
		}
	}
	if _, stderr, err := adrules(t, "", nil, append(args, "--rules", strict, "--baseline", "9", "--out", t.TempDir())...); exitCode(err) != 1 || !strings.Contains(stderr, "no version 9") {
		t.Errorf("--baseline 9: exit %d, %s", exitCode(err), stderr)
	}
}

// diffAds returns the ads diff.jsonl says lose and gain decisions of type
// typ, sorted.
func diffAds(t *testing.T, path, typ string) (lost, gained []string) {
	t.Helper()
	for _, l := range readLines(t, path) {
		var rec struct {
			Kind   string `json:"kind"`
			AdID   string `json:"ad_id"`
			Type   string `json:"type"`
			Change string `json:"change"`
		}
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Kind == "ad" && rec.Type == typ {
			switch rec.Change {
			case "lost":
				lost = append(lost, rec.AdID)
			case "gained":
				gained = append(gained, rec.AdID)
			}
		}
	}
	slices.Sort(lost)
	slices.Sort(gained)
	return lost, gained
}

// cancelAfter reads r and cancels ctx once n bytes went through.
type cancelAfter struct {
	r      *bytes.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
		return 0, context.Canceled
	}
	n, err := c.r.Read(p[:min(len(p), c.n)])
	c.n -= n
	return n, err
}

// TestBacktestInterrupted: Ctrl-C (the context ends) halfway through the
// input: the command says so, exits 130, and the decisions written so far
// are whole lines, a prefix of a full run's.
func TestBacktestInterrupted(t *testing.T) {
	lines := kafkatest.History(t, 13, gen.Options{Accounts: 8})
	input := append(bytes.Join(lines, []byte("\n")), '\n')
	full := t.TempDir()
	if _, stderr, err := adrules(t, string(input), nil, "backtest", "--rules", "../../examples/rules.yaml", "--input", "-", "--out", full); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	dir := t.TempDir()
	in := &cancelAfter{r: bytes.NewReader(input), n: len(input) / 2, cancel: cancel}
	err := run(ctx, []string{"backtest", "--rules", "../../examples/rules.yaml", "--input", "-", "--out", dir, "--batch", "64"}, in, &bytes.Buffer{}, &stderr, nil)
	if exitCode(err) != 130 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("exit %d (%v), want 130 and a word on it:\n%s", exitCode(err), err, stderr.String())
	}
	want := readLines(t, filepath.Join(full, "decisions.jsonl"))
	got := readLines(t, filepath.Join(dir, "decisions.jsonl"))
	for _, l := range got {
		if !json.Valid(l) {
			t.Fatalf("a line cut short: %s", l)
		}
	}
	if len(got) == 0 || len(got) >= len(want) || !slices.EqualFunc(got, want[:len(got)], bytes.Equal) {
		t.Fatalf("%d decisions kept of %d: want a proper prefix of the full run's", len(got), len(want))
	}
}

// TestProgressLine: the bar, the count, the rate and the time left.
func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		read, total int64
		elapsed     time.Duration
		want        string
	}{
		{500, 1000, 2 * time.Second, "[#####.....]  50% 500/1000 records, 250/s, 2s left"},
		{1000, 1000, 4 * time.Second, "[##########] 100% 1000/1000 records, 250/s"},
		{2_500_000, 0, time.Second, "2.50M records, 2.50M/s"},
		{0, 100, 0, "[..........]   0% 0/100 records, 0/s"},
	} {
		if got := progressLine(c.read, c.total, "records", c.elapsed, 10); got != c.want {
			t.Errorf("progressLine(%d, %d, %s) = %q, want %q", c.read, c.total, c.elapsed, got, c.want)
		}
	}
}

// waitProcessed waits until group has processed every record of the
// metric topic (which makes the proposals, in the same transactions), then
// until every proposal has its verdict: stage 2 judges the last ones once
// every source partition is idle (nc.idleAfter).
func waitProcessed(t *testing.T, addrs []string, group string, topics streams.Topics) {
	t.Helper()
	kafkatest.CaughtUp(t, addrs, group, topics, time.Minute)
	cl := kafkatest.Client(t, addrs)
	ctx := context.Background()
	count := func(topic string) int {
		n := 0
		err := streams.ReadTopic(ctx, cl, cl.Opts(), topic, func(v []byte) error {
			if !rules.IsProgress(v) {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	proposals := count(topics.Proposals)
	eventually(t, "every proposal judged", func() bool { return count(topics.Verdicts) >= proposals })
}

// TestReplayVerify: the command end to end (package replay tests what it
// compares). A node processes a history across a switch from v1 to a
// stricter v2, published with `config publish`. replay --verify --out says
// identical with the counts (exit 0) and writes what it replayed, also from
// a time on; a decision tampered with on the decisions topic is printed as
// the first difference (exit 1). Without --verify or --out it prints its
// usage (exit 2).
func TestReplayVerify(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	nc := testNodeConfig(addrs, topics, "n1", t.TempDir())
	startRunNode(t, nc)
	cl := kafkatest.Client(t, addrs)
	lines := kafkatest.History(t, 14, gen.Options{Accounts: 8})
	half := len(lines) / 2
	kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines[:half])
	waitProcessed(t, addrs, nc.group, topics)

	strict := filepath.Join(t.TempDir(), "strict.yaml")
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.045")
	flags := topicFlags(addrs, topics)
	if _, stderr, err := adrules(t, "", nil, append(append([]string{"config", "publish"}, flags...), strict)...); err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr)
	}
	kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines[half:])
	waitProcessed(t, addrs, nc.group, topics)

	replay := append([]string{"replay", "--verify", "--group", nc.group}, flags...)
	out := t.TempDir()
	stdout, stderr, err := adrules(t, "", nil, append(replay, "--out", out)...)
	if err != nil || !strings.HasPrefix(stdout, "identical: ") {
		t.Fatalf("replay --verify: %v\n%s%s", err, stdout, stderr)
	}
	var decisions, proposals, verdicts int
	if _, err := fmt.Sscanf(stdout, "identical: %d decisions, %d proposals and %d verdicts over "+topics.Metrics+" ", &decisions, &proposals, &verdicts); err != nil || decisions == 0 || verdicts == 0 {
		t.Fatalf("nothing compared, or not said so: %v\n%s", err, stdout)
	}
	t.Log(stdout)
	if want := fmt.Sprintf("replayed: %d decisions, %d proposals, %d verdicts in %s\n", decisions, proposals, verdicts, out); !strings.Contains(stderr, want) {
		t.Errorf("stderr does not say %q:\n%s", want, stderr)
	}
	for file, n := range map[string]int{"decisions.jsonl": decisions, "proposals.jsonl": proposals, "actions.jsonl": verdicts} {
		if got := len(readLines(t, filepath.Join(out, file))); got != n {
			t.Errorf("%s holds %d lines, want %d", file, got, n)
		}
	}
	at, _ := streams.RecordTime(lines[half])
	stdout, stderr, err = adrules(t, "", nil, append(replay, "--from", at.UTC().Format(time.RFC3339Nano))...)
	if err != nil || !strings.HasPrefix(stdout, "identical: ") || strings.HasPrefix(stdout, fmt.Sprintf("identical: %d decisions", decisions)) {
		t.Fatalf("replay --verify --from: %v\n%s%s", err, stdout, stderr)
	}

	// Tamper with a decision: a copy with another value, as if a record
	// had been changed on its way.
	var victim []byte
	err = streams.ReadTopic(context.Background(), cl, cl.Opts(), topics.Decisions, func(v []byte) error {
		if victim == nil && bytes.Contains(v, []byte(`"type":"rag_index_winner"`)) {
			victim = v
		}
		return nil
	})
	if err != nil || victim == nil {
		t.Fatalf("no decision to tamper with: %v", err)
	}
	var d rules.Decision
	if err := json.Unmarshal(victim, &d); err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(victim, []byte(`"ad_id":"`+d.AdID+`"`), []byte(`"ad_id":"`+d.AdID+`-forged"`), 1)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Decisions, Key: []byte(d.AdID), Value: forged}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = adrules(t, "", nil, replay...)
	if exitCode(err) != 1 || !strings.HasPrefix(stdout, "different: decisions") || !strings.Contains(stdout, "on "+topics.Decisions+", not replayed: "+string(forged)) {
		t.Fatalf("replay --verify after tampering: exit %d\n%s", exitCode(err), stdout)
	}
	t.Log(stdout)

	if _, stderr, err := adrules(t, "", nil, append([]string{"replay"}, flags...)...); exitCode(err) != 2 || !strings.Contains(stderr, "Usage: adrules replay") {
		t.Errorf("replay without --verify or --out: exit %d\n%s", exitCode(err), stderr)
	}
	if _, _, err := adrules(t, "", nil, append(replay, "--from", "yesterday")...); err == nil || !strings.HasPrefix(err.Error(), "--from: ") {
		t.Errorf("replay --from yesterday: %v", err)
	}
}

func toStrings(b [][]byte) []string {
	out := make([]string, len(b))
	for i, x := range b {
		out[i] = string(x)
	}
	return out
}
