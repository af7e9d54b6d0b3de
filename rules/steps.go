package rules

import (
	"fmt"
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
)

// StepBudget caps the work of one rule's evaluation for one event: its
// when, its emit values and its explain lines together. A loop (all, any,
// none, one, filter, map, count, sum, find, findIndex, findLast,
// findLastIndex, groupBy, sortBy, reduce) over n elements whose closure has
// k nodes takes n × k steps, charged before the loop runs; past the budget
// the rule fails at once. (expr charges its memory budget for a range once
// and nothing per iteration: nested loops that passed check ran for minutes
// on every event.) A real rule takes hundreds of steps; a million is a few
// milliseconds of the slowest.
const StepBudget = 1_000_000

// loops are expr's builtins that take a closure (its parser's predicates):
// each runs its closure once per element of its first argument. count and
// sum may omit the closure, and then still loop.
var loops = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"count": true, "sum": true, "find": true, "findIndex": true, "findLast": true,
	"findLastIndex": true, "groupBy": true, "sortBy": true, "reduce": true,
}

// stepsFunc is the function the patched programs call to charge steps; a
// space keeps rules from calling it.
const stepsFunc = "take steps"

// stepsType is stepsFunc's signature: the budget, the builtin charging, the
// steps per element (a loop's closure's nodes), and the collection.
var stepsType = reflect.TypeOf((func(*budget, string, int, any) bool)(nil))

// stepsOptions adds stepsFunc, for expr.Compile.
func stepsOptions() func(*conf.Config) {
	return func(c *conf.Config) {
		c.Functions[stepsFunc] = &builtin.Function{Name: stepsFunc, Func: takeSteps, Types: []reflect.Type{stepsType}}
	}
}

// takeSteps charges the steps of a loop before it runs: the length of the
// collection times the steps per element.
func takeSteps(args ...any) (any, error) {
	b, ok := args[0].(*budget)
	if !ok {
		return nil, errNoBudget
	}
	name, per := args[1].(string), args[2].(int)
	n := 0
	switch v := reflect.Indirect(reflect.ValueOf(args[3])); v.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
		n = v.Len()
	}
	if err := b.step(name, n, per); err != nil {
		return nil, err
	}
	return true, nil
}

// step charges n × per steps, or fails without charging when they do not
// fit in what is left.
func (b *budget) step(name string, n, per int) error {
	if b == nil {
		return errNoBudget
	}
	s := mul(n, per)
	if s > StepBudget-b.steps {
		return fmt.Errorf("step budget exceeded: %s over %s elements would take %s steps (%d an element), and %d of the %d a rule may take per event are left",
			name, sizeText(n), sizeText(s), per, StepBudget-b.steps, StepBudget)
	}
	b.steps += s
	return nil
}

// stepPatcher makes every loop charge its steps before it runs:
//
//	all(x, {...})  becomes  let <v> = x; take steps(<budget>, "all", k, <v>); all(<v>, {...})
//
// where k is the number of nodes of the closure (1 without one). The
// collection goes through a variable, not through a call that returns it,
// so its type stays what the checker made of it, with the element type the
// closure is checked against; and it is evaluated once, as before.
type stepPatcher struct {
	vars   int
	hidden map[ast.Node]bool // nodes the patcher made, which a closure's size leaves out
}

func newStepPatcher() *stepPatcher {
	return &stepPatcher{hidden: map[ast.Node]bool{}}
}

func (p *stepPatcher) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.BuiltinNode)
	if !ok || !loops[n.Name] || len(n.Arguments) == 0 {
		return
	}
	per := 1
	if len(n.Arguments) > 1 {
		if pr, ok := n.Arguments[1].(*ast.PredicateNode); ok {
			per = max(p.size(pr.Node), 1)
		}
	}
	p.vars++
	name := fmt.Sprintf("loop %d", p.vars)
	// The builtin the author wrote, over the variable: a new node, so
	// that the checker checks it afresh.
	loop := &ast.BuiltinNode{
		Name:      n.Name,
		Arguments: append([]ast.Node{p.ident(name, n.Arguments[0])}, n.Arguments[1:]...),
	}
	loop.SetLocation(n.Location())
	charge := &ast.CallNode{
		Callee: p.ident(stepsFunc, n),
		Arguments: []ast.Node{
			p.ident(budgetVar, n), p.made(&ast.StringNode{Value: n.Name}, n),
			p.made(&ast.IntegerNode{Value: per}, n), p.ident(name, n),
		},
	}
	let := &ast.VariableDeclaratorNode{
		Name:  name,
		Value: n.Arguments[0],
		Expr:  p.made(&ast.SequenceNode{Nodes: []ast.Node{p.made(charge, n), loop}}, n),
	}
	ast.Patch(node, p.made(let, n))
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
