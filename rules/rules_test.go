package rules_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

func compile(t testing.TB, src string) (*rules.RuleSet, error) {
	t.Helper()
	doc, err := config.Load("rules.yaml", []byte(src), config.Options{})
	if err != nil {
		return nil, err
	}
	return rules.Compile(doc, 1)
}

// TestCompileErrors: a typo in an expression is an error at load time with
// the file position of the typo and the rule id, whatever the YAML style.
func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string // the whole first error line
	}{
		{"unknown field of ad", `
rules:
  - id: r1
    when: ad.impresions > 10
    emit: {type: t}
`, "rules.yaml:4:14: rule r1: when: ad has no field impresions"},
		{"unknown param, folded", `
params: {w: {min: 1}}
rules:
  - id: r2
    when: >
      ad.impressions > 1 &&
      ad.clicks > params.w.mni
    emit: {type: t}
`, "rules.yaml:7:28: rule r2: when: this parameter group has no field mni"},
		{"unknown window, literal block", `
rules:
  - id: r3
    when: |
      ad.impressions > 1 &&
        w2h.spend > 5
    emit: {type: t}
`, "rules.yaml:6:9: rule r3: when: unknown name w2h"},
		{"now is disabled, quoted", `
rules:
  - id: r4
    when: "now() > 0"
    emit: {type: t}
`, "rules.yaml:4:12: rule r4: when: unknown name now"},
		{"not a bool", `
rules:
  - id: r5
    when: ad.spend * 2
    emit: {type: t}
`, "rules.yaml:4:11: rule r5: when: expected bool, but got float64"},
		{"syntax", `
rules:
  - id: r6
    when: ad.spend >
    emit: {type: t}
`, "rules.yaml:4:20: rule r6: when: unexpected token EOF"},
		{"emit value", `
rules:
  - id: r7
    when: ad.spend > 1
    emit: {type: t, values: [ctr, w1h.nope]}
`, "rules.yaml:5:39: rule r7: emit value \"w1h.nope\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compile(t, tc.src)
			if err == nil {
				t.Fatal("compiled; want an error")
			}
			first := strings.SplitN(err.Error(), "\n", 2)[0]
			if !strings.Contains(first, tc.want) {
				t.Fatalf("error:\n  %s\nwant it to contain:\n  %s", first, tc.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.RuleID == "" {
				t.Fatalf("error %v does not carry a *config.Error with the rule id", err)
			}
		})
	}
}

// TestExpressionSizeCapped: a huge expression is refused at load, so no rule
// file can make a node evaluate something unbounded.
func TestExpressionSizeCapped(t *testing.T) {
	big := strings.Repeat("1+", rules.MaxNodes) + "1 > 0" // within MaxSource
	_, err := compile(t, "rules:\n  - id: big\n    when: "+big+"\n    emit: {type: t}\n")
	if err == nil || !strings.Contains(err.Error(), "exceeds maximum allowed nodes") {
		t.Fatalf("err = %v, want the node limit", err)
	}
}

// TestMemoryBudget: an expression that allocates without bound fails at run
// time as a counted rule error, and the other rules still run.
func TestMemoryBudget(t *testing.T) {
	rs, err := compile(t, `
rules:
  - id: hog
    when: len(1..10000000) > 0
    emit: {type: t}
  - id: fine
    when: true
    emit: {type: ok}
`)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Impressions: 1}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if len(res.Errors) != 1 || res.Errors[0].RuleID != "hog" || !strings.Contains(res.Errors[0].Err, "memory budget") {
		t.Fatalf("errors = %+v, want hog over its memory budget", res.Errors)
	}
	if len(res.Decisions) != 1 || res.Decisions[0].RuleID != "fine" {
		t.Fatalf("decisions = %+v, want fine", res.Decisions)
	}
}

// TestPriorityThenFileOrder.
func TestPriorityThenFileOrder(t *testing.T) {
	rs, err := compile(t, `
rules:
  - {id: c, priority: 2, when: "true", emit: {type: t}}
  - {id: a, when: "true", emit: {type: t}}
  - {id: b, priority: 2, when: "true", emit: {type: t}}
  - {id: d, priority: -1, when: "true", emit: {type: t}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rs.RuleIDs(), " "); got != "d a c b" {
		t.Fatalf("order %q, want d a c b", got)
	}
}

// TestFlagsAndEnabled: enabled_by a false flag and enabled: false switch a
// rule off; flags read as flags.x.
func TestFlagsAndEnabled(t *testing.T) {
	rs, err := compile(t, `
feature_flags: {on: true, off: false}
rules:
  - {id: by-off, enabled_by: off, when: "true", emit: {type: t}}
  - {id: disabled, enabled: false, when: "true", emit: {type: t}}
  - {id: by-on, enabled_by: on, when: "flags.on && !flags.off", emit: {type: t}}
`)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x"}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if len(res.Decisions) != 1 || res.Decisions[0].RuleID != "by-on" {
		t.Fatalf("decisions = %+v, want only by-on", res.Decisions)
	}
}

// TestDefaultRules loads the shipped rule set and the predecessor's config.
func TestDefaultRules(t *testing.T) {
	for _, path := range []string{"../examples/rules.yaml", "../config/testdata/learning_config.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := config.Load(path, data, config.Options{})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		rs, err := rules.Compile(doc, 1)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ids := rs.RuleIDs(); len(ids) == 0 || ids[0] != "winner" {
			t.Fatalf("%s: rules %v, want winner first", path, ids)
		}
		g := rs.Guards()
		if g.MaxPerHour != 15 || g.MaxPerDay != 100 || g.MaxChangePct != 20 || g.VelocityMS != 6*3600_000 ||
			g.JitterMinMS != 3000 || g.JitterMaxMS != 18000 || g.VariancePct != 3 || !g.Enabled {
			t.Fatalf("%s: guards %+v, want the predecessor's safe executor", path, g)
		}
	}
}

// TestWinnerSemantics checks S6 on the default rule set: thresholds are
// strict, minimums inclusive, and require_both switches or to and.
func TestWinnerSemantics(t *testing.T) {
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		both           bool
		imp, clicks    int64
		spend, revenue float64
		hours          int64
		want           bool
	}{
		{"ctr above", false, 1000, 31, 10, 0, 24, true},
		{"ctr exactly at threshold", false, 1000, 30, 10, 0, 24, false},
		{"roas above", false, 1000, 0, 10, 30.01, 24, true},
		{"roas exactly 3", false, 1000, 0, 10, 30, 24, false},
		{"999 impressions", false, 999, 100, 10, 100, 24, false},
		{"23 hours", false, 5000, 500, 10, 100, 23, false},
		{"both needed, one met", true, 1000, 31, 10, 0, 24, false},
		{"both needed, both met", true, 1000, 31, 10, 31, 24, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := string(data)
			if tc.both {
				src = strings.Replace(src, "require_both: false", "require_both: true", 1)
			}
			rs, err := compile(t, src)
			if err != nil {
				t.Fatal(err)
			}
			var st rules.AdState
			ev := rules.Event{EventID: "e1", TS: 1_000_000_000_000, AccountID: "a", AdID: "x", CreatedAt: 1_000_000_000_000 - tc.hours*3600_000,
				Impressions: tc.imp, Clicks: tc.clicks, Spend: tc.spend, Revenue: tc.revenue}
			st.Apply(&ev, rules.IDHash(ev.EventID), rs.KeepMS(), rs.HorizonMS())
			var res rules.Result
			rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
			got := len(res.Decisions) == 1 && res.Decisions[0].Type == "rag_index_winner"
			if got != tc.want {
				t.Fatalf("winner = %v, want %v (decisions %+v)", got, tc.want, res.Decisions)
			}
		})
	}
}

// TestDecisionIDsDeterministic: the same input and rule set give the same
// ids; another rule set gives others.
func TestDecisionIDsDeterministic(t *testing.T) {
	src := "rules:\n  - {id: r, when: \"true\", emit: {type: t}}\n"
	ids := func(src string) string {
		rs, err := compile(t, src)
		if err != nil {
			t.Fatal(err)
		}
		var st rules.AdState
		ev := rules.Event{EventID: "e", TS: 5, AccountID: "a", AdID: "x"}
		st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
		var res rules.Result
		rs.NewEvaluator().Eval(&st, &ev, rules.Input{Topic: "t", Offset: 3}, &res)
		return res.Decisions[0].DecisionID
	}
	a, b := ids(src), ids(src)
	c := ids(strings.Replace(src, "type: t", "type: u", 1))
	if a != b || a == c || len(a) != 32 {
		t.Fatalf("ids %q %q %q: want the first two equal, the third different, 32 hex digits", a, b, c)
	}
}

func TestDecodeTimeForms(t *testing.T) {
	var d rules.Decoder
	var ev rules.Event
	for _, ts := range []string{`"2026-11-02T10:00:00Z"`, `"2026-11-02T11:00:00+01:00"`, `"2026-11-02T10:00:00.000Z"`, `1793613600000`, `"1793613600000"`} {
		line := `{"event_id":"e","ts":` + ts + `,"account_id":"a","ad_id":"x","impressions":1,"clicks":0,"spend":0}`
		if err := d.Decode([]byte(line), &ev); err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		if ev.TS != 1793613600000 {
			t.Fatalf("%s: ts %d", ts, ev.TS)
		}
	}
	bom := "\xEF\xBB\xBF" + `{"event_id":"e","ts":1,"account_id":"a","ad_id":"x","impressions":1,"clicks":0,"spend":0}`
	if err := d.Decode([]byte(bom), &ev); err != nil {
		t.Fatalf("a line starting with a byte-order mark: %v", err)
	}
	if err := d.Decode(bytes.Repeat([]byte("x"), 10), &ev); err == nil {
		t.Fatal("garbage decoded")
	}
}

// TestLateEventWindows: an event accepted late sees whole windows: the
// buckets it reaches are kept (S3).
func TestLateEventWindows(t *testing.T) {
	rs, err := compile(t, `
windows: [24h, 7d]
rules:
  - {id: r, when: "true", emit: {type: t, values: [w24h.impressions]}}
`)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	e := rs.NewEvaluator()
	h := int64(3_600_000)
	base := int64(1_800_000_000_000) / h * h
	for i := range 72 {
		ev := rules.Event{EventID: fmt.Sprint("h", i), TS: base + int64(i)*h, AccountID: "a", AdID: "x", Impressions: 1}
		st.Apply(&ev, rules.IDHash(ev.EventID), rs.KeepMS(), rs.HorizonMS())
	}
	// Late, at h50:30: (h26:30, h50:30] holds h27..h50, 24 events, plus itself.
	late := rules.Event{EventID: "late", TS: base + 50*h + h/2, AccountID: "a", AdID: "x", Impressions: 1000}
	if st.TooLate(&late, rs.HorizonMS()) {
		t.Fatal("a 21-hour-late event refused")
	}
	st.Apply(&late, rules.IDHash("late"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	e.Eval(&st, &late, rules.Input{}, &res)
	if got := res.Decisions[0].Values["w24h.impressions"]; got != 1024 {
		t.Fatalf("w24h.impressions = %v, want 1024", got)
	}
}

// TestTimeRange: epoch numbers past year 9999 (microseconds by mistake) are
// refused, not applied.
func TestTimeRange(t *testing.T) {
	var d rules.Decoder
	var ev rules.Event
	for _, ts := range []string{`1767229200000000`, `"1767229200000000"`} {
		line := `{"event_id":"e","ts":` + ts + `,"account_id":"a","ad_id":"x","impressions":1,"clicks":0,"spend":0}`
		if err := d.Decode([]byte(line), &ev); err == nil {
			t.Fatalf("ts %s accepted", ts)
		}
	}
}
