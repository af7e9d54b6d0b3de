package rules_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// guardSet compiles a rule set with the given guards block (YAML, indented
// under guards:) and one trivial rule.
func guardSet(t *testing.T, guards string) *rules.RuleSet {
	t.Helper()
	src := "name: g\nrules:\n  - id: r\n    when: ad.impressions > 0\n    emit: {type: t}\nguards:\n" + guards
	doc, err := config.Load("guards.yaml", []byte(src), config.Options{})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	rs, err := rules.Compile(doc, 7)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return rs
}

const defaultGuards = `  rate_limit: {max_per_hour: 15, max_per_day: 100}
  budget_velocity: {max_change_pct: 20, window: 6h}
  jitter: {min: 3s, max: 18s}
  fuzzy_budget: {variance_pct: 3}
`

const (
	t0   = int64(1_700_000_000_000)
	hour = int64(3_600_000)
	min_ = int64(60_000)
)

func money(v float64) *float64 { return &v }

func pause(id string, ts int64) *rules.Proposal {
	return &rules.Proposal{ActionID: id, TS: rules.Time(ts), AccountID: "acc", AdID: "ad-" + id, Type: "pause", Source: "external"}
}

func budget(id, ad string, ts int64, old, new float64) *rules.Proposal {
	return &rules.Proposal{ActionID: id, TS: rules.Time(ts), AccountID: "acc", AdID: ad, Type: "budget_change",
		OldBudget: money(old), NewBudget: money(new), Source: "external"}
}

func verdict(v rules.Verdict) string {
	if v.Reason != "" {
		return v.Status + "/" + v.Reason
	}
	return v.Status
}

func TestRateLimitHourBoundary(t *testing.T) {
	rs := guardSet(t, defaultGuards)
	var st rules.AccountState
	for i := range 15 {
		v := rs.Check(pause(fmt.Sprint(i), t0+int64(i)*min_), &st)
		if v.Status != "approved" {
			t.Fatalf("action %d: %s, want approved", i+1, verdict(v))
		}
	}
	// The 16th within the hour is rejected, and does not count.
	if v := rs.Check(pause("16", t0+15*min_), &st); verdict(v) != "rejected/rate_limit_hour" {
		t.Fatalf("16th: %s", verdict(v))
	}
	// Exactly one hour after the first, the first is outside (t-1h, t]: one slot frees.
	if v := rs.Check(pause("17", t0+hour), &st); v.Status != "approved" {
		t.Fatalf("one hour after the first: %s, want approved", verdict(v))
	}
	// One millisecond earlier than that, the window would still be full.
	var st2 rules.AccountState
	for i := range 15 {
		rs.Check(pause(fmt.Sprint(i), t0+int64(i)*min_), &st2)
	}
	if v := rs.Check(pause("x", t0+hour-1), &st2); verdict(v) != "rejected/rate_limit_hour" {
		t.Fatalf("1ms before the hour: %s", verdict(v))
	}
}

func TestRateLimitDay(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {max_per_hour: 100, max_per_day: 3}\n")
	var st rules.AccountState
	for i := range 3 {
		if v := rs.Check(pause(fmt.Sprint(i), t0+int64(i)*2*hour), &st); v.Status != "approved" {
			t.Fatalf("action %d: %s", i, verdict(v))
		}
	}
	if v := rs.Check(pause("3", t0+23*hour), &st); verdict(v) != "rejected/rate_limit_day" {
		t.Fatalf("4th within a day: %s", verdict(v))
	}
	// 24h after the first: it leaves the window.
	if v := rs.Check(pause("4", t0+24*hour), &st); v.Status != "approved" {
		t.Fatalf("24h after the first: %s", verdict(v))
	}
}

func TestRejectedDoNotCount(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {max_per_hour: 2, max_per_day: 100}\n  budget_velocity: {max_change_pct: 20, window: 6h}\n")
	var st rules.AccountState
	// A rejected budget change (velocity) does not use a rate-limit slot.
	if v := rs.Check(budget("a", "ad1", t0, 100, 200), &st); verdict(v) != "rejected/budget_velocity" {
		t.Fatalf("big change: %s", verdict(v))
	}
	for i := range 2 {
		if v := rs.Check(pause(fmt.Sprint(i), t0+int64(i+1)*min_), &st); v.Status != "approved" {
			t.Fatalf("pause %d: %s", i, verdict(v))
		}
	}
	if v := rs.Check(pause("3", t0+3*min_), &st); verdict(v) != "rejected/rate_limit_hour" {
		t.Fatalf("third: %s", verdict(v))
	}
}

func TestVelocity(t *testing.T) {
	rs := guardSet(t, defaultGuards)
	var st rules.AccountState
	steps := []struct {
		ts       int64
		old, new float64
		want     string
	}{
		{t0, 100, 110, "approved"},                          // +10% of base 100
		{t0 + hour, 110, 118, "approved"},                   // +18% of base 100
		{t0 + 2*hour, 118, 125, "rejected/budget_velocity"}, // +25% of base 100: small steps add up
		{t0 + 3*hour, 118, 120, "approved"},                 // exactly +20%: allowed
		{t0 + 4*hour, 120, 95, "approved"},                  // back down: -5% of base 100
		{t0 + 5*hour, 95, 79, "rejected/budget_velocity"},   // down too far: -21% of base 100
		{t0 + 6*hour, 95, 131, "approved"},                  // t0 left (t-6h, t]: the base is now 110, +19%
	}
	for i, s := range steps {
		v := rs.Check(budget(fmt.Sprint(i), "ad1", s.ts, s.old, s.new), &st)
		if verdict(v) != s.want {
			t.Errorf("step %d (%v -> %v): %s, want %s", i, s.old, s.new, verdict(v), s.want)
		}
	}
	// Another ad has its own base.
	if v := rs.Check(budget("o", "ad2", t0+6*hour, 50, 60), &st); v.Status != "approved" {
		t.Errorf("other ad: %s", verdict(v))
	}
}

func TestVelocityAdsetOnly(t *testing.T) {
	rs := guardSet(t, defaultGuards)
	var st rules.AccountState
	p := func(id string, ts int64, old, new float64) *rules.Proposal {
		return &rules.Proposal{ActionID: id, TS: rules.Time(ts), AccountID: "acc", AdsetID: "set1",
			Type: "budget_change", OldBudget: money(old), NewBudget: money(new)}
	}
	if v := rs.Check(p("1", t0, 200, 230), &st); v.Status != "approved" {
		t.Fatalf("first: %s", verdict(v))
	}
	if v := rs.Check(p("2", t0+hour, 230, 250), &st); verdict(v) != "rejected/budget_velocity" {
		t.Fatalf("adset +25%% of its base: %s", verdict(v))
	}
	// An ad that happens to share the name is another entity.
	if v := rs.Check(budget("3", "set1", t0+hour, 230, 250), &st); v.Status != "approved" {
		t.Fatalf("ad named like the adset: %s", verdict(v))
	}
}

func TestFuzzAndJitterBands(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {max_per_hour: 100000, max_per_day: 100000}\n  budget_velocity: {max_change_pct: 50, window: 6h}\n  jitter: {min: 3s, max: 18s}\n  fuzzy_budget: {variance_pct: 3}\n")
	var st rules.AccountState
	seenLow, seenHigh := false, false
	for i := range 2000 {
		ts := t0 + int64(i)*1000
		p := budget(fmt.Sprint("a", i), fmt.Sprint("ad", i), ts, 100, 110)
		v := rs.Check(p, &st)
		if v.Status != "approved" {
			t.Fatalf("%d: %s", i, verdict(v))
		}
		f := *v.FinalBudget
		if f < 110*0.97-1e-9 || f > 110*1.03+1e-9 {
			t.Fatalf("%d: final budget %v outside 110 ± 3%%", i, f)
		}
		seenLow, seenHigh = seenLow || f < 108, seenHigh || f > 112
		j := int64(*v.ExecuteAfter) - ts
		if j < 3000 || j > 18000 {
			t.Fatalf("%d: jitter %dms outside [3s, 18s]", i, j)
		}
		// The same proposal under the same rule set gets the same values.
		var other rules.AccountState
		if w := rs.Check(p, &other); *w.FinalBudget != f || *w.ExecuteAfter != *v.ExecuteAfter {
			t.Fatalf("%d: not deterministic", i)
		}
	}
	if !seenLow || !seenHigh {
		t.Errorf("fuzz does not spread over its band (low %v, high %v)", seenLow, seenHigh)
	}
}

func TestPauseHasNoBudget(t *testing.T) {
	rs := guardSet(t, defaultGuards)
	var st rules.AccountState
	v := rs.Check(pause("p", t0), &st)
	if v.Status != "approved" || v.FinalBudget != nil || v.ExecuteAfter == nil {
		t.Fatalf("pause: %+v", v)
	}
	if v.RulesetVersion != 7 || v.RulesetSHA256 != rs.SHA256 {
		t.Fatalf("verdict carries version %d sha %q", v.RulesetVersion, v.RulesetSHA256)
	}
}

func TestDisabled(t *testing.T) {
	rs := guardSet(t, "  enabled: false\n")
	var st rules.AccountState
	if v := rs.Check(pause("p", t0), &st); verdict(v) != "rejected/disabled" {
		t.Fatalf("disabled executor: %s", verdict(v))
	}
	if len(st.Approved) != 0 {
		t.Fatal("a rejected proposal was recorded")
	}
}

func TestOutOfOrder(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {max_per_hour: 2, max_per_day: 100}\n")
	var st rules.AccountState
	// Two approvals at t0+30m and t0+40m, then one at t0 (late): the window
	// (t0-1h, t0] holds none of them, so it is approved.
	for i, ts := range []int64{t0 + 30*min_, t0 + 40*min_, t0} {
		if v := rs.Check(pause(fmt.Sprint(i), ts), &st); v.Status != "approved" {
			t.Fatalf("%d: %s", i, verdict(v))
		}
	}
	// At t0+45m the window (t0-15m, t0+45m] holds all three.
	if v := rs.Check(pause("3", t0+45*min_), &st); verdict(v) != "rejected/rate_limit_hour" {
		t.Fatalf("after: %s", verdict(v))
	}
}

func TestPerAdScope(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {per: ad, max_per_hour: 1, max_per_day: 10}\n")
	var st rules.AccountState
	if v := rs.Check(budget("1", "a", t0, 10, 11), &st); v.Status != "approved" {
		t.Fatal(verdict(v))
	}
	if v := rs.Check(budget("2", "b", t0+1, 10, 11), &st); v.Status != "approved" {
		t.Fatalf("another ad has its own quota: %s", verdict(v))
	}
	if v := rs.Check(budget("3", "a", t0+2, 11, 11.5), &st); verdict(v) != "rejected/rate_limit_hour" {
		t.Fatalf("same ad: %s", verdict(v))
	}
}

// TestPerAdScopeAdsets: with per-ad limits, proposals that name only an
// adset are counted per adset, not all together.
func TestPerAdScopeAdsets(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {per: ad, max_per_hour: 1, max_per_day: 10}\n")
	var st rules.AccountState
	p := func(id, set string, ts int64) *rules.Proposal {
		return &rules.Proposal{ActionID: id, TS: rules.Time(ts), AccountID: "acc", AdsetID: set, Type: "pause"}
	}
	if v := rs.Check(p("1", "set1", t0), &st); v.Status != "approved" {
		t.Fatal(verdict(v))
	}
	if v := rs.Check(p("2", "set2", t0+1), &st); v.Status != "approved" {
		t.Fatalf("another adset has its own quota: %s", verdict(v))
	}
	if v := rs.Check(p("3", "set1", t0+2), &st); verdict(v) != "rejected/rate_limit_hour" {
		t.Fatalf("same adset: %s", verdict(v))
	}
}

// TestLateProposalSeesHistory: a proposal hours late is judged against
// every approval its window reaches, even after later approvals moved the
// account's newest time on.
func TestLateProposalSeesHistory(t *testing.T) {
	rs := guardSet(t, "  rate_limit: {max_per_hour: 10, max_per_day: 1}\n")
	var st rules.AccountState
	day := 24 * hour
	if v := rs.Check(pause("p1", t0+hour), &st); v.Status != "approved" {
		t.Fatal(verdict(v))
	}
	if v := rs.Check(pause("p2", t0+day+12*hour), &st); v.Status != "approved" {
		t.Fatal(verdict(v))
	}
	// 23.5h after p1: p1 is inside (t-24h, t].
	if v := rs.Check(pause("p3", t0+day+hour/2), &st); verdict(v) != "rejected/rate_limit_day" {
		t.Fatalf("late proposal: %s, want rejected/rate_limit_day", verdict(v))
	}
}

// TestTinyBudgetFuzz: a band narrower than a cent leaves the budget as it is.
func TestTinyBudgetFuzz(t *testing.T) {
	rs := guardSet(t, "  budget_velocity: {max_change_pct: 100, window: 6h}\n")
	for i := range 50 {
		var st rules.AccountState
		v := rs.Check(budget(fmt.Sprint(i), "ad", t0, 0.01, 0.015), &st)
		if v.Status != "approved" || *v.FinalBudget != 0.015 {
			t.Fatalf("%d: %s final %v, want 0.015", i, verdict(v), *v.FinalBudget)
		}
	}
}

// TestBudgetScalingFinite (row 6): a budget change scales the ad's budget
// by change_pct; a scaled budget past 1e12 (or not finite) is a counted
// rule error, never a proposal that cannot be written.
func TestBudgetScalingFinite(t *testing.T) {
	rs, err := compile(t, `
rules:
  - {id: huge, when: "true", action: {type: budget_change, change_pct: 1e300}}
  - {id: ok, when: "true", action: {type: budget_change, change_pct: -20}}
`)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Budget: 1e12, HasBudget: true}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if _, err := json.Marshal(res.Proposals); err != nil {
		t.Fatalf("proposals cannot be written: %v", err)
	}
	if len(res.Errors) != 1 || res.Errors[0].RuleID != "huge" || !strings.Contains(res.Errors[0].Err, "1e+12") {
		t.Fatalf("errors %+v, want rule huge's new budget refused", res.Errors)
	}
	if len(res.Proposals) != 1 || res.Proposals[0].Source != "ok" {
		t.Fatalf("proposals %+v, want only ok's", res.Proposals)
	}
}

// TestDecodeProposalLimits (rows 6, 11): a proposal's budgets are money
// (at most 1e12), its ids valid UTF-8 of at most 256 bytes, its ts a time
// the events accept; else a dead letter with a reason. Every verdict of
// an accepted proposal can be written.
func TestDecodeProposalLimits(t *testing.T) {
	base := `"action_id":"p1","ts":1793613600000,"account_id":"a","ad_id":"x","type":"budget_change"`
	long := strings.Repeat("i", 256)
	for _, tc := range []struct {
		name, rec string
		want      string // "" decodes
	}{
		{"budgets 1.7e308", `{` + base + `,"old_budget":1.7e308,"new_budget":1.7e308}`, "old_budget: money must be at most 1e+12, got 1.7e+308"},
		{"new budget 1e13", `{` + base + `,"old_budget":10,"new_budget":1e13}`, "new_budget: money must be at most 1e+12, got 1e+13"},
		{"budgets 1e12", `{` + base + `,"old_budget":1e12,"new_budget":1e12}`, ""},
		{"invalid UTF-8 action_id", `{"action_id":"p` + "\xff" + `","ts":1,"account_id":"a","ad_id":"x","type":"pause"}`, "action_id: must be valid UTF-8"},
		{"invalid UTF-8 account_id", `{"action_id":"p","ts":1,"account_id":"` + "\xc3" + `","ad_id":"x","type":"pause"}`, "account_id: must be valid UTF-8"},
		{"invalid UTF-8 ad_id", `{"action_id":"p","ts":1,"account_id":"a","ad_id":"x` + "\x80" + `","type":"pause"}`, "ad_id: must be valid UTF-8"},
		{"invalid UTF-8 adset_id", `{"action_id":"p","ts":1,"account_id":"a","adset_id":"` + "\xfe" + `","type":"pause"}`, "adset_id: must be valid UTF-8"},
		{"invalid UTF-8 campaign_id", `{"action_id":"p","ts":1,"account_id":"a","ad_id":"x","campaign_id":"` + "\xff" + `","type":"pause"}`, "campaign_id: must be valid UTF-8"},
		{"invalid UTF-8 type", `{"action_id":"p","ts":1,"account_id":"a","ad_id":"x","type":"pause` + "\xff" + `"}`, "type: must be valid UTF-8"},
		{"invalid UTF-8 source", `{"action_id":"p","ts":1,"account_id":"a","ad_id":"x","type":"pause","source":"` + "\xff" + `"}`, "source: must be valid UTF-8"},
		{"a lone surrogate", `{"action_id":"p\ud800","ts":1,"account_id":"a","ad_id":"x","type":"pause"}`, "action_id: must be valid UTF-8"},
		{"id of 256 bytes", `{"action_id":"` + long + `","ts":1,"account_id":"a","ad_id":"x","type":"pause"}`, ""},
		{"id of 257 bytes", `{"action_id":"p","ts":1,"account_id":"` + long + `x","ad_id":"x","type":"pause"}`, "account_id: must be at most 256 bytes, got 257"},
		{"ts past 9999", `{"action_id":"p","ts":9223372036854775807,"account_id":"a","ad_id":"x","type":"pause"}`, "not a valid proposal"},
		{"negative ts", `{"action_id":"p","ts":-5,"account_id":"a","ad_id":"x","type":"pause"}`, "not a valid proposal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := rules.DecodeProposal([]byte(tc.rec))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				rs := guardSet(t, defaultGuards)
				v := rs.Check(&p, &rules.AccountState{})
				if _, err := json.Marshal(v); err != nil {
					t.Fatalf("verdict %+v cannot be written: %v", v, err)
				}
				return
			}
			var de *rules.DecodeError
			if err == nil || !errors.As(err, &de) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a decode error %q", err, tc.want)
			}
		})
	}
}

// TestRuleIDsPassStage2: a rule's id and action type come back to stage 2
// as a proposal's source and type, so Compile holds them to a proposal's
// limits, not only config.Load (whose limit on ids is smaller): they are
// refused at load, not later as dead letters of the rule set's own output.
// An emit type is held to the same limits.
func TestRuleIDsPassStage2(t *testing.T) {
	long := docWith(strings.Repeat("r", 257), "true")
	long.Rules[0].Emit, long.Rules[0].Action = nil, &config.Action{Type: "pause"}
	if _, err := rules.Compile(long, 1); err == nil || !strings.Contains(err.Error(), "id: must be at most 256 bytes, got 257") {
		t.Errorf("err = %v, want the id refused", err)
	}
	_, err := compile(t, "rules:\n  - {id: r, when: \"true\", action: {type: \"pause\\x01\"}}\n")
	if err == nil || !strings.Contains(err.Error(), "action.type: must be valid UTF-8") {
		t.Errorf("err = %v, want the action type refused", err)
	}
	// A decision's type too, so that a decision stays small.
	_, err = compile(t, "rules:\n  - {id: r, when: \"true\", emit: {type: "+strings.Repeat("t", 257)+"}}\n")
	if err == nil || !strings.Contains(err.Error(), "emit.type: must be at most 256 bytes, got 257") {
		t.Errorf("err = %v, want the emit type refused", err)
	}
}
