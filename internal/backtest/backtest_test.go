package backtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/rules"
)

func ruleSet(t testing.TB, src string) *rules.RuleSet {
	t.Helper()
	doc, err := config.Load("r.yaml", []byte(src), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestStageTwoOrder: the rules' proposals and external ones meet in stage
// 2's order (rules.OrderKey): by the event time their source had reached,
// external first at equal time, each source in its own order; and share
// the account's quota.
func TestStageTwoOrder(t *testing.T) {
	rs := ruleSet(t, `
rules:
  - {id: p, when: "true", action: {type: pause}}
guards:
  rate_limit: {max_per_hour: 2, max_per_day: 100}
`)
	events := `{"event_id":"1","ts":"2026-11-02T10:00:00Z","account_id":"acc","ad_id":"a","impressions":1,"clicks":0,"spend":0}
{"event_id":"2","ts":"2026-11-02T10:20:00Z","account_id":"acc","ad_id":"a","impressions":1,"clicks":0,"spend":0}
`
	actions := `{"action_id":"x1","ts":"2026-11-02T10:20:00Z","account_id":"acc","ad_id":"b","type":"pause"}
{"action_id":"x0","ts":"2026-11-02T09:59:00Z","account_id":"acc","ad_id":"b","type":"pause"}
not json
`
	dir := t.TempDir()
	sum, err := Run(context.Background(), Options{
		RuleSet: rs, Input: strings.NewReader(events), InputName: "ev", Actions: strings.NewReader(actions), ActionsName: "ac", OutDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "actions.jsonl"))
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		for _, id := range []string{`"source":"p"`, `"action_id":"x1"`, `"action_id":"x0"`} {
			if strings.Contains(line, id) {
				status := "approved"
				if strings.Contains(line, `"rejected"`) {
					status = "rejected"
				}
				got = append(got, strings.Trim(strings.SplitN(id, ":", 2)[1], `"`)+"="+status)
			}
		}
	}
	// x0 (09:59), rule at 10:00, x1 (10:20, external first), rule at 10:20 (over the limit of 2 in (09:20, 10:20]).
	// The log: rule at 10:00, x1 (10:20, external first at equal ts), x0 (09:59,
	// late, after x1 as in its file: its window (08:59, 09:59] is empty), rule
	// at 10:20 (three approvals in (09:20, 10:20] already: over the limit of 2).
	want := "p=approved x1=approved x0=approved p=rejected"
	if strings.Join(got, " ") != want {
		t.Fatalf("stage 2 order: %v, want %s", got, want)
	}
	if sum.External != 2 || sum.BadActions != 1 || sum.Rejected != 0 || sum.Proposals != 2 {
		t.Fatalf("summary: %+v", sum)
	}
	dlq, _ := os.ReadFile(filepath.Join(dir, "dlq.jsonl"))
	if !bytes.Contains(dlq, []byte(`"topic":"ac","partition":0,"offset":2`)) {
		t.Fatalf("the bad proposal line is not in the dlq with its line: %s", dlq)
	}
}

// BenchmarkBacktest runs the default rules over 100,000 generated events
// (with 0.5% malformed lines and 1% duplicates), through Pebble; one op is
// the whole run, and the per-event metrics divide by the events.
func BenchmarkBacktest(b *testing.B) {
	data, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rs := ruleSet(b, string(data))
	var events bytes.Buffer
	const n = 100_000
	if _, err := gen.Events(&events, gen.Options{Events: n, BadPct: 0.5, DupPct: 1, EpochMsPct: 30}); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		b.StopTimer()
		in := bytes.NewReader(events.Bytes())
		b.StartTimer()
		if _, err := Run(context.Background(), Options{RuleSet: rs, Input: in, InputName: "bench", OutDir: dir}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*n), "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N*n), "B/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
