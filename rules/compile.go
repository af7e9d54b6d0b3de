package rules

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/adrules/adrules/config"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Limits that keep any rule file from hanging a node.
const (
	// MaxNodes caps the size of one expression (expr's node limit).
	MaxNodes = 2000
	// MemoryBudget caps what one evaluation may allocate (expr's memory budget).
	MemoryBudget = 100_000
	// MaxSource caps the length of one expression's source, in bytes.
	MaxSource = 16 << 10
	// MaxDepth caps how deep the brackets ( [ { of one expression nest.
	// expr's parser recurses once per bracket before it counts a node, so
	// MaxNodes cannot stop deep nesting: it would overflow the stack first.
	MaxDepth = 64
)

// RuleSet is a compiled, immutable rule set. It is safe for concurrent use;
// each goroutine evaluates through its own Evaluator.
type RuleSet struct {
	// Name, Version and SHA256 identify the rule set; every output carries them.
	Name    string
	Version int64
	SHA256  string
	// Doc is the effective document the rule set was compiled from.
	Doc *config.Document

	rules     []*rule // evaluation order: priority, then file order
	groups    []string
	windows   []window // ascending length
	winMins   []int64
	sumWins   int   // how many windows (shortest first) evaluation sums
	keepMS    int64 // how long buckets are kept: the dedupe horizon plus the longest window
	horizonMS int64 // dedupe horizon
	env       reflect.Type
	params    map[string]any
	flags     map[string]bool
	guards    Guards
}

type rule struct {
	id         string
	group      int
	stopOnErr  bool
	active     bool
	prog       *vm.Program
	once       bool
	cooldownMS int64
	emitType   string
	values     []namedProg
	action     *config.Action
	explain    []explainLeaf
}

type namedProg struct {
	name string
	prog *vm.Program
}

// explainLeaf is one sub-condition of a rule: a comparison (left op right)
// or a boolean leaf.
type explainLeaf struct {
	src         string
	op          string
	prog        *vm.Program
	left, right *vm.Program
	leftSrc     string
	rightSrc    string // "" when the right side is a constant
}

var adMetrics = map[string]bool{}

func init() {
	t := reflect.TypeOf(AdView{})
	for i := range t.NumField() {
		adMetrics[t.Field(i).Tag.Get("expr")] = true
	}
}

// Compile type-checks and compiles every rule of doc. version is the rule set
// version the document was published as (0 for an unpublished file). Errors
// are config.Errors with the file position and rule id of each problem.
func Compile(doc *config.Document, version int64) (*RuleSet, error) {
	rs := &RuleSet{
		Name: doc.Name, Version: version, SHA256: doc.SHA256(), Doc: doc,
		params: doc.Params, flags: doc.FeatureFlags,
	}
	if rs.params == nil {
		rs.params = map[string]any{}
	}
	aliases := map[string]string{}
	wins := append([]config.Duration(nil), doc.Windows...)
	sort.Slice(wins, func(i, j int) bool { return wins[i] < wins[j] })
	for _, w := range wins {
		name, alias := windowNames(w)
		for _, a := range alias {
			aliases[a] = name
		}
		rs.windows = append(rs.windows, window{name: name, minutes: int64(w.D() / time.Minute)})
		rs.winMins = append(rs.winMins, int64(w.D()/time.Minute))
		rs.keepMS = max(rs.keepMS, w.D().Milliseconds())
	}
	rs.horizonMS = max(doc.Dedupe.Horizon.D().Milliseconds(), rs.keepMS)
	// An event up to the horizon late is applied, and its windows reach one
	// longest window further back: keep buckets that long.
	rs.keepMS += rs.horizonMS
	var errs config.Errors
	env, err := envType(rs.params, rs.flags, rs.windows)
	if err != nil {
		return nil, config.Errors{{Pos: config.Pos{File: doc.File}, Msg: "params: " + err.Error()}}
	}
	rs.env = env
	envVal := reflect.New(env).Interface()
	patch := &constPatcher{params: rs.params, flags: rs.flags, aliases: aliases, used: map[string]bool{}}
	opts := func(extra ...expr.Option) []expr.Option {
		return append([]expr.Option{
			expr.Env(envVal), expr.DisableBuiltin("now"), expr.MaxNodes(MaxNodes), expr.Patch(patch),
			budgetOptions(), stepsOptions(), expr.Patch(newStepPatcher()), expr.Patch(newBudgetPatcher()),
		}, extra...)
	}

	groupIdx := map[string]int{}
	for i := range doc.Rules {
		cr := &doc.Rules[i]
		fail := func(pos config.Pos, format string, args ...any) {
			errs = append(errs, &config.Error{Pos: pos, RuleID: cr.ID, Msg: fmt.Sprintf(format, args...)})
		}
		g := cr.Group
		if g == "" {
			g = "default"
		}
		gi, ok := groupIdx[g]
		if !ok {
			gi = len(rs.groups)
			groupIdx[g] = gi
			rs.groups = append(rs.groups, g)
		}
		// Stage 2 reads a rule's id and action type back from its
		// proposals, as a proposal's source and type: they must pass there.
		if err := checkID("id", cr.ID); err != nil {
			fail(cr.Pos, "%s", err)
		}
		if cr.Action != nil {
			if err := checkID("action.type", cr.Action.Type); err != nil {
				fail(cr.Pos, "%s", err)
			}
		}
		if cr.Emit != nil { // a decision's type: held to the same, so it stays small
			if err := checkID("emit.type", cr.Emit.Type); err != nil {
				fail(cr.Pos, "%s", err)
			}
		}
		r := &rule{
			id: cr.ID, group: gi, stopOnErr: false,
			active:     (cr.Enabled == nil || *cr.Enabled) && (cr.EnabledBy == "" || rs.flags[cr.EnabledBy]),
			once:       cr.Once == "per_ad",
			cooldownMS: cr.Cooldown.D().Milliseconds(),
			action:     cr.Action,
		}
		if gc, ok := doc.Groups[g]; ok && gc.ContinueOnError != nil {
			r.stopOnErr = !*gc.ContinueOnError
		}
		if l, c, msg := sourceLimits(cr.When); msg != "" {
			fail(cr.WhenPos.At(l, c), "when: %s", msg)
			continue
		}
		prog, err := expr.Compile(cr.When, opts(expr.AsBool())...)
		if err != nil {
			l, c, msg := exprErr(err)
			fail(cr.WhenPos.At(l, c), "when: %s", msg)
			continue
		}
		r.prog = prog
		if r.explain, err = explainLeaves(cr.When, env, opts); err != nil {
			fail(cr.WhenPos.At(1, 1), "when: %s", err)
		}
		if cr.Emit != nil {
			r.emitType = cr.Emit.Type
			for j, v := range cr.Emit.Values {
				src := v
				if adMetrics[v] {
					src = "ad." + v
				}
				l, c, msg := sourceLimits(src)
				var p *vm.Program
				if msg == "" {
					var err error
					if p, err = expr.Compile(src, opts()...); err != nil {
						l, c, msg = exprErr(err)
					}
				}
				if msg != "" {
					pos := doc.PosOf(fmt.Sprintf("rules[%d].emit.values[%d]", i, j))
					if pos.Line == 0 {
						pos = cr.Pos
					} else if l == 1 {
						pos.Col += c - 1 // a one-line value: point into it
					}
					fail(pos, "emit value %s: %s", quoteShort(v), msg)
					continue
				}
				r.values = append(r.values, namedProg{name: v, prog: p})
			}
		}
		rs.rules = append(rs.rules, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	// Priority, then file order.
	order := make([]int, len(rs.rules))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return doc.Rules[order[a]].Priority < doc.Rules[order[b]].Priority
	})
	sorted := make([]*rule, len(order))
	for i, j := range order {
		sorted[i] = rs.rules[j]
	}
	rs.rules = sorted
	rs.guards = newGuards(doc.Guards)
	// Sum only up to the longest window a rule reads: windows are ascending,
	// and the ones after it stay zero, never read.
	rs.sumWins = 0
	for i, w := range rs.windows {
		if patch.used[w.name] {
			rs.sumWins = i + 1
		}
	}
	return rs, nil
}

// sourceLimits checks an expression's source against MaxSource and
// MaxDepth before expr parses it, in one pass that skips string literals
// and comments. It returns the line and column (from 1, in runes, as expr
// counts them) of the problem and what it is, or an empty message.
func sourceLimits(src string) (line, col int, msg string) {
	if len(src) > MaxSource {
		return 1, 1, fmt.Sprintf("the expression is %d bytes long; at most %d are allowed", len(src), MaxSource)
	}
	const (
		code = iota
		quoted
		raw
		lineComment
		blockComment
	)
	state, quote, escaped, depth := code, rune(0), false, 0
	line, col = 1, 0
	for i, r := range src {
		col++
		switch state {
		case code:
			switch r {
			case '"', '\'':
				state, quote = quoted, r
			case '`':
				state = raw
			case '/':
				if strings.HasPrefix(src[i+1:], "/") {
					state = lineComment
				} else if strings.HasPrefix(src[i+1:], "*") {
					state = blockComment
				}
			case '(', '[', '{':
				if depth++; depth > MaxDepth {
					return line, col, fmt.Sprintf("brackets nest more than %d deep", MaxDepth)
				}
			case ')', ']', '}':
				depth = max(depth-1, 0)
			}
		case quoted:
			switch {
			case escaped:
				escaped = false
			case r == '\\':
				escaped = true
			case r == quote:
				state = code
			}
		case raw:
			if r == '`' {
				state = code
			}
		case lineComment:
			if r == '\n' {
				state = code
			}
		case blockComment:
			// The / that opened the comment cannot close it: "/*/" is open.
			if r == '/' && i > 0 && src[i-1] == '*' && !strings.HasSuffix(src[:i], "/*") {
				state = code
			}
		}
		if r == '\n' {
			line, col = line+1, 0
		}
	}
	return 0, 0, ""
}

// quoteShort quotes s for an error message, cut after 64 bytes.
func quoteShort(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}

var snippetLine = regexp.MustCompile(`\s*\(\d+:\d+\)$`)

// typeNames renames Go types in expr's messages to what a rule author wrote.
var typeNames = strings.NewReplacer(
	"type rules.AdView", "ad", "type rules.WindowView", "the window", "type rules.EventView", "event",
	"rules.AdView", "ad", "rules.WindowView", "window", "rules.EventView", "event",
)

var structType = regexp.MustCompile(`type struct \{.*\} has no field`)

// exprErr extracts line, column (from 1) and the bare message of an expr error.
func exprErr(err error) (int, int, string) {
	var fe *file.Error
	line, col, msg := 1, 1, ""
	if errors.As(err, &fe) {
		line, col, msg = fe.Line, fe.Column+1, fe.Message
	} else {
		msg = snippetLine.ReplaceAllString(strings.SplitN(err.Error(), "\n", 2)[0], "")
	}
	msg = structType.ReplaceAllString(msg, "this parameter group has no field")
	return line, col, typeNames.Replace(msg)
}

// explainLeaves finds the sub-conditions of a when expression (the operands
// of &&, ||, ! and ?:) and compiles each, and each side of each comparison,
// so a decision can say what every part of its condition was.
func explainLeaves(src string, envT reflect.Type, opts func(...expr.Option) []expr.Option) ([]explainLeaf, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, err
	}
	var leaves []explainLeaf
	var walk func(n ast.Node) error
	walk = func(n ast.Node) error {
		switch n := n.(type) {
		case *ast.BinaryNode:
			switch n.Operator {
			case "&&", "||", "and", "or":
				if err := walk(n.Left); err != nil {
					return err
				}
				return walk(n.Right)
			case "==", "!=", "<", ">", "<=", ">=", "in", "not in", "matches", "contains", "startsWith", "endsWith":
				leaf := explainLeaf{src: n.String(), op: n.Operator, leftSrc: n.Left.String()}
				var err error
				if leaf.prog, err = expr.Compile(leaf.src, opts()...); err != nil {
					return err
				}
				if leaf.left, err = expr.Compile(leaf.leftSrc, opts()...); err != nil {
					return err
				}
				if leaf.right, err = expr.Compile(n.Right.String(), opts()...); err != nil {
					return err
				}
				if !isConstant(n.Right) {
					leaf.rightSrc = n.Right.String()
				}
				leaves = append(leaves, leaf)
				return nil
			}
		case *ast.UnaryNode:
			if n.Operator == "!" || n.Operator == "not" {
				return walk(n.Node)
			}
		case *ast.ConditionalNode:
			if err := walk(n.Cond); err != nil {
				return err
			}
			// A condition on params alone is decided for the rule set's
			// life: explain only the branch it takes.
			if isConstant(n.Cond) {
				p, err := expr.Compile(n.Cond.String(), opts(expr.AsBool())...)
				if err != nil {
					return err
				}
				out, err := expr.Run(p, reflect.New(envT).Interface())
				if err != nil {
					return err
				}
				if out.(bool) {
					return walk(n.Exp1)
				}
				return walk(n.Exp2)
			}
			if err := walk(n.Exp1); err != nil {
				return err
			}
			return walk(n.Exp2)
		case *ast.BoolNode:
			return nil
		}
		leaf := explainLeaf{src: n.String()}
		var err error
		if leaf.prog, err = expr.Compile(leaf.src, opts()...); err != nil {
			return err
		}
		leaves = append(leaves, leaf)
		return nil
	}
	return leaves, walk(tree.Node)
}

// isConstant reports whether n is a literal or reads only params and flags.
func isConstant(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.BoolNode, *ast.NilNode:
		return true
	case *ast.UnaryNode:
		return isConstant(n.Node)
	case *ast.ArrayNode:
		for _, e := range n.Nodes {
			if !isConstant(e) {
				return false
			}
		}
		return true
	case *ast.MemberNode:
		root, _, ok := memberPath(n)
		return ok && (root == "params" || root == "flags")
	}
	return false
}

// Windows returns the canonical names of the declared windows, shortest first.
func (rs *RuleSet) Windows() []string {
	out := make([]string, len(rs.windows))
	for i, w := range rs.windows {
		out[i] = w.name
	}
	return out
}

// RuleIDs returns the rule ids in evaluation order.
func (rs *RuleSet) RuleIDs() []string {
	out := make([]string, len(rs.rules))
	for i, r := range rs.rules {
		out[i] = r.id
	}
	return out
}

// KeepMS is how long window data is kept behind an ad's newest event: the
// dedupe horizon plus the longest window, so the windows of the latest event
// still accepted are whole. HorizonMS is how long event ids are remembered:
// an event older than that behind the ad's newest is refused as too late.
func (rs *RuleSet) KeepMS() int64    { return rs.keepMS }
func (rs *RuleSet) HorizonMS() int64 { return rs.horizonMS }
