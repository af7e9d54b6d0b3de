package rules_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

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
		// Issue 11: a budget that scaled to +Inf (row 6), invalid UTF-8
		// in ids (row 11), counts whose sums wrapped (row 12).
		`{"event_id":"e","ts":1,"account_id":"a","ad_id":"x","impressions":1,"clicks":0,"spend":1,"budget":1.7e308}`,
		"{\"event_id\":\"e\",\"ts\":1,\"account_id\":\"a\",\"ad_id\":\"x\xff\",\"impressions\":1,\"clicks\":0,\"spend\":1}",
		`{"event_id":"e","ts":1,"account_id":"a\ud800\u0041","ad_id":"x","impressions":1,"clicks":0,"spend":1}`,
		`{"event_id":"e","ts":1,"account_id":"a","ad_id":"x","impressions":9223372036854775807,"clicks":9223372036854775807,"spend":0}`,
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
		for _, id := range []string{ev.EventID, ev.AccountID, ev.AdID, ev.CampaignID, ev.AdsetID, ev.VideoID} {
			if len(id) > rules.MaxIDLen || !utf8.ValidString(id) || strings.ContainsRune(id, utf8.RuneError) {
				t.Fatalf("accepted a bad id %q: %+v", id, ev)
			}
		}
		if ev.Impressions < 0 || ev.Clicks < 0 || ev.Conversions < 0 || ev.TS < 0 || ev.CreatedAt < 0 {
			t.Fatalf("accepted a negative count or time: %+v", ev)
		}
		if max(ev.Impressions, ev.Clicks, ev.Conversions) > rules.MaxCount {
			t.Fatalf("accepted a count past MaxCount: %+v", ev)
		}
		for _, m := range []float64{ev.Spend, ev.Revenue, ev.Budget} {
			if m < 0 || math.IsNaN(m) || math.IsInf(m, 0) || m > rules.MaxMoney {
				t.Fatalf("accepted bad money: %+v", ev)
			}
		}
	})
}

// FuzzCompileEval: any expression, as a when or as an emit value, either
// fails to compile with an error, or compiles and evaluates without
// panicking, within its memory, string and step budgets, to decisions that
// can be written.
func FuzzCompileEval(f *testing.F) {
	for _, s := range []string{
		"ad.ctr > 0.03 || ad.roas > params.t",
		"w1h.spend / w24h.spend > 0.5",
		"event.hour in 9..17 && event.ad_id startsWith 'ad_'",
		"len(map(1..100, {# * ad.clicks})) > 3",
		"ad.impressions % event.clicks == 0",
		"flags.f ? ad.cpa < 5 : ad.cpm > 1",
		"now() > 0",
		// Issue 11: nesting that overflowed expr's parser (row 1), strings
		// that ran a node out of memory (row 7).
		strings.Repeat("(", 524248) + "true" + strings.Repeat(")", 524248),
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
		`len(repeat(repeat("x", 99999), 1000000)) > 0`,
		`let s = repeat("x", 60000); let a = s + s; let b = a + a; len(b + b) > 0`,
		`let s = repeat("x", 1000); len(toJSON(map(1..40000, s))) > 0`,
		`let a = 1..90000; len(concat(a, a, a, a)) > 0`,
		"[1e308 * 10]",
		"groupBy([1, 2], # > 1)",
		// Issue 11: nested loops that ran for minutes an event ...
		"let x = 1..30000; all(x, {all(x, true)})",
		"let x = 1..1000; any(x, {any(x, {any(x, # < 0)})}) || count(x, {sum(x) > 0}) > 0",
		"len(map(1..40000, {" + strings.Repeat("# + ", 500) + "0})) > 0",
		// ... and walks of arrays and strings that did.
		"len(uniq(1..99999)) > 0",
		"let x = map(1..30000, #); all(x, {# in x && x == x})",
		`let s = repeat("x", 99999); all(1..99999, {not (s matches "x{1,100}y") && len(s) > 0})`,
		`let x = 1..50000; all(1..40000, {median(x) > 0 && len(keys(groupBy(x, #))) > 0})`,
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
		if rs, err := rules.Compile(doc, 1); err == nil {
			res := evalOnce(rs)
			if len(res.Decisions)+len(res.Errors) > 1 {
				t.Fatalf("one rule produced %d decisions and %d errors", len(res.Decisions), len(res.Errors))
			}
			writable(t, res)
		}
		// The same expression as an emit value: a decision can always be
		// written, whatever its values.
		doc.Rules[0].When, doc.Rules[0].Emit.Values = "true", []string{when}
		if rs, err := rules.Compile(doc, 1); err == nil {
			writable(t, evalOnce(rs))
		}
	})
}

func evalOnce(rs *rules.RuleSet) rules.Result {
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1793613600000, AccountID: "a", AdID: "ad_1", Impressions: 100, Clicks: 3, Spend: 2}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	return res
}

func writable(t *testing.T, res rules.Result) {
	for _, d := range res.Decisions {
		if b, err := json.Marshal(d); err != nil || len(b) > 256<<10 {
			t.Fatalf("a decision of %d bytes, or not written: %v", len(b), err)
		}
	}
}
