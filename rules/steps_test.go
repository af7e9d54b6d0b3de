package rules_test

import (
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/rules"
)

// evalWhen compiles when as the only rule, evaluates it for one event and
// returns what came out and how long the evaluation took.
func evalWhen(t *testing.T, when string, values ...string) (rules.Result, time.Duration) {
	t.Helper()
	rs, err := rules.Compile(docWith("r", when, values...), 1)
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
