package rules_test

import (
	"math"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// FuzzDecode: the decoder never panics, and what it accepts satisfies the
// contract (S7): required fields non-empty, counts and money non-negative
// and finite.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"event_id":"e","ts":"2026-11-02T10:00:00Z","account_id":"a","ad_id":"x","impressions":10,"clicks":1,"spend":1.5}`,
		`{"event_id":"e","ts":1793613600000,"account_id":"a","ad_id":"x","impressions":1e3,"clicks":0,"spend":0,"revenue":2,"created_at":"2026-11-01T10:00:00.5+02:00","budget":10}`,
		`{"event_id":"e","ts":"x","account_id":"a","ad_id":"x","impressions":-1,"clicks":0.5,"spend":"NaN"}`,
		`[1]`, `not json`, `{}`, `{"ts":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d rules.Decoder
		var ev rules.Event
		if err := d.Decode(data, &ev); err != nil {
			return
		}
		if ev.EventID == "" || ev.AdID == "" || ev.AccountID == "" {
			t.Fatalf("accepted an empty required id: %+v", ev)
		}
		if ev.Impressions < 0 || ev.Clicks < 0 || ev.Conversions < 0 || ev.TS < 0 || ev.CreatedAt < 0 {
			t.Fatalf("accepted a negative count or time: %+v", ev)
		}
		for _, m := range []float64{ev.Spend, ev.Revenue, ev.Budget} {
			if m < 0 || math.IsNaN(m) || math.IsInf(m, 0) {
				t.Fatalf("accepted bad money: %+v", ev)
			}
		}
	})
}

// FuzzCompileEval: any expression either fails to compile with an error, or
// compiles and evaluates without panicking, within its memory budget.
func FuzzCompileEval(f *testing.F) {
	for _, s := range []string{
		"ad.ctr > 0.03 || ad.roas > params.t",
		"w1h.spend / w24h.spend > 0.5",
		"event.hour in 9..17 && event.ad_id startsWith 'ad_'",
		"len(map(1..100, {# * ad.clicks})) > 3",
		"ad.impressions % event.clicks == 0",
		"flags.f ? ad.cpa < 5 : ad.cpm > 1",
		"now() > 0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, when string) {
		doc := &config.Document{
			Name: "fuzz", Params: map[string]any{"t": 3.0}, FeatureFlags: map[string]bool{"f": true},
			Windows: config.DefaultWindows(),
			Rules:   []config.Rule{{ID: "r", When: when, Emit: &config.Emit{Type: "t", Values: []string{"ctr"}}}},
		}
		doc.Defaults()
		rs, err := rules.Compile(doc, 1)
		if err != nil {
			return
		}
		var st rules.AdState
		ev := rules.Event{EventID: "e", TS: 1793613600000, AccountID: "a", AdID: "ad_1", Impressions: 100, Clicks: 3, Spend: 2}
		st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
		var res rules.Result
		rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
		if len(res.Decisions)+len(res.Errors) > 1 {
			t.Fatalf("one rule produced %d decisions and %d errors", len(res.Decisions), len(res.Errors))
		}
	})
}
