package rules

import (
	"reflect"
	"testing"

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
		"sum(1..100)", "sum(1..10, # * 2)", "sum([1, 2.5])", "sum(map(1..10, # * 2))", "sum([])",
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
		// Compile errors: the same message, at the same place.
		"all(nil, true)", "all(1, true)", "all(1..3, 1)", "map(1..3, # + 'a')", "filter(1..3, # > 'a')",
		"sortBy(1..3, #, 1)", "count(1..3, 1)", "find(ad, true)", "1 + all(1..3, true)", "map(1..3, #) + 1",
		"let x = 1..3; all(x, {all(x, # > 'a')})", "reduce(1..3, #acc, 'a') + 1",
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
