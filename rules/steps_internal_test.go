package rules

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// TestStepsKeepResults: within the step budget, a program with its loops
// charged gives what the same program gives without: the same value, or
// the same error. The expressions cover every closure-taking builtin, the
// shapes expr's optimizer rewrites (which the patch turns off), nesting,
// the pipe operator, #index and #acc.
func TestStepsKeepResults(t *testing.T) {
	envT, err := envType(map[string]any{"list": []any{"a", "b", "c"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		"all(1..10, # > 0)", "all(1..10, # > 5)", "none(1..10, # > 10)", "any(1..10, # == 5)",
		"one(1..10, # == 5)", "one(1..10, # > 5)",
		"filter(1..20, # % 3 == 0)", "map(1..5, # * 2)", "map(1..5, #index)", "map([], #)",
		"count(1..10, # > 3)", "count([true, false, true])", "count(1..10, # > 3) > 2", "count(1..10, # > 3) > 0",
		"sum(1..100)", "sum(1..10, # * 2)", "sum(1..200000)", "reduce(1..200000, # + #acc)", "sum(5..1)", "all(1..0, false)", "sum([1, 2.5])", "sum(map(1..10, # * 2))", "sum([])",
		"find(1..10, # > 5)", "find(1..10, # > 50)", "findIndex(1..10, # > 5)", "findIndex(1..10, # > 50)",
		"findLast(1..10, # < 5)", "findLastIndex(1..10, # < 5)", "findLast([], true)",
		"groupBy(1..10, # % 3)", "groupBy([], #)", "sortBy([3, 1, 2], #)", "sortBy([3, 1, 2], #, 'desc')",
		"sortBy(map(1..5, {{n: 6 - #}}), .n)",
		"reduce(1..10, #acc + #)", "reduce(1..10, #acc + #, 100)", "reduce(1..5, #acc + #index, 0)", "reduce([], #acc)",
		"len(filter(1..20, # > 10))", "filter(1..20, # > 10)[0]", "first(filter(1..20, # > 10))",
		"last(filter(1..20, # > 10))", "map(filter(1..20, # > 15), # * 10)",
		"all(1..10, # > 0) && all(1..10, # < 11)", "any(1..10, # > 9) || any(1..10, # < 0)",
		"none(1..10, # > 10) && none(1..10, # < 0)",
		"1..10 | filter(# % 2 == 0) | map(# * #) | sum()",
		"let x = 1..30; all(x, {all(x, {# > 0})})", "let x = 1..10; map(x, {map(x, {# * 2})[#index]})",
		"map(1..3, {map(1..#, {#})})", "map([[1, 2], [3]], {sum(#)})", "filter([[1, 2], [3]], {any(#, # > 2)})",
		"map(1..3, # + ad.clicks)", "filter(params.list, # != 'b')", "map(params.list, # + '!')",
		"map(map(1..3, {{a: #}}), .a)", "find([{a: 1}, {a: 2}], .a == 2)?.a",
		"reduce(1..3, #acc)", "all(1..3, 1 / (# - 2) > 0)", "map(1..3, 10 / (# - 2))",
		"reduce([], #acc)", "sum(['a'])",
		// Operators and builtins that walk what they are given.
		"1 in [1, 2]", "'a' in ['a']", "3 in 1..5", "3.0 in 1..5", "let x = 1..5; 3 in x", "let x = map(1..5, #); 3 in x",
		"'k' in {k: 1}", "let m = {k: 1}; 'k' in m", "'z' not in params.list", "event.ad_id in params.list", "nil in [nil]",
		"[1, 2] == [1, 2]", "map(1..3, #) == map(1..3, #)", "map(1..3, #) != [1, 2]", "'ab' < 'b'", "'ab' >= 'b'",
		"event.ad_id == 'x'", "params.list == params.list", "map(1..3, #) == nil", "params.list[0] <= params.list[1]",
		"'abc' contains 'b'", "'abc' startsWith 'a'", "'abc' endsWith 'c'", "params.list[0] contains params.list[1]",
		"'abc' matches '^a.c$'", "let p = '^a' + 'b'; 'abc' matches p", "'abc' matches ('[' + ']')", "event.ad_id matches 'x{1,100}'",
		"len('héllo')", "len([1, 2])", "len(params.list)", "len(params.list[0])", "map(params.list, len(#))",
		"trim('  a  ')", "trim('xxaxx', 'x')", "trimPrefix('abc', 'a')", "trimSuffix('abc', 'c')",
		"indexOf('abcabc', 'c')", "lastIndexOf('abcabc', 'c')", "hasPrefix('abc', 'ab')", "hasSuffix('abc', 'bc')",
		"split('a,b', ',')", "split('a,b,c', ',', 2)", "splitAfter('a,b', ',')", "join(['a', 'b'], '-')", "join(params.list)",
		"max(1, 2)", "max([1, 5, 2])", "min(map(1..5, #))", "max(1..3, [7, [8]])", "mean(1..4)", "median([3, 1, 2])", "median(1..4)",
		"sort(keys({a: 1, b: 2}))", "sort(values({a: 1, b: 2}))", "len(toPairs({a: 1}))", "fromPairs([['a', 1]])",
		"fromBase64('aGk=')", "int('42')", "float('1.5')", "int(1.5)", "int('x')", "date('2024-01-02').Year()",
		"duration('1h').Hours()", "fromJSON('[1, 2]')", "fromJSON('[')", "uniq([1, 2, 1, 3])", "uniq(map(1..5, # % 2))",
		"all(params.list, {# in params.list})", "filter(params.list, # matches '^[ab]$')", "map(1..3, {[#] == [#]})",
		"let x = 1..3; map(x, {x == x})",
		// Compile errors: the same message, at the same place.
		"all(nil, true)", "all(1, true)", "all(1..3, 1)", "map(1..3, # + 'a')", "filter(1..3, # > 'a')",
		"sortBy(1..3, #, 1)", "count(1..3, 1)", "find(ad, true)", "1 + all(1..3, true)", "map(1..3, #) + 1",
		"let x = 1..3; all(x, {all(x, # > 'a')})", "reduce(1..3, #acc, 'a') + 1",
		"'a' contains 1", "1 matches 'x'", "'a' matches '['", "len(1)", "uniq(1)", "median('a')", "trim(1)", "indexOf(1, 'a')",
		"'a' in 1", "[1] < [2]", "params.list startsWith 'a'", "join(1..3)", "len(params.list) + 'a'",
	} {
		t.Run(src, func(t *testing.T) {
			opts := func(steps bool) []expr.Option {
				o := []expr.Option{expr.Env(reflect.New(envT).Interface()), expr.DisableBuiltin("now"), expr.MaxNodes(MaxNodes), budgetOptions()}
				if steps {
					o = append(o, stepsOptions(), expr.Patch(newStepPatcher()))
				}
				return append(o, expr.Patch(newBudgetPatcher()))
			}
			run := func(steps bool) (any, error, int) {
				p, err := expr.Compile(src, opts(steps)...)
				if err != nil {
					return nil, err, 0
				}
				env := reflect.New(envT)
				setValue(env.Elem().Field(envParams), map[string]any{"list": []any{"a", "b", "c"}})
				b := &budget{}
				env.Elem().Field(envBudget).Set(reflect.ValueOf(b))
				m := vm.VM{MemoryBudget: MemoryBudget}
				out, err := m.Run(p, env.Interface())
				return out, err, b.steps
			}
			want, wantErr, _ := run(false)
			got, gotErr, steps := run(true)
			if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("patched: %#v, %v; unpatched: %#v, %v", got, gotErr, want, wantErr)
			}
			if wantErr != nil && gotErr.Error() != wantErr.Error() {
				t.Fatalf("errors differ:\npatched:   %v\nunpatched: %v", gotErr, wantErr)
			}
			t.Logf("%#v, %v, %d steps", got, gotErr, steps)
		})
	}
}

// TestDefaultRulesTakeNoSteps: the default rule set neither loops nor walks
// an array or a long string, so its programs charge nothing: the step
// budget costs it nothing per event.
func TestDefaultRulesTakeNoSteps(t *testing.T) {
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("rules.yaml", data, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.rules {
		progs := []*vm.Program{r.prog}
		for _, v := range r.values {
			progs = append(progs, v.prog)
		}
		for _, l := range r.explain {
			progs = append(progs, l.prog, l.left, l.right)
		}
		for _, p := range progs {
			if p != nil && strings.Contains(p.Disassemble(), stepsFunc) {
				t.Errorf("rule %s: a program charges steps:\n%s", r.id, p.Disassemble())
			}
		}
	}
}
