package rules

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/vm/runtime"
)

// StringBudget caps the bytes of the strings one evaluation builds: by +
// on strings and by repeat, join, replace, upper, lower, toBase64, toJSON
// and string. Each checks the size of its result against what is left
// before it allocates. (expr charges repeat to its memory budget only after
// allocating, and + on strings never: a rule that passed check could run a
// node out of memory.) It is the number of expr's MemoryBudget, which
// repeat counted in bytes before.
const StringBudget = 100_000

// budget counts what one evaluation has built through the budgeted
// functions: bytes of strings, and elements of the arrays that concat,
// flatten, split and splitAfter build (at most MemoryBudget, the limit expr
// itself gives them, but checked before allocating); and the steps its
// loops took (StepBudget). An Evaluator resets bytes and elements before
// every program it runs, and steps before every rule. It has no exported
// fields, and String is its only method: a rule that reaches it through
// $env can do nothing with it.
type budget struct {
	bytes, elems int
	steps        int
}

// String keeps string($env) deterministic: fmt would print the pointer.
func (*budget) String() string { return "budget" }

// budgetVar is the environment field through which the budgeted functions
// get the evaluator's budget: budgetPatcher passes it as their first
// argument. A space keeps rules from naming it.
const budgetVar = "string budget"

var (
	budgetType  = reflect.TypeOf((*budget)(nil))
	errNoBudget = errors.New("string budget exceeded: no budget")
)

// take charges n bytes and m elements, or fails without charging when they
// do not fit in what is left.
func (b *budget) take(fn string, n, m int) error {
	switch {
	case b == nil:
		return errNoBudget
	case n > StringBudget-b.bytes:
		return fmt.Errorf("string budget exceeded: %s would build a string of %s bytes, and an evaluation may build %d", fn, sizeText(n), StringBudget)
	case m > MemoryBudget-b.elems:
		return fmt.Errorf("memory budget exceeded: %s would build %s elements, and an evaluation may build %d", fn, sizeText(m), MemoryBudget)
	}
	b.bytes += n
	b.elems += m
	return nil
}

// huge stands for any size past every budget; sizes saturate there.
const huge = 1 << 62

func sizeText(n int) string {
	if n >= huge {
		return "more than 4e18"
	}
	return fmt.Sprint(n)
}

// mul returns a*b for non-negative a and b, saturating at huge.
func mul(a, b int) int {
	if a != 0 && b > huge/a {
		return huge
	}
	return a * b
}

// add returns a+b for non-negative a and b, saturating at huge.
func add(a, b int) int {
	return min(a+b, huge)
}

// sizer works out what a builtin would allocate for args (the rule's
// arguments, without the budget): bytes and elements.
type sizer func(args []any) (bytes, elems int, err error)

// budgeted are the builtins whose result can outgrow their arguments,
// replaced by versions that charge the budget first and then call expr's.
var budgeted = map[string]sizer{
	"repeat": func(args []any) (int, int, error) {
		s, n := args[0].(string), runtime.ToInt(args[1])
		if n < 0 {
			return 0, 0, nil // expr's repeat refuses it
		}
		return mul(len(s), n), 0, nil
	},
	"join": func(args []any) (int, int, error) {
		n, size := 0, 0
		switch a := args[0].(type) {
		case []string:
			n = len(a)
			for _, s := range a {
				size = add(size, len(s))
			}
		case []any:
			n = len(a)
			for _, s := range a {
				if s, ok := s.(string); ok {
					size = add(size, len(s))
				}
			}
		}
		if len(args) == 2 && n > 1 {
			size = add(size, mul(len(args[1].(string)), n-1))
		}
		return size, 0, nil
	},
	"replace": func(args []any) (int, int, error) {
		s, old, repl := args[0].(string), args[1].(string), args[2].(string)
		if len(repl) <= len(old) {
			return len(s), 0, nil
		}
		n := strings.Count(s, old)
		if len(args) == 4 {
			if k := runtime.ToInt(args[3]); k >= 0 {
				n = min(n, k)
			}
		}
		return add(len(s), mul(n, len(repl)-len(old))), 0, nil
	},
	"upper": func(args []any) (int, int, error) { return caseSize(args[0].(string), unicode.ToUpper), 0, nil },
	"lower": func(args []any) (int, int, error) { return caseSize(args[0].(string), unicode.ToLower), 0, nil },
	"toBase64": func(args []any) (int, int, error) {
		return base64.StdEncoding.EncodedLen(len(args[0].(string))), 0, nil
	},
	"toJSON": func(args []any) (int, int, error) { return textSize(args[0]) },
	"string": func(args []any) (int, int, error) {
		if _, ok := args[0].(string); ok {
			return 0, 0, nil // returned as it is
		}
		return textSize(args[0])
	},
	"split":      splitSize,
	"splitAfter": splitSize,
	"concat": func(args []any) (int, int, error) {
		n := 0
		for _, a := range args {
			if v := reflect.ValueOf(a); v.Kind() == reflect.Slice || v.Kind() == reflect.Array {
				n = add(n, v.Len())
			}
		}
		return 0, n, nil
	},
	"flatten": func(args []any) (int, int, error) {
		// Every array it walks counts too, so the walk is bounded as well.
		n := 0
		var walk func(v reflect.Value, depth int)
		walk = func(v reflect.Value, depth int) {
			n++
			for i := 0; i < v.Len() && n <= MemoryBudget && depth <= builtin.MaxDepth; i++ {
				e := reflect.Indirect(v.Index(i))
				for e.Kind() == reflect.Interface && !e.IsNil() {
					e = reflect.Indirect(e.Elem())
				}
				if e.Kind() == reflect.Slice || e.Kind() == reflect.Array {
					walk(e, depth+1)
				} else {
					n++
				}
			}
		}
		if v := reflect.ValueOf(args[0]); v.Kind() == reflect.Slice || v.Kind() == reflect.Array {
			walk(v, 0)
		}
		return 0, n, nil
	},
}

// caseSize is the length of strings.ToUpper or ToLower of s: each rune
// mapped, each invalid byte written as U+FFFD.
func caseSize(s string, to func(rune) rune) int {
	n := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			n++
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			n += 3
		} else {
			n += utf8.RuneLen(to(r))
		}
		i += w
	}
	return n
}

func splitSize(args []any) (int, int, error) {
	s, sep := args[0].(string), args[1].(string)
	n := utf8.RuneCountInString(s)
	if sep != "" {
		n = strings.Count(s, sep) + 1
	}
	if len(args) == 3 {
		if k := runtime.ToInt(args[2]); k >= 0 {
			n = min(n, k)
		}
	}
	return 0, n, nil
}

// textSize bounds the length of v written by fmt's %v (expr's string) or
// json.MarshalIndent with two spaces (expr's toJSON), without writing it.
// The walk gives up past the budget, so it is bounded too.
func textSize(v any) (int, int, error) {
	n := 0
	var walk func(v reflect.Value, depth int) error
	walk = func(v reflect.Value, depth int) error {
		if n > StringBudget {
			return nil
		}
		if depth > builtin.MaxDepth {
			return builtin.ErrorMaxDepth
		}
		indent := 2*depth + 4 // a newline, the indent, ", " or ",\n"
		if !v.IsValid() {
			n += 5 // <nil>
			return nil
		}
		switch v.Type() {
		case budgetType:
			n += 8
			return nil
		case timeType:
			n += 80
			return nil
		case durationType:
			n += 32
			return nil
		case locationType:
			if !v.IsNil() {
				n += len(v.Interface().(*time.Location).String()) + 2
			}
			n += 5
			return nil
		}
		if v.Type().Implements(stringerType) || v.Type().Implements(errorType) ||
			v.Type().Implements(jsonMarshalerType) || v.Type().Implements(textMarshalerType) {
			return fmt.Errorf("cannot tell how long a %s is written", v.Type())
		}
		switch v.Kind() {
		case reflect.Bool:
			n += 5
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			n += 20
		case reflect.Float32, reflect.Float64:
			n += 32
		case reflect.Complex64, reflect.Complex128:
			n += 68
		case reflect.String:
			n = add(n, add(mul(len(v.String()), 6), 2)) // JSON escapes a byte in at most 6
		case reflect.Slice, reflect.Array:
			n += 2 + indent
			for i := 0; i < v.Len() && n <= StringBudget; i++ {
				n += indent
				if err := walk(v.Index(i), depth+1); err != nil {
					return err
				}
			}
		case reflect.Map:
			n += 6 + indent // map[ ]
			it := v.MapRange()
			for it.Next() && n <= StringBudget {
				n += indent + 4 // ": "
				if err := walk(it.Key(), depth+1); err != nil {
					return err
				}
				if err := walk(it.Value(), depth+1); err != nil {
					return err
				}
			}
		case reflect.Struct:
			n += 2 + indent
			for i := 0; i < v.NumField() && n <= StringBudget; i++ {
				n += indent + 6*len(v.Type().Field(i).Name) + 4
				if err := walk(v.Field(i), depth+1); err != nil {
					return err
				}
			}
		case reflect.Pointer, reflect.Interface:
			n += 20 // fmt writes a pointer below the top as its address
			if !v.IsNil() {
				return walk(v.Elem(), depth+1)
			}
		default: // func, chan, unsafe pointer: an address
			n += 20
		}
		return nil
	}
	err := walk(reflect.ValueOf(v), 0)
	return n, 0, err
}

var (
	timeType          = reflect.TypeOf(time.Time{})
	durationType      = reflect.TypeOf(time.Duration(0))
	locationType      = reflect.TypeOf((*time.Location)(nil))
	stringerType      = reflect.TypeOf((*fmt.Stringer)(nil)).Elem()
	errorType         = reflect.TypeOf((*error)(nil)).Elem()
	jsonMarshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

// Names of the functions + on strings becomes; a space keeps rules from
// calling them.
const (
	concatFunc = "string +" // string + string
	addFunc    = "value +"  // + where a side may be a string, known only at run time
)

// budgetOptions replaces the budgeted builtins, and adds the functions +
// on strings becomes, for expr.Compile.
func budgetOptions() expr.Option {
	return func(c *conf.Config) {
		for name, size := range budgeted {
			orig := builtin.Builtins[builtin.Index[name]]
			f := &builtin.Function{Name: name, Func: budgetedFunc(orig, size)}
			// expr's signatures, for the checks before budgetPatcher adds
			// the budget; then the budgeted ones, last so that a rule's own
			// mistake is reported against them.
			f.Types = append(f.Types, orig.Types...)
			for _, t := range orig.Types {
				f.Types = append(f.Types, withBudget(t))
			}
			if orig.Validate != nil {
				f.Validate = func(args []reflect.Type) (reflect.Type, error) {
					if len(args) > 0 && args[0] == budgetType {
						args = args[1:]
					}
					return orig.Validate(args)
				}
			}
			c.Functions[name] = f
		}
		c.Functions[concatFunc] = &builtin.Function{
			Name: concatFunc, Func: addStrings,
			Types: []reflect.Type{reflect.TypeOf((func(*budget, string, string) string)(nil))},
		}
		c.Functions[addFunc] = &builtin.Function{
			Name: addFunc, Func: addStrings,
			Types: []reflect.Type{reflect.TypeOf((func(*budget, any, any) any)(nil))},
		}
	}
}

// withBudget returns t with a *budget before its parameters.
func withBudget(t reflect.Type) reflect.Type {
	in := []reflect.Type{budgetType}
	for i := range t.NumIn() {
		in = append(in, t.In(i))
	}
	out := make([]reflect.Type, t.NumOut())
	for i := range out {
		out[i] = t.Out(i)
	}
	return reflect.FuncOf(in, out, t.IsVariadic())
}

// budgetedFunc charges what orig would build to the budget in args[0], then
// calls orig.
func budgetedFunc(orig *builtin.Function, size sizer) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		b, ok := args[0].(*budget)
		if !ok {
			return nil, errNoBudget
		}
		args = args[1:]
		for i, a := range args {
			// expr dereferences the arguments of its builtins; do the same.
			if v := reflect.ValueOf(a); v.Kind() == reflect.Pointer && !v.IsNil() {
				args[i] = v.Elem().Interface()
			}
		}
		n, m, err := size(args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", orig.Name, err)
		}
		if err := b.take(orig.Name, n, m); err != nil {
			return nil, err
		}
		switch {
		case orig.Name == "string" && n == 0:
			return args[0], nil // a string: expr's would copy it
		case orig.Fast != nil:
			return orig.Fast(args[0]), nil
		case orig.Safe != nil:
			out, _, err := orig.Safe(args...)
			return out, err
		}
		return orig.Func(args...)
	}
}

// addStrings is + for a string + string, charged to the budget; any other
// pair is expr's +.
func addStrings(args ...any) (any, error) {
	b, ok := args[0].(*budget)
	if !ok {
		return nil, errNoBudget
	}
	x, xs := args[1].(string)
	y, ys := args[2].(string)
	if !xs || !ys {
		return runtime.Add(args[1], args[2]), nil
	}
	if err := b.take("+", add(len(x), len(y)), 0); err != nil {
		return nil, err
	}
	return x + y, nil
}

// budgetPatcher passes the evaluator's budget to the budgeted functions,
// and makes + on strings a call of concatFunc (or addFunc, when a side's
// type is known only at run time).
//
// It puts new call nodes in place of the old: expr's checker takes the type
// a call node already has as final, so a call given another argument must
// be checked afresh. types keeps the type a replaced node had, so that a +
// above it still knows it adds strings.
type budgetPatcher struct {
	types map[ast.Node]reflect.Type
}

func newBudgetPatcher() *budgetPatcher {
	return &budgetPatcher{types: map[ast.Node]reflect.Type{}}
}

func (p *budgetPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || budgeted[id.Value] == nil {
			return
		}
		call := &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: id.Value},
			Arguments: append([]ast.Node{&ast.IdentifierNode{Value: budgetVar}}, n.Arguments...),
		}
		p.types[call] = n.Type()
		ast.Patch(node, call)
	case *ast.BinaryNode:
		if n.Operator != "+" {
			return
		}
		l, r := p.stringish(n.Left), p.stringish(n.Right)
		if l == 0 || r == 0 {
			return
		}
		call := &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: addFunc},
			Arguments: []ast.Node{&ast.IdentifierNode{Value: budgetVar}, n.Left, n.Right},
		}
		if l == isString && r == isString {
			call.Callee = &ast.IdentifierNode{Value: concatFunc}
		}
		p.types[call] = n.Type()
		ast.Patch(node, call)
	}
}

const (
	isString = 1 + iota
	mayBeString
)

// stringish says whether n is a string, may be one (its type is known
// only at run time), or neither (0).
func (p *budgetPatcher) stringish(n ast.Node) int {
	t, ok := p.types[n]
	if !ok {
		if n.Nature().Nil {
			return 0
		}
		t = n.Type()
	}
	switch t.Kind() {
	case reflect.String:
		return isString
	case reflect.Interface:
		return mayBeString
	}
	return 0
}
