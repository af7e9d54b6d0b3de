package rules_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// Issue 11: every input surface of the rules package is bounded by a
// documented limit, checked before the expensive work. The limits are
// written out here as numbers, as docs/rules.md and docs/events.md state
// them.

// docWith returns a document of one rule, built without YAML (so without
// the config package's own size limits in the way).
func docWith(id, when string, values ...string) *config.Document {
	doc := &config.Document{
		Name: "limits", Windows: config.DefaultWindows(),
		Rules: []config.Rule{{ID: id, When: when, Emit: &config.Emit{Type: "t", Values: values}}},
	}
	doc.Defaults()
	return doc
}

func nested(open, close string, depth int, inner string) string {
	return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
}

// TestExpressionLimits (row 1): a when of 524,248 nested parentheses (a
// 1 MiB rules file) overflowed the stack in expr's parser; the source's
// length and bracket depth are checked before expr sees it.
func TestExpressionLimits(t *testing.T) {
	for _, tc := range []struct {
		name, when string
		values     []string
		want       string // "" compiles
	}{
		{"524,248 parentheses", nested("(", ")", 524248, "true"), nil, "1048500 bytes long; at most 16384"},
		{"5,000 parentheses", nested("(", ")", 5000, "true"), nil, "more than 64 deep"},
		{"65 parentheses", nested("(", ")", 65, "true"), nil, "more than 64 deep"},
		{"64 parentheses", nested("(", ")", 64, "true"), nil, ""},
		{"arrays", "len(" + nested("[", "]", 1000, "") + ") > 0", nil, "more than 64 deep"},
		{"maps and closures", "len(" + nested("{a: ", "}", 100, "1") + ") > 0", nil, "more than 64 deep"},
		{"brackets in strings do not count", `event.ad_id != "` + strings.Repeat("(", 1000) + `" && event.ad_id != '` + strings.Repeat("[", 1000) + `'`, nil, ""},
		{"nor in comments", "/* " + strings.Repeat("(", 100) + " */ true // " + strings.Repeat("{", 100), nil, ""},
		{"16 KiB", "ad.clicks >= 0" + strings.Repeat(" ", 16<<10-len("ad.clicks >= 0")), nil, ""},
		{"over 16 KiB", "ad.clicks >= 0" + strings.Repeat(" ", 16<<10), nil, "16398 bytes long; at most 16384"},
		{"an emit value", "true", []string{nested("(", ")", 524248, "1")}, "1048497 bytes long"},
		{"a deep emit value", "true", []string{nested("(", ")", 65, "1")}, "more than 64 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.Compile(docWith("deep", tc.when, tc.values...), 1)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *config.Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) || ce.RuleID != "deep" {
				t.Fatalf("err = %v, want a config error of rule deep saying %q", err, tc.want)
			}
		})
	}
}

// TestExpressionLimitsPosition: the error points at the bracket that goes
// too deep, as FILE:LINE:COL with the rule id, like every compile error.
func TestExpressionLimitsPosition(t *testing.T) {
	_, err := compile(t, "rules:\n  - id: deep\n    when: ad.clicks > 0 && "+nested("(", ")", 70, "true")+"\n    emit: {type: t}\n")
	// "    when: ad.clicks > 0 && " is 27 columns: the 65th ( is at 28+64.
	want := "rules.yaml:3:92: rule deep: when: brackets nest more than 64 deep"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

// TestStringBudget (row 7): string-building builtins and + on strings check
// what they would allocate against a byte budget per evaluation before
// allocating, so a rule that passes check cannot run a node out of memory.
// Each rule below is a counted rule error, and the evaluation allocates
// less than 8 MiB, most of it what expr's MemoryBudget allows (before:
// 10 MiB to 100 GB).
func TestStringBudget(t *testing.T) {
	for _, when := range []string{
		`len(repeat(repeat("x", 99999), 1000000)) > 0`, // the rule
		`len(repeat(repeat("x", 1000), 20000)) > 0`,
		`let s = repeat("x", 60000); let a = s + s; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; let g = f + f; let h = g + g; len(h) > 0`,
		`let s = repeat("x", 1000); len(join(map(1..40000, s), "")) > 0`,
		`let s = repeat("x", 1000); len(join(map(1..40000, s))) > 0`,
		`let s = repeat("a", 50000); len(replace(replace(replace(s, "a", "aaaaaaaaaa"), "a", "aaaaaaaaaa"), "a", "aaaaaaaaaa")) > 0`,
		`let s = repeat("x", 1000); len(toJSON(map(1..40000, s))) > 0`,
		`let s = repeat("x", 1000); len(string(map(1..40000, s))) > 0`,
		`let s = repeat("x", 90000); len(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(toBase64(s)))))))))))))))) > 0`,
		`let s = repeat("x", 90000); ` + strings.Repeat(`len(split(s, "")) + len(splitAfter(s, "")) + `, 5) + `0 > 0`,
		`let s = repeat("x", 90000); ` + strings.Repeat("len(upper(s)) + len(lower(s)) + ", 120) + `0 > 0`,
		`let a = 1..90000; len(concat(a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a)) > 0`,
		`let a = 1..90000; len(flatten([a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a])) > 0`,
		`let s = repeat("x", 60000); let a = [s, s]; let b = [a, a]; let c = [b, b]; let d = [c, c]; let e = [d, d]; let f = [e, e]; let g = [f, f]; let h = [g, g]; len(toJSON(h)) > 0`,
	} {
		t.Run(when[:min(len(when), 60)], func(t *testing.T) {
			rs, err := rules.Compile(docWith("hog", when), 1)
			if err != nil {
				t.Fatal(err)
			}
			var st rules.AdState
			ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Impressions: 1}
			st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
			e := rs.NewEvaluator()
			var res rules.Result
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			e.Eval(&st, &ev, rules.Input{}, &res)
			runtime.ReadMemStats(&after)
			if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Err, "budget") {
				t.Fatalf("errors = %+v, decisions %d: want one over its budget", res.Errors, len(res.Decisions))
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
				t.Fatalf("the evaluation allocated %d bytes", n)
			}
		})
	}
}

// TestStringFunctions: within the budget, the budgeted functions and + on
// strings give what expr's own give, and type errors stay compile errors.
func TestStringFunctions(t *testing.T) {
	doc := docWith("s", `
		repeat("ab", 3) == "ababab" && ("ab" | repeat(2)) == "abab" &&
		event.ad_id + "_" + event.account_id == "x_a" &&
		join(["a", "b"], ",") == "a,b" && join(["a", "b"]) == "ab" && join(params.list, "-") == "p-q" &&
		params.list[0] + "!" == "p!" && params.list[0] + params.list[1] == "pq" && params.n + 1 == 3 &&
		upper("abc") == "ABC" && lower("ABC") == "abc" &&
		replace("aXbX", "X", "yy") == "ayybyy" && replace("aXbX", "X", "y", 1) == "aybX" &&
		split("a,b,c", ",") == ["a", "b", "c"] && split("a,b,c", ",", 2) == ["a", "b,c"] &&
		splitAfter("a,b", ",") == ["a,", "b"] &&
		toJSON([1, "x"]) == "[\n  1,\n  \"x\"\n]" && toJSON({a: 1.5}) == "{\n  \"a\": 1.5\n}" &&
		string(1) == "1" && string([1, 2]) == "[1 2]" && string("s") == "s" &&
		toBase64("hi") == "aGk=" && fromBase64("aGk=") == "hi" &&
		concat([1], [2, 3]) == [1, 2, 3] && flatten([[1], [2, [3]]]) == [1, 2, 3] &&
		len(toJSON(ad)) > 0 && len(string(event)) > 0 && len(string(date("2026-01-01"))) > 0 &&
		1 + 2 == 3 && 1.5 + 2 == 3.5`)
	doc.Params = map[string]any{"list": []any{"p", "q"}, "n": 2}
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Impressions: 1}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if len(res.Errors) > 0 || len(res.Decisions) != 1 {
		t.Fatalf("errors %+v, decisions %d: want the rule to fire", res.Errors, len(res.Decisions))
	}
	for _, when := range []string{
		`repeat(1, 2) == ""`, `upper(1) == ""`, `len(join(1)) > 0`, `"a" + 1 == "a1"`,
		`len(concat(1, [2])) > 0`, `len(replace("a", "b")) > 0`, `len(toBase64(1)) > 0`,
	} {
		if _, err := rules.Compile(docWith("s", when), 1); err == nil {
			t.Errorf("%s compiled", when)
		}
	}
}

// TestDecisionsAlwaysWritable: whatever its values and explain hold, a
// decision can be written as JSON and fits a Kafka record with room to
// spare. Before, a value holding an infinity or a map of groupBy could not
// be written (json: unsupported value: +Inf), which stopped the node, and
// values or explain lines of many kilobytes each made a record larger than
// the broker takes.
func TestDecisionsAlwaysWritable(t *testing.T) {
	big := `repeat("x", 90000)`
	when := strings.Repeat(`event.ad_id != params.s && `, 240) + `true`
	doc := docWith("r", when, "[1e308 * 10]", "groupBy([1, 2], # > 1)", "ad", "1..90000",
		big, big+` + ""`, `upper(`+big+`)`, `[`+big+`]`, `{a: `+big+`}`, "ctr", "1.5", `"short"`)
	doc.Params = map[string]any{"s": strings.Repeat("s", 90000)}
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	var st rules.AdState
	ev := rules.Event{EventID: "e", TS: 1, AccountID: "a", AdID: "x", Impressions: 1}
	st.Apply(&ev, rules.IDHash("e"), rs.KeepMS(), rs.HorizonMS())
	var res rules.Result
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if len(res.Decisions) != 1 {
		t.Fatalf("decisions %d, errors %+v", len(res.Decisions), res.Errors)
	}
	d := res.Decisions[0]
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("the decision cannot be written: %v", err)
	}
	if len(b) > 256<<10 {
		t.Fatalf("the decision is %d bytes", len(b))
	}
	for name, want := range map[string]string{"ctr": "0", "1.5": "1.5", `"short"`: "short", "[1e308 * 10]": "error: "} {
		if got := fmt.Sprint(d.Values[name]); !strings.HasPrefix(got, want) {
			t.Errorf("value %s = %q, want %q", name, got, want)
		}
	}
	if last := d.Explain[len(d.Explain)-1]; !strings.Contains(last, "left out") {
		t.Errorf("explain ends with %.100q, want a line saying what was left out", last)
	}

	// Many values with long names: the keys count too.
	var values []string
	for i := range 300 {
		values = append(values, fmt.Sprint(i)+strings.Repeat(" ", 1000))
	}
	rs, err = rules.Compile(docWith("r", "true", values...), 1)
	if err != nil {
		t.Fatal(err)
	}
	res = rules.Result{}
	rs.NewEvaluator().Eval(&st, &ev, rules.Input{}, &res)
	if b, err = json.Marshal(res.Decisions[0]); err != nil || len(b) > 256<<10 {
		t.Fatalf("a decision of %d bytes (%v)", len(b), err)
	}
	if v := fmt.Sprint(res.Decisions[0].Values["..."]); !strings.Contains(v, "left out") {
		t.Errorf(`values["..."] = %q, want what was left out`, v)
	}
}
