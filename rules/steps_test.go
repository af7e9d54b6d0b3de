package rules_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// evalWhen compiles when as the only rule, evaluates it for one event and
// returns what came out and how long the evaluation took.
func evalWhen(t *testing.T, when string, values ...string) (rules.Result, time.Duration) {
	t.Helper()
	return evalDoc(t, docWith("r", when, values...))
}

func evalDoc(t *testing.T, doc *config.Document) (rules.Result, time.Duration) {
	t.Helper()
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Impressions: 1}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	e := rs.NewEvaluator()
	var res rules.Result
	start := time.Now()
	e.Eval(&st, &ev, rules.Input{}, &res)
	return res, time.Since(start)
}

// overBudget fails t unless res holds exactly one rule error, over the step
// budget.
func overBudget(t *testing.T, res rules.Result, took time.Duration) {
	t.Helper()
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Err, "step budget exceeded") {
		t.Fatalf("errors = %+v, decisions %d, after %v: want one over the step budget", res.Errors, len(res.Decisions), took)
	}
	t.Logf("%v: %s", took, res.Errors[0].Err)
}

// TestStepBudgetLoops (issue 11, "no rule file can hang a node"): expr
// charges its memory budget for a range once and nothing per iteration, so
// nested closures passed check and ran for minutes on every event (the
// issue's rule, 1..30000 nested twice, took 19 s). Every closure-taking
// builtin charges the steps of its loop before it runs; each rule below is
// a rule error at once.
func TestStepBudgetLoops(t *testing.T) {
	const x = "let x = 1..30000; "
	for _, when := range []string{
		x + "all(x, {all(x, true)})", // the rule
		"let x = 1..99999; all(x, {all(x, true)})",
		"let x = 1..1000; all(x, {all(x, {all(x, true)})})",
		"let x = 1..100; all(x, {all(x, {all(x, {all(x, {all(x, true)})})})})",
		// Each closure-taking builtin, run in full 30,000 times over 30,000.
		x + "all(x, {none(x, false)})",
		x + "all(x, {!any(x, false)})",
		x + "all(x, {!one(x, true)})",
		x + "all(x, {len(filter(x, false)) == 0})",
		x + "all(x, {count(x, true) > 0})",
		x + "let b = map(x, false); all(x, {count(b) == 0})",
		x + "all(x, {sum(x) > 0})",
		x + "all(x, {sum(x, 1) > 0})",
		x + "all(x, {find(x, false) == nil})",
		x + "all(x, {findIndex(x, false) == nil})",
		x + "all(x, {findLast(x, false) == nil})",
		x + "all(x, {findLastIndex(x, false) == nil})",
		x + "all(x, {reduce(x, #acc, 0) == 0})",
		x + "all(x, {len(groupBy(x, 1)) > 0})",
		// ... and outside: each loops over x with the loop above inside.
		x + "none(x, {!all(x, true)})",
		x + "any(x, {!all(x, true)})",
		x + "one(x, {all(x, true)})",
		x + "len(filter(x, {!all(x, true)})) == 0",
		x + "count(x, {!all(x, true)}) == 0",
		x + "sum(x, {all(x, true) ? 1 : 0}) > 0",
		x + "find(x, {!all(x, true)}) == nil",
		x + "findIndex(x, {!all(x, true)}) == nil",
		x + "findLast(x, {!all(x, true)}) == nil",
		x + "findLastIndex(x, {!all(x, true)}) == nil",
		x + "reduce(x, {all(x, true) ? 1 : 0}, 0) > 0",
		x + "let y = 1..30; len(map(y, {all(x, {all(x, true)})})) > 0",
		x + "let y = 1..30; len(groupBy(y, {all(x, {all(x, true)})})) > 0",
		x + "let y = 1..30; len(sortBy(y, {all(x, {all(x, true)}) ? 1 : 0})) > 0",
		// Through the pipe operator.
		x + "x | all(x | all(true))",
		// A closure of many nodes costs as much as many loops: one loop of
		// 40,000 over 1,001 nodes, 40 million, memory within its budget.
		"let x = 1..40000; len(map(x, {" + strings.Repeat("# + ", 500) + "0})) > 0",
	} {
		t.Run(when[:min(len(when), 70)], func(t *testing.T) {
			res, took := evalWhen(t, when)
			overBudget(t, res, took)
		})
	}
	// The rule, with the message docs/rules.md shows.
	res, _ := evalWhen(t, "let x = 1..30000; all(x, {all(x, true)})")
	want := "step budget exceeded: all over 30000 elements would take 30000 steps (1 an element), and 10000 of the 1000000 a rule may take per event are left (1:27)"
	if len(res.Errors) != 1 || res.Errors[0].Err != want {
		t.Errorf("errors = %+v, want %q", res.Errors, want)
	}
}

// TestStepBudgetPerRule: the budget is one rule's, for one event: its when,
// values and explain lines share it, and the next rule starts afresh.
func TestStepBudgetPerRule(t *testing.T) {
	loop := "all(1..30000, {# > 0 && # > 0 && # > 0 && # > 0 && # > 0})" // 30,000 × 19 nodes: 570,000 steps
	doc := docWith("a", loop, "1", loop)
	b := doc.Rules[0]
	b.ID = "b"
	doc.Rules = append(doc.Rules, b)
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Impressions: 1}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if len(res.Errors) != 0 || len(res.Decisions) != 2 {
		t.Fatalf("errors %+v, decisions %d: want both rules to fire", res.Errors, len(res.Decisions))
	}
	for _, d := range res.Decisions {
		if got := d.Values["1"]; got != 1 {
			t.Errorf("rule %s: value 1 = %v", d.RuleID, got)
		}
		if got, _ := d.Values[loop].(string); !strings.HasPrefix(got, "error: step budget exceeded: all over 30000 elements would take 570000 steps (19 an element), and 430000 ") {
			t.Errorf("rule %s: the value that loops again = %v, want it over the rule's budget", d.RuleID, d.Values[loop])
		}
		if e := d.Explain[0]; !strings.HasSuffix(e, " error") {
			t.Errorf("rule %s: explain %q, want an error: the when and the value took the budget", d.RuleID, e)
		}
	}
}

// TestStepBudgetWalks: the steps of a loop count its closure's nodes, but a
// node that walks an array or a string does as much work as a loop over it:
// each such operator and builtin charges the size of what it walks before
// it runs, inside a loop or not. Before, each rule below ran from 3 seconds
// to many minutes an event, within the budget of its loops (uniq is
// quadratic: uniq(1..99999) alone took minutes).
func TestStepBudgetWalks(t *testing.T) {
	const (
		x  = "let x = 1..30000; "
		xa = "let x = map(1..30000, #); "
		s  = `let s = repeat("x", 99999); `
	)
	for _, when := range []string{
		"len(uniq(1..99999)) > 0",
		x + "all(x, {# in x})",
		xa + "all(x, {# in x})",
		xa + "all(x, {x == x})",
		"let x = 1..50000; all(1..40000, {median(x) > 0})",
		"let x = 1..50000; all(1..40000, {mean(x) > 0})",
		"let x = 1..50000; all(1..40000, {max(x) > 0})",
		"let x = 1..50000; all(1..40000, {min(x, x) > 0})",
		"let x = 1..50000; all(1..40000, {len(uniq(x)) > 0})",
		"let a = map(1..30000, ''); all(1..30000, {join(a) == ''})",
		x + "let m = groupBy(x, #); all(x, {len(keys(m)) > 0})",
		x + "let m = groupBy(x, #); all(x, {len(values(m)) > 0})",
		x + "let m = groupBy(x, #); all(x, {len(toPairs(m)) > 0})",
		s + `all(1..99999, {not (s matches "x+y")})`,
		s + `all(1..99999, {len(s) > 0})`,
		`let j = toJSON(1..3000); all(1..90000, {len(fromJSON(j)) > 0})`,
		`all(1..99999, {not (params.s contains "y")})`,
		`all(1..99999, {params.s < params.t})`,
		`all(1..99999, {not (params.t startsWith params.s)})`,
		`all(1..99999, {indexOf(params.s, "y") < 0})`,
		`all(1..99999, {len(split(params.s, "y")) > 0})`,
		`all(1..99999, {len(trim(params.s, "y")) > 0})`,
		`all(1..99999, {!hasSuffix(params.t, params.s)})`,
	} {
		t.Run(when[:min(len(when), 70)], func(t *testing.T) {
			doc := docWith("r", when)
			doc.Params = map[string]any{"s": strings.Repeat("x", 1<<20), "t": strings.Repeat("x", 1<<20-1) + "y"}
			res, took := evalDoc(t, doc)
			overBudget(t, res, took)
		})
	}
}

// TestStepBudgetRealRules: rules like real ones, over a list of 10,000 ad
// ids in params, stay far within the budget.
func TestStepBudgetRealRules(t *testing.T) {
	ids := make([]any, 10000)
	for i := range ids {
		ids[i] = fmt.Sprintf("ad_%d", i)
	}
	for _, when := range []string{
		`event.ad_id in params.ids`,
		`any(params.ids, {# == event.ad_id})`,
		`event.ad_id matches "^ad_[0-9]+$" && event.ad_id startsWith "ad_"`,
		`count(params.thresholds, {ad.ctr >= #}) >= 2`,
		`len(filter(params.ids, {# startsWith "ad_99"})) == 111`,
		`all(params.thresholds, {any(params.thresholds, {# >= 0})}) && len(params.ids) == 10000`,
		`sum(map(params.thresholds, {# * 2})) > 0 && max(params.thresholds) < 1 && median(params.thresholds) > 0`,
		`indexOf(join(params.tags, ","), "video") >= 0 && "video" in params.tags`,
	} {
		t.Run(when, func(t *testing.T) {
			doc := docWith("r", when)
			doc.Params = map[string]any{"ids": ids, "thresholds": []any{0.01, 0.02, 0.05}, "tags": []any{"video", "brand"}}
			rs, err := rules.Compile(doc, 1)
			if err != nil {
				t.Fatal(err)
			}
			var st rules.AdState
			ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "ad_9999", Impressions: 100, Clicks: 3}
			st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
			var res rules.Result
			rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
			if len(res.Errors) != 0 || len(res.Decisions) != 1 {
				t.Fatalf("errors %+v, decisions %d: want the rule to fire", res.Errors, len(res.Decisions))
			}
		})
	}
}
