package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/expr-lang/expr/vm"
)

// Evaluator evaluates a rule set for one goroutine: it owns an expr VM with
// the memory budget set and a reusable environment.
type Evaluator struct {
	rs     *RuleSet
	vm     vm.VM
	env    any
	base   unsafe.Pointer
	offs   []uintptr // field offsets: ad, event, then windows
	budget budget    // what the program running has built (StringBudget), and the rule's steps (StepBudget)
	wins   []Totals
	halted []bool
}

// NewEvaluator returns an Evaluator for rs.
func (rs *RuleSet) NewEvaluator() *Evaluator {
	ptr := reflect.New(rs.env)
	el := ptr.Elem()
	setValue(el.Field(envParams), rs.params)
	flags := make(map[string]any, len(rs.flags))
	for k, v := range rs.flags {
		flags[k] = v
	}
	setValue(el.Field(envFlags), flags)
	e := &Evaluator{
		rs: rs, vm: vm.VM{MemoryBudget: MemoryBudget},
		env: ptr.Interface(), base: ptr.UnsafePointer(),
		wins: make([]Totals, len(rs.windows)), halted: make([]bool, len(rs.groups)),
	}
	for i := range rs.env.NumField() {
		e.offs = append(e.offs, rs.env.Field(i).Offset)
	}
	*(**budget)(unsafe.Add(e.base, e.offs[envBudget])) = &e.budget
	return e
}

// run runs one program with a fresh string budget; the steps it takes add
// to the rule's.
func (e *Evaluator) run(p *vm.Program) (any, error) {
	e.budget.bytes, e.budget.elems = 0, 0
	return e.vm.Run(p, e.env)
}

// Result collects what one evaluation produced. Reset it between events, or
// let it grow over a batch.
type Result struct {
	Decisions []Decision
	Proposals []Proposal
	Errors    []RuleError
}

// Reset empties r, keeping its memory.
func (r *Result) Reset() {
	r.Decisions, r.Proposals, r.Errors = r.Decisions[:0], r.Proposals[:0], r.Errors[:0]
}

// Eval runs every active rule, in order, for the event ev just applied to st,
// and appends what fires to res. It records once and cooldown marks in st.
// It does no I/O and reads no clock: the output is a function of its inputs.
func (e *Evaluator) Eval(st *AdState, ev *Event, in Input, res *Result) {
	rs := e.rs
	*(*AdView)(unsafe.Add(e.base, e.offs[envAd])) = adView(st, ev.TS)
	*(*EventView)(unsafe.Add(e.base, e.offs[envEvent])) = eventView(ev)
	if n := rs.sumWins; n > 0 {
		st.windowSums(ev.TS/60000, rs.winMins[:n], e.wins[:n])
		for i := range n {
			*(*WindowView)(unsafe.Add(e.base, e.offs[envWindows+i])) = e.wins[i].window()
		}
	}
	clear(e.halted)
	for _, r := range rs.rules {
		if !r.active || e.halted[r.group] {
			continue
		}
		if r.once || r.cooldownMS > 0 {
			if i := st.mark(r.id); i >= 0 && (r.once || ev.TS-st.Marks[i].Last < r.cooldownMS) {
				continue
			}
		}
		e.budget.steps = 0 // one budget for the rule's when, values and explain lines
		out, err := e.run(r.prog)
		if err != nil {
			e.fail(r, ev, res, err.Error())
			continue
		}
		if fired, _ := out.(bool); !fired {
			continue
		}
		if r.action != nil {
			p, msg := e.propose(r, st, ev, in)
			if msg != "" {
				e.fail(r, ev, res, msg)
				continue
			}
			res.Proposals = append(res.Proposals, p)
		}
		if r.emitType != "" {
			res.Decisions = append(res.Decisions, e.decide(r, st, ev, in))
		}
		if r.once || r.cooldownMS > 0 {
			st.setMark(r.id, ev.TS)
		}
	}
}

func (e *Evaluator) fail(r *rule, ev *Event, res *Result, msg string) {
	msg, _, _ = strings.Cut(msg, "\n") // expr appends a source snippet
	res.Errors = append(res.Errors, RuleError{RuleID: r.id, AdID: strings.Clone(ev.AdID), Err: msg})
	if r.stopOnErr {
		e.halted[r.group] = true
	}
}

func (e *Evaluator) decide(r *rule, st *AdState, ev *Event, in Input) Decision {
	rs := e.rs
	d := Decision{
		DecisionID: ID("decision", rs.SHA256, r.id, ev.AdID, ev.EventID),
		RuleID:     r.id, RulesetVersion: rs.Version, RulesetSHA256: rs.SHA256, Type: r.emitType,
		AccountID: st.AccountID, CampaignID: st.CampaignID, AdsetID: st.AdsetID, AdID: st.AdID,
		VideoID: st.VideoID, EventID: strings.Clone(ev.EventID), TS: Time(ev.TS), Input: in,
	}
	if len(r.values) > 0 {
		d.Values = make(map[string]any, len(r.values))
		room := maxValuesBytes
		for i, v := range r.values {
			if room -= 6*len(v.name) + 4; room < 0 { // the key, escaped, quoted, and ":" ","
				d.Values["..."] = fmt.Sprintf("%d more left out: values hold at most %d bytes", len(r.values)-i, maxValuesBytes)
				break
			}
			out, err := e.run(v.prog)
			if err != nil {
				out = "error: " + err.Error()
			}
			var n int
			d.Values[v.name], n = jsonValue(out, room)
			room -= n
		}
	}
	d.Explain = make([]string, 0, len(r.explain))
	room := maxExplainBytes
	for i := range r.explain {
		line := e.explain(&r.explain[i])
		if room -= len(line); room < 0 {
			d.Explain = append(d.Explain, fmt.Sprintf("... %d more left out: explain holds at most %d bytes", len(r.explain)-i, maxExplainBytes))
			break
		}
		d.Explain = append(d.Explain, line)
	}
	return d
}

// What one decision may hold, so that it always fits a Kafka record (the
// broker's limit is 1 MB by default) with room to spare.
const (
	// maxValuesBytes caps the JSON of a decision's values: a value past
	// what is left is written as an error, and when even a key does not
	// fit, the rest are left out, under the key "...".
	maxValuesBytes = 64 << 10
	// maxExplainBytes caps a decision's explain lines: the lines past it
	// are left out, and a last line says how many.
	maxExplainBytes = 64 << 10
	// maxShownBytes caps one value shown in an explain line.
	maxShownBytes = 256
)

// explain renders one sub-condition as "left value op right value result",
// e.g. "ad.ctr 0.0345 > 0.03 true".
func (e *Evaluator) explain(l *explainLeaf) string {
	res := e.show(l.prog)
	if l.left == nil {
		return l.src + " " + res
	}
	s := l.leftSrc + " " + e.show(l.left) + " " + l.op + " "
	if l.rightSrc != "" {
		s += l.rightSrc + " "
	}
	return s + e.show(l.right) + " " + res
}

func (e *Evaluator) show(p *vm.Program) string {
	out, err := e.run(p)
	if err != nil {
		return "error"
	}
	var s string
	switch v := out.(type) {
	case float64:
		return strconv.FormatFloat(v, 'g', 6, 64)
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	case string:
		if len(v) > maxShownBytes {
			return strconv.Quote(cut(v, maxShownBytes)) + fmt.Sprintf("... (%d bytes)", len(v))
		}
		return strconv.Quote(v)
	default:
		b, _ := json.Marshal(out)
		s = string(b)
	}
	if len(s) > maxShownBytes {
		return cut(s, maxShownBytes) + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// cut returns s cut to at most n bytes, at a rune's start.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// jsonValue returns v as a decision writes it, and the bytes it takes, at
// most room: NaN and infinities become nil; strings are cloned (they may
// share a decoder's memory); anything else is encoded here, as
// json.RawMessage. A value that JSON cannot write, or larger than room, is
// written as an error instead.
func jsonValue(v any, room int) (any, int) {
	switch x := v.(type) {
	case nil:
		return nil, 4
	case bool, int:
		return v, 20
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, 4
		}
		return v, 24
	case string:
		if n := 6*len(x) + 2; n <= room { // JSON writes a byte in at most 6
			return strings.Clone(x), n
		}
	}
	b, err := json.Marshal(v)
	switch {
	case err != nil:
		msg := "error: " + err.Error()
		return msg, 6*len(msg) + 2
	case len(b) > room:
		msg := fmt.Sprintf("error: a value of %d bytes, and only %d are left of the %d a decision's values may take", len(b), max(room, 0), maxValuesBytes)
		return msg, len(msg) + 2
	}
	if _, ok := v.(string); ok {
		return strings.Clone(v.(string)), len(b)
	}
	return json.RawMessage(b), len(b)
}

func (e *Evaluator) propose(r *rule, st *AdState, ev *Event, in Input) (Proposal, string) {
	rs := e.rs
	p := Proposal{
		ActionID: ID("action", rs.SHA256, r.id, ev.AdID, ev.EventID),
		TS:       Time(ev.TS), AccountID: st.AccountID, CampaignID: st.CampaignID,
		AdsetID: st.AdsetID, AdID: st.AdID, Type: r.action.Type, Source: r.id,
		RulesetVersion: rs.Version, Input: &in,
	}
	if r.action.Type == "budget_change" {
		if !st.HasBudget {
			return p, "budget_change: the ad's budget is not known (no event carried budget)"
		}
		old := st.Budget
		nb := math.Round(old*(1+r.action.ChangePct/100)*100) / 100
		if !(nb >= 0 && nb <= MaxMoney) { // NaN and infinities too
			return p, fmt.Sprintf("budget_change: %g scaled by %g%% is %g, past the limit of money (%s)", old, r.action.ChangePct, nb, maxMoneyText)
		}
		p.OldBudget, p.NewBudget = &old, &nb
	}
	return p, ""
}
