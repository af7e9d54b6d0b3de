package backtest_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
)

// TestTopicRun: a history and external proposals on topics of four
// partitions. Over the whole log, each of two sides run at once writes the
// file backtest's decisions and reads every proposal; from a time on,
// warmed up from the start, the run reads every record, keeps the output
// of the range only, and says how many records were warm-up.
func TestTopicRun(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	lines := kafkatest.History(t, 31, gen.Options{Accounts: 4, Duration: 48 * time.Hour, BadPct: 1, DupPct: 1})
	kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines)
	var props bytes.Buffer
	if _, err := gen.Proposals(&props, gen.ProposalOptions{Seed: 31, Accounts: 4, Duration: 48 * time.Hour, Count: 40}); err != nil {
		t.Fatal(err)
	}
	kafkatest.ProduceAtEventTime(t, cl, topics.Actions, "account_id", bytes.Split(bytes.TrimSpace(props.Bytes()), []byte("\n")))
	// The development overlay: winners from 100 impressions on, so that
	// a short history has a few.
	src, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("rules.yaml", src, config.Options{Environment: "development"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := kafkatest.Backtest(t, rs, lines)
	if len(want) < 5 {
		t.Fatalf("%d decisions: the test would prove little", len(want))
	}
	t.Logf("%d events, %d decisions", len(lines), len(want))
	ctx := context.Background()
	c, err := streams.Dial(ctx, streams.Connection{Brokers: addrs, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var total, read int64
	o := backtest.TopicOptions{Topic: topics.Metrics, Actions: topics.Actions, Batch: 64,
		Progress: func(tot int64, _ string, r func() int64) func() { total = tot; return func() { read = r() } }}
	run, err := backtest.ResolveTopic(ctx, c, o)
	if err != nil {
		t.Fatal(err)
	}
	if n := int64(len(lines)); run.Ranges().Len() != n || run.WarmUp() != 0 || run.Meta().Records != n || run.Meta().Actions != topics.Actions {
		t.Fatalf("ranges %s (%d records, %d warm-up), meta %+v; want %d records", run.Ranges(), run.Ranges().Len(), run.WarmUp(), run.Meta(), n)
	}
	dir := t.TempDir()
	sides := []*backtest.Side{
		{Name: "candidate", RuleSet: rs, Dir: filepath.Join(dir, "candidate")},
		{Name: "baseline", RuleSet: rs, Dir: filepath.Join(dir, "baseline")},
	}
	if err := run.Run(ctx, sides); err != nil {
		t.Fatal(err)
	}
	if total != 2*int64(len(lines)) || read != total {
		t.Errorf("progress: %d of %d records, want %d", read, total, 2*len(lines))
	}
	w := kafkatest.Normalize(t, want)
	slices.Sort(w)
	for _, s := range sides {
		g := kafkatest.Normalize(t, readLines(t, filepath.Join(s.Dir, "decisions.jsonl")))
		slices.Sort(g)
		if !slices.Equal(g, w) {
			t.Errorf("%s: %d decisions, the file backtest %d, or other ones", s.Name, len(g), len(w))
		}
		if s.Summary.External != 40 || s.Summary.WarmUp != 0 {
			t.Errorf("%s: %d external proposals, %d warm-up; want 40 and 0", s.Name, s.Summary.External, s.Summary.WarmUp)
		}
	}

	// From the middle on, warmed up from the start of the log.
	at, ok := streams.RecordTime(lines[len(lines)/2])
	if !ok {
		t.Fatal("no ts")
	}
	o.From, o.Warmup, o.Progress = streams.Bound{Time: at}, 100000*3600e9, nil
	run, err = backtest.ResolveTopic(ctx, c, o)
	if err != nil {
		t.Fatal(err)
	}
	warm := run.WarmUp()
	if run.Ranges().Len() != int64(len(lines)) || warm == 0 || run.Meta().Records != int64(len(lines))-warm {
		t.Fatalf("from %s: ranges %s, %d warm-up, meta %+v", at, run.Ranges(), warm, run.Meta())
	}
	part := &backtest.Side{Name: "candidate", RuleSet: rs, Dir: t.TempDir()}
	if err := run.Run(ctx, []*backtest.Side{part}); err != nil {
		t.Fatal(err)
	}
	if part.Summary.WarmUp != warm || part.Summary.Events != int64(len(lines)) {
		t.Errorf("summary: %d warm-up of %d events, want %d of %d", part.Summary.WarmUp, part.Summary.Events, warm, len(lines))
	}
	got := readLines(t, filepath.Join(part.Dir, "decisions.jsonl"))
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("%d decisions from %s, of %d over the whole log", len(got), at, len(want))
	}
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return bytes.Split(bytes.TrimSpace(data), []byte("\n"))
}
