package rules

import (
	"fmt"
	"reflect"
	"regexp/syntax"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
)

// StepBudget caps the work of one rule's evaluation for one event: its
// when, its emit values and its explain lines together. A step is about
// 10 ns of work, and each is charged before the work it stands for:
//
//   - a loop (all, any, none, one, filter, map, count, sum, find,
//     findIndex, findLast, findLastIndex, groupBy, sortBy, reduce) over n
//     elements whose closure has k nodes takes n × k steps (more for the
//     slower loops: see loops);
//   - an operator or builtin that walks an array, a map or a string (in,
//     ==, contains, matches, uniq, median, join, ... see walkers) takes the
//     size of what it walks: a step an element or 16 bytes of a string
//     (size), more for the slower ones, uniq and matches.
//
// Past the budget the rule fails at once. (expr charges its memory budget
// for a range once and nothing per iteration or per walk: nested loops that
// passed check ran for minutes on every event, and uniq(1..99999) alone
// did.) A real rule takes hundreds of steps; a million take 10 to 30 ms.
const StepBudget = 1_000_000

// loops are expr's builtins that take a closure (its parser's predicates):
// each runs its closure once per element of its first argument. count and
// sum may omit the closure, and then still loop. The number is the steps
// an element costs beyond its closure's nodes: a step is about 10 ns, what
// all(x, true) takes an element; sum adds with expr's generic +, findLast
// and findLastIndex box their index every time, groupBy appends to a map,
// sortBy sorts.
var loops = map[string]int{
	"all": 0, "none": 0, "any": 0, "one": 0, "filter": 0, "map": 0,
	"count": 0, "sum": 3, "find": 0, "findIndex": 0, "findLast": 12,
	"findLastIndex": 12, "groupBy": 10, "sortBy": 5, "reduce": 0,
}

// walker says what an operator or builtin walks: which of its operands
// (all when nil), and how many steps that takes, from their values. An
// operation whose walked operands are all small (see small) is not charged;
// with anySmall, one small operand is enough: comparing two values stops
// at the end of the smaller.
type walker struct {
	args     []int
	anySmall bool
	cost     func(xs []any, per, limit int) int
	weight   int // steps per step of cost, when an element costs more than 10 ns
}

func (w walker) times(weight int) walker {
	w.weight = weight
	return w
}

var (
	sizes      = walker{cost: sumSize}
	comparison = walker{anySmall: true, cost: func(xs []any, _, limit int) int {
		return min(size(xs[0], limit), size(xs[1], limit))
	}}
	prefix = walker{args: []int{1}, cost: sumSize} // strings.HasPrefix and the like walk the prefix
	// perByte charges a step for every byte of a string: fromJSON builds a
	// value of every few bytes (4 steps a byte).
	perByte = walker{cost: func(xs []any, _, limit int) int {
		if s, ok := xs[0].(string); ok {
			return 1 + len(s)
		}
		return sumSize(xs, 0, limit)
	}}
)

// walkers are the operators and builtins that walk their operands. The
// builtins that build strings or arrays and charge the string or memory
// budget before they do (repeat, replace, upper, lower, toBase64, toJSON,
// string, concat, flatten, sort, reverse) walk no more than they build, so
// those budgets bound them.
var walkers = map[string]walker{
	"==": comparison, "!=": comparison, "<": comparison, ">": comparison, "<=": comparison, ">=": comparison,

	"startsWith": prefix, "endsWith": prefix, "hasPrefix": prefix, "hasSuffix": prefix,
	"trimPrefix": prefix, "trimSuffix": prefix,

	"contains": sizes, "indexOf": sizes, "lastIndexOf": sizes, "split": sizes, "splitAfter": sizes,
	"fromBase64": sizes, "int": sizes, "float": sizes, "len": sizes, "date": sizes, "duration": sizes,

	// These cost more than 10 ns an element: they box, compare generically,
	// build strings or iterate maps.
	"join": sizes.times(5), "max": sizes.times(4), "min": sizes.times(4), "mean": sizes.times(2),
	"median": sizes.times(4), "keys": sizes.times(15), "values": sizes.times(15),
	"toPairs": sizes.times(20), "fromPairs": sizes.times(20), "fromJSON": perByte.times(4),

	// x in array compares x with each element, each comparison stopping at
	// the end of the element; in a map or a struct it is a lookup.
	"in": {args: []int{1}, weight: 5, cost: func(xs []any, _, limit int) int {
		if v := deref(reflect.ValueOf(xs[0])); v.Kind() == reflect.Slice || v.Kind() == reflect.Array {
			return size(xs[0], limit)
		}
		return 1
	}},
	// trim(s, cutset) looks each byte it trims up in the cutset.
	"trim": {cost: func(xs []any, _, limit int) int {
		if len(xs) == 2 {
			return mul(size(xs[0], limit), size(xs[1], limit))
		}
		return size(xs[0], limit)
	}},
	// uniq compares each element with the ones it kept.
	"uniq": {cost: func(xs []any, _, limit int) int {
		n := 0
		if v := deref(reflect.ValueOf(xs[0])); v.Kind() == reflect.Slice || v.Kind() == reflect.Array {
			n = v.Len()
		}
		return mul(n, size(xs[0], limit))
	}},
	// A regular expression runs every byte of its subject through the
	// instructions of its compiled pattern, up to all of them at once (Go's
	// are linear in both), about 5 ns each, half a step: x{1,100}y is 9
	// bytes and 200 instructions. A pattern built at run time is compiled
	// first; a literal one was, with the rule (per is its instructions).
	"matches": {cost: func(xs []any, per, limit int) int {
		s, _ := xs[0].(string)
		if per == 0 {
			p, _ := xs[1].(string)
			if len(p)/16 > limit {
				return huge // not worth compiling
			}
			per = add(regexpInsts(p), len(p)/16)
		}
		return add(per, mul(1+len(s), per)/2)
	}},
}

// regexpInsts is the number of instructions of the program Go compiles the
// pattern p to (as regexp.Compile does), or 1 when p does not compile.
func regexpInsts(p string) int {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return 1
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 1
	}
	return len(prog.Inst)
}

func sumSize(xs []any, _, limit int) int {
	n := 0
	for _, x := range xs {
		n = add(n, size(x, limit-n))
	}
	return n
}

// size is how many steps walking v takes: one for a scalar, one and 1 per
// 16 bytes for a string, one and the sizes of the elements for an array, a
// map (keys and values) or a struct. It stops counting past limit.
func size(v any, limit int) int {
	switch v := v.(type) {
	case nil, bool, int, float64:
		return 1
	case string:
		return 1 + len(v)/16
	case []int:
		return 1 + len(v)
	case []float64:
		return 1 + len(v)
	}
	return sizeOf(reflect.ValueOf(v), limit, 0)
}

func sizeOf(v reflect.Value, limit, depth int) int {
	v = deref(v)
	if depth > builtin.MaxDepth {
		return huge
	}
	switch v.Kind() {
	case reflect.String:
		return 1 + v.Len()/16
	case reflect.Slice, reflect.Array:
		n := 1
		for i := 0; i < v.Len() && n <= limit; i++ {
			n = add(n, sizeOf(v.Index(i), limit-n, depth+1))
		}
		return n
	case reflect.Map:
		n := 1
		for it := v.MapRange(); it.Next() && n <= limit; {
			n = add(n, sizeOf(it.Key(), limit-n, depth+1))
			n = add(n, sizeOf(it.Value(), limit-n, depth+1))
		}
		return n
	case reflect.Struct:
		if v.Type() == timeType {
			return 1
		}
		n := 1
		for i := 0; i < v.NumField() && n <= limit; i++ {
			n = add(n, sizeOf(v.Field(i), limit-n, depth+1))
		}
		return n
	}
	return 1
}

// deref follows pointers and interfaces to the value, as expr's builtins do.
func deref(v reflect.Value) reflect.Value {
	for (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && !v.IsNil() && v.Type() != budgetType {
		v = v.Elem()
	}
	return v
}

// stepsFunc is the function the patched programs call to charge steps; a
// space keeps rules from calling it.
const stepsFunc = "take steps"

// stepsType is stepsFunc's signature: the budget, the loop or walker
// charging, a loop's steps per element, and the operands.
var stepsType = reflect.TypeOf((func(*budget, string, int, ...any) bool)(nil))

// stepsOptions adds stepsFunc, for expr.Compile.
func stepsOptions() func(*conf.Config) {
	return func(c *conf.Config) {
		c.Functions[stepsFunc] = &builtin.Function{Name: stepsFunc, Func: takeSteps, Types: []reflect.Type{stepsType}}
	}
}

// takeSteps charges the steps of a loop or a walk before it runs.
func takeSteps(args ...any) (any, error) {
	b, ok := args[0].(*budget)
	if !ok || b == nil {
		return nil, errNoBudget
	}
	name, per, xs := args[1].(string), args[2].(int), args[3:]
	left := StepBudget - b.steps
	if _, ok := loops[name]; ok {
		n := 0
		switch v := deref(reflect.ValueOf(xs[0])); v.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
			n = v.Len()
		case reflect.Int: // the length of a literal range
			n = max(int(v.Int()), 0)
		}
		s := mul(n, per)
		if s > left {
			return nil, fmt.Errorf("step budget exceeded: %s over %s elements would take %s steps (%d an element), and %d of the %d a rule may take per event are left",
				name, sizeText(n), sizeText(s), per, left, StepBudget)
		}
		b.steps += s
		return true, nil
	}
	w := walkers[name]
	weight := max(w.weight, 1)
	s := mul(w.cost(xs, per, left/weight+1), weight)
	if s > left {
		what := "more than " + sizeText(left)
		if s < huge {
			what = sizeText(s)
		}
		return nil, fmt.Errorf("step budget exceeded: %s would take %s steps, and %d of the %d a rule may take per event are left",
			name, what, left, StepBudget)
	}
	b.steps += s
	return true, nil
}

// stepPatcher makes every loop and walk charge its steps before it runs:
//
//	all(x, {...})  becomes  let <v> = x; take steps(<budget>, "all", k, <v>); all(<v>, {...})
//	a in b         becomes  let <v1> = a; let <v2> = b; take steps(<budget>, "in", 0, <v2>); <v1> in <v2>
//
// where k is the number of nodes of the closure (1 without one). The
// operands go through variables, not through a call that returns them, so
// their types stay what the checker made of them (a loop's closure is
// checked against its collection's element type); and each is evaluated
// once, in the order it was. Literals stay where they are, so expr's
// optimizer still sees them (x in [1, 2] becomes a map lookup).
type stepPatcher struct {
	vars   int
	hidden map[ast.Node]bool         // nodes the patcher made, which a closure's size leaves out
	types  map[ast.Node]reflect.Type // the type of the node each replacement stands for
}

func newStepPatcher() *stepPatcher {
	return &stepPatcher{hidden: map[ast.Node]bool{}, types: map[ast.Node]reflect.Type{}}
}

// typeOf is the type the checker gave n, or the node n replaced.
func (p *stepPatcher) typeOf(n ast.Node) reflect.Type {
	if t, ok := p.types[n]; ok {
		return t
	}
	if p.hidden[n] {
		return nil
	}
	return n.Type()
}

func (p *stepPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.BuiltinNode:
		if extra, ok := loops[n.Name]; ok && len(n.Arguments) > 0 {
			per := 1
			if len(n.Arguments) > 1 {
				if pr, ok := n.Arguments[1].(*ast.PredicateNode); ok {
					per = max(p.size(pr.Node), 1)
				}
			}
			per += extra
			p.charge(node, n.Name, per, n.Arguments[:1], []int{0}, func(args []ast.Node) ast.Node {
				return &ast.BuiltinNode{Name: n.Name, Arguments: append(args, n.Arguments[1:]...)}
			})
			return
		}
		p.walk(node, n.Name, n.Arguments, func(args []ast.Node) ast.Node {
			return &ast.BuiltinNode{Name: n.Name, Arguments: args}
		})
	case *ast.CallNode: // the builtins budgetOptions replaces
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || budgeted[id.Value] == nil {
			return
		}
		p.walk(node, id.Value, n.Arguments, func(args []ast.Node) ast.Node {
			return &ast.CallNode{Callee: &ast.IdentifierNode{Value: id.Value}, Arguments: args}
		})
	case *ast.BinaryNode:
		if r, ok := n.Right.(*ast.BinaryNode); ok && n.Operator == "in" && r.Operator == ".." && p.isInt(n.Left) {
			// expr's optimizer makes x in 1..9 a comparison when 1 and 9
			// are literals.
			_, from := r.Left.(*ast.IntegerNode)
			_, to := r.Right.(*ast.IntegerNode)
			if from && to {
				return
			}
		}
		p.walk(node, n.Operator, []ast.Node{n.Left, n.Right}, func(args []ast.Node) ast.Node {
			return &ast.BinaryNode{Operator: n.Operator, Left: args[0], Right: args[1]}
		})
	}
}

func (p *stepPatcher) isInt(n ast.Node) bool {
	t := p.typeOf(n)
	return t != nil && t.Kind() == reflect.Int
}

// walk charges the walker name, if it is one and walks an operand that is
// not small.
func (p *stepPatcher) walk(node *ast.Node, name string, operands []ast.Node, rebuild func([]ast.Node) ast.Node) {
	w, ok := walkers[name]
	if !ok {
		return
	}
	walked := w.args
	if walked == nil {
		for i := range operands {
			walked = append(walked, i)
		}
	}
	smalls := 0
	for _, i := range walked {
		if i < len(operands) && p.small(operands[i]) {
			smalls++
		}
	}
	per := 0
	switch {
	case name == "matches":
		// Never small: a short subject costs microseconds with some
		// short patterns, a lot in a loop.
		if lit, ok := operands[1].(*ast.StringNode); ok {
			per = regexpInsts(lit.Value)
		}
	case smalls == len(walked) || (w.anySmall && smalls > 0):
		return
	case name == "len" && !p.mayBeString(operands[0]):
		return // the length of an array or a map is at hand
	}
	p.charge(node, name, per, operands, walked, rebuild)
}

// charge replaces *node with the operation rebuilt over its operands bound
// to variables, after a call of stepsFunc with the walked ones.
func (p *stepPatcher) charge(node *ast.Node, name string, per int, operands []ast.Node, walked []int, rebuild func([]ast.Node) ast.Node) {
	at := *node
	args := make([]ast.Node, len(operands))
	var lets []*ast.VariableDeclaratorNode
	_, loop := loops[name]
	for i, o := range operands {
		// A loop over a literal range is charged its length (see
		// copyArg); a walker's cost needs the values.
		if isLiteral(o) || (loop && rangeLen(o) >= 0) {
			args[i] = o
			continue
		}
		p.vars++
		v := fmt.Sprintf("step %d", p.vars)
		lets = append(lets, &ast.VariableDeclaratorNode{Name: v, Value: o})
		args[i] = p.ident(v, o)
	}
	call := &ast.CallNode{
		Callee: p.ident(stepsFunc, at),
		Arguments: []ast.Node{
			p.ident(budgetVar, at), p.made(&ast.StringNode{Value: name}, at), p.made(&ast.IntegerNode{Value: per}, at),
		},
	}
	for _, i := range walked {
		if i < len(args) {
			call.Arguments = append(call.Arguments, p.copyArg(args[i]))
		}
	}
	// The operation the author wrote, over the variables: a new node, so
	// that the checker checks it afresh.
	op := rebuild(args)
	op.SetLocation(at.Location())
	var out ast.Node = p.made(&ast.SequenceNode{Nodes: []ast.Node{p.made(call, at), op}}, at)
	for i := len(lets) - 1; i >= 0; i-- {
		lets[i].Expr = out
		out = p.made(lets[i], at)
	}
	p.types[out] = p.typeOf(at)
	ast.Patch(node, out)
}

// copyArg returns a second node for an operand passed to stepsFunc too: a
// node appears once in a tree. A literal range passes its length.
func (p *stepPatcher) copyArg(n ast.Node) ast.Node {
	if l := rangeLen(n); l >= 0 {
		return p.made(&ast.IntegerNode{Value: l}, n)
	}
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return p.ident(n.Value, n)
	case *ast.StringNode:
		return p.made(&ast.StringNode{Value: n.Value}, n)
	case *ast.IntegerNode:
		return p.made(&ast.IntegerNode{Value: n.Value}, n)
	case *ast.FloatNode:
		return p.made(&ast.FloatNode{Value: n.Value}, n)
	case *ast.BoolNode:
		return p.made(&ast.BoolNode{Value: n.Value}, n)
	}
	return p.made(&ast.NilNode{}, n)
}

// rangeLen is the length of a range of two literals, like 1..9, or -1 for
// any other node. Such a range, the collection of a loop, stays where it
// is, so that expr's optimizer still sees it (sum(1..9) becomes 45, and
// sum(1..200000) is not refused for the range's memory).
func rangeLen(n ast.Node) int {
	if r, ok := n.(*ast.BinaryNode); ok && r.Operator == ".." {
		from, ok1 := r.Left.(*ast.IntegerNode)
		to, ok2 := r.Right.(*ast.IntegerNode)
		if ok1 && ok2 {
			if to.Value < from.Value {
				return 0
			}
			return min(to.Value-from.Value+1, huge) // saturates
		}
	}
	return -1
}

func isLiteral(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NilNode:
		return true
	}
	return false
}

// smallString is the longest string a walk of which goes uncharged: no
// more than a node costs.
const smallString = MaxIDLen

// small reports whether walking n costs no more than a node, whatever the
// event: a number, a bool, a time, a literal of at most smallString bytes,
// an array of such literals, an event's field (ids have at most MaxIDLen
// bytes) or the ad's or a window's metrics.
func (p *stepPatcher) small(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NilNode:
		return true
	case *ast.StringNode:
		return len(n.Value) <= smallString
	case *ast.ArrayNode:
		for _, e := range n.Nodes {
			if !p.small(e) {
				return false
			}
		}
		return true
	case *ast.MemberNode:
		if root, path, ok := memberPath(n); ok && root == "event" && len(path) == 1 {
			return true
		}
	}
	t := p.typeOf(n)
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	switch t {
	case timeType, reflect.TypeOf(AdView{}), reflect.TypeOf(WindowView{}), reflect.TypeOf(EventView{}):
		return true
	}
	return false
}

// mayBeString reports whether n may be a string when it runs.
func (p *stepPatcher) mayBeString(n ast.Node) bool {
	t := p.typeOf(n)
	return t == nil || t.Kind() == reflect.String || t.Kind() == reflect.Interface
}

// made marks n as the patcher's, at at's place in the source.
func (p *stepPatcher) made(n, at ast.Node) ast.Node {
	n.SetLocation(at.Location())
	p.hidden[n] = true
	return n
}

func (p *stepPatcher) ident(name string, at ast.Node) ast.Node {
	return p.made(&ast.IdentifierNode{Value: name}, at)
}

// size counts the nodes of n that the rule's author wrote.
func (p *stepPatcher) size(n ast.Node) int {
	c := &nodeCounter{hidden: p.hidden}
	ast.Walk(&n, c)
	return c.n
}

type nodeCounter struct {
	hidden map[ast.Node]bool
	n      int
}

func (c *nodeCounter) Visit(node *ast.Node) {
	if !c.hidden[*node] {
		c.n++
	}
}
