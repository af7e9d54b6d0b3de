package rules_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

var sampleEvent = []byte(`{"event_id":"ad_1001_0014-17","ts":"2026-11-01T17:00:00Z","account_id":"act_1001","campaign_id":"cmp_1001_01","adset_id":"as_1001_01","ad_id":"ad_1001_0014","video_id":"vid_1001_017","impressions":412,"clicks":9,"spend":5.61,"revenue":12.40,"conversions":1,"created_at":"2026-10-31T09:12:00Z","budget":120.00}`)

// BenchmarkDecode: one metric event, JSON to Event.
func BenchmarkDecode(b *testing.B) {
	var d rules.Decoder
	var ev rules.Event
	b.ReportAllocs()
	b.SetBytes(int64(len(sampleEvent)))
	for b.Loop() {
		if err := d.Decode(sampleEvent, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func loadDefault(b *testing.B) *rules.RuleSet {
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := config.Load("rules.yaml", data, config.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

// adWithHistory returns an ad with a week of hourly deltas, as the windows
// see it in steady state.
func adWithHistory(rs *rules.RuleSet) (*rules.AdState, int64) {
	st := &rules.AdState{}
	ts := int64(1793520000000)
	for i := range 168 {
		ev := rules.Event{EventID: fmt.Sprint("h", i), TS: ts, AccountID: "a", AdID: "x", Impressions: 300, Clicks: 4, Spend: 4, Revenue: 5}
		st.Apply(&ev, rules.IDHash(ev.EventID), rs.KeepMS(), rs.HorizonMS())
		ts += 3600_000
	}
	return st, ts
}

// BenchmarkEval: the default rule set (winner, scale-winner) for one event of
// an ad with a week of history: windows, environment, two programs.
func BenchmarkEval(b *testing.B) {
	rs := loadDefault(b)
	st, ts := adWithHistory(rs)
	st.Marks = []rules.Mark{{RuleID: "winner", Last: 1}} // the winner fired long ago
	ev := rules.Event{EventID: "now", TS: ts, AccountID: "a", AdID: "x", Impressions: 300, Clicks: 4, Spend: 4, Revenue: 5}
	e := rs.NewEvaluator()
	var res rules.Result
	b.ReportAllocs()
	for b.Loop() {
		res.Reset()
		e.Eval(st, &ev, rules.Input{}, &res)
	}
}

// BenchmarkApply: dedupe check and window update of one event on an ad with a
// week of history (steady state: one bucket and one id expire per event).
func BenchmarkApply(b *testing.B) {
	rs := loadDefault(b)
	st, ts := adWithHistory(rs)
	evs := make([]rules.Event, 4096)
	for i := range evs {
		evs[i] = rules.Event{EventID: fmt.Sprint("b", i), TS: ts + int64(i)*3600_000, AccountID: "a", AdID: "x", Impressions: 300, Clicks: 4, Spend: 4}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev := &evs[i%len(evs)]
		if i%len(evs) == 0 && i > 0 {
			b.StopTimer()
			st, _ = adWithHistory(rs)
			b.StartTimer()
		}
		h := rules.IDHash(ev.EventID)
		if !st.Duplicate(ev, h) {
			st.Apply(ev, h, rs.KeepMS(), rs.HorizonMS())
		}
		i++
	}
}
