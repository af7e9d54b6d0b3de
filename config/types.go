package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Document is one rule set with its parameters: the schema of a rules file
// after layering. It is an immutable value once Load returns it; nothing in
// this package caches or shares it.
type Document struct {
	// Name names the rule set; it is the key of the config topic. Default "default".
	Name string `yaml:"name" json:"name"`
	// Description is free text for people.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Params are free-form nested values that rule expressions read as params.x.y.
	Params map[string]any `yaml:"params,omitempty" json:"params,omitempty"`
	// FeatureFlags switch rules on and off through a rule's enabled_by.
	FeatureFlags map[string]bool `yaml:"feature_flags,omitempty" json:"feature_flags,omitempty"`
	// Windows are the rolling windows rules may read, as w<window> (w24h).
	// Default [1h, 6h, 24h, 7d].
	Windows []Duration `yaml:"windows,omitempty" json:"windows,omitempty"`
	// Dedupe sets how far back duplicate event ids are remembered.
	Dedupe Dedupe `yaml:"dedupe,omitempty" json:"dedupe,omitempty"`
	// Groups configure rule groups by name.
	Groups map[string]Group `yaml:"groups,omitempty" json:"groups,omitempty"`
	// Rules are evaluated by priority, then file order.
	Rules []Rule `yaml:"rules" json:"rules"`
	// Guards configure stage 2, the safe executor.
	Guards Guards `yaml:"guards" json:"guards"`

	// File is the name the document was loaded from, for messages.
	File string `yaml:"-" json:"-"`
	// Environment is the environments overlay that was applied, if any.
	Environment string `yaml:"-" json:"-"`

	// pos records where each value came from, by path (rules[1].cooldown),
	// so that Defaults can tell an explicit zero from a missing key and
	// Validate can point at the right line. Load fills it; it is nil for
	// documents built in code.
	pos map[string]loc
}

// Dedupe configures the event-id memory of stage 1.
type Dedupe struct {
	// Horizon is how far behind an ad's newest event ids are remembered.
	// Default: the longest window. Never shorter than the longest window.
	Horizon Duration `yaml:"horizon,omitempty" json:"horizon,omitempty"`
}

// Group configures a rule group.
type Group struct {
	// ContinueOnError: when true (the default) a rule that fails at run time
	// is counted and skipped and the group's later rules still run; when
	// false the group's later rules are skipped for that event.
	ContinueOnError *bool `yaml:"continue_on_error,omitempty" json:"continue_on_error,omitempty"`
}

// Rule is one rule of a rule set.
type Rule struct {
	ID          string `yaml:"id" json:"id"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Group names the rule's group; default "default".
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
	// Priority orders evaluation: lower first; ties keep file order. Default 0.
	Priority int `yaml:"priority,omitempty" json:"priority,omitempty"`
	// Enabled switches the rule off when false. Default true.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// EnabledBy names a feature flag that must be true for the rule to run.
	EnabledBy string `yaml:"enabled_by,omitempty" json:"enabled_by,omitempty"`
	// When is the condition, an expr expression of type bool.
	When string `yaml:"when" json:"when"`
	// Once is "" or "per_ad": fire at most once per ad.
	Once string `yaml:"once,omitempty" json:"once,omitempty"`
	// Cooldown is the least event time between two firings for one ad.
	Cooldown Duration `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
	// Emit makes the rule write a decision.
	Emit *Emit `yaml:"emit,omitempty" json:"emit,omitempty"`
	// Action makes the rule propose an action to the guards.
	Action *Action `yaml:"action,omitempty" json:"action,omitempty"`

	// Pos is where the rule starts in its file.
	Pos Pos `yaml:"-" json:"-"`
	// WhenPos maps positions inside When back to the file.
	WhenPos ExprPos `yaml:"-" json:"-"`
}

// Emit describes the decision a rule writes.
type Emit struct {
	// Type is the decision type, e.g. rag_index_winner.
	Type string `yaml:"type" json:"type"`
	// Values name what the decision carries: an ad metric (ctr) or an
	// expression (w24h.roas).
	Values []string `yaml:"values,omitempty" json:"values,omitempty"`
}

// Action describes the proposal a rule makes.
type Action struct {
	// Type is the action type: budget_change, pause, or another word the
	// executors downstream understand.
	Type string `yaml:"type" json:"type"`
	// ChangePct is the budget change in percent for budget_change (20 = +20%).
	ChangePct float64 `yaml:"change_pct,omitempty" json:"change_pct,omitempty"`
}

// Guards configure the safe executor (stage 2).
type Guards struct {
	// Enabled switches the executor on; when false every proposal is
	// rejected with reason "disabled". Default true.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// PollInterval is accepted for the predecessor's poll_interval_ms; adrules
	// is event driven and does not poll.
	PollInterval Duration       `yaml:"poll_interval,omitempty" json:"poll_interval,omitempty"`
	RateLimit    RateLimit      `yaml:"rate_limit" json:"rate_limit"`
	Velocity     BudgetVelocity `yaml:"budget_velocity" json:"budget_velocity"`
	Jitter       Jitter         `yaml:"jitter" json:"jitter"`
	Fuzzy        FuzzyBudget    `yaml:"fuzzy_budget" json:"fuzzy_budget"`
}

// RateLimit caps approved actions in sliding event-time windows.
type RateLimit struct {
	// Per is "account" (default) or "ad": the scope of the limits.
	Per string `yaml:"per,omitempty" json:"per,omitempty"`
	// MaxPerHour: default 15.
	MaxPerHour int `yaml:"max_per_hour,omitempty" json:"max_per_hour,omitempty"`
	// MaxPerDay: default 100.
	MaxPerDay int `yaml:"max_per_day,omitempty" json:"max_per_day,omitempty"`
}

// BudgetVelocity caps how far an entity's budget may move within a window.
type BudgetVelocity struct {
	// MaxChangePct: default 20.
	MaxChangePct float64 `yaml:"max_change_pct,omitempty" json:"max_change_pct,omitempty"`
	// Window: default 6h.
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
}

// Jitter delays execution by a hash-derived amount in [Min, Max].
type Jitter struct {
	// Enabled: default true. When false, execute_after is the proposal's ts.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Min: default 3s (or Max, when only Max is given and it is shorter).
	// An explicit 0 is kept, so it is always encoded.
	Min Duration `yaml:"min,omitempty" json:"min"`
	// Max: default 18s (or Min, when only Min is given and it is longer).
	// An explicit 0 is kept, so it is always encoded.
	Max Duration `yaml:"max,omitempty" json:"max"`
}

// FuzzyBudget moves approved budgets by a hash-derived share within ±VariancePct.
type FuzzyBudget struct {
	// Enabled: default true. When false, final_budget is new_budget.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// VariancePct: default 3. An explicit 0 is kept, so it is always encoded.
	VariancePct float64 `yaml:"variance_pct,omitempty" json:"variance_pct"`
}

// Duration is a time.Duration written as 90s, 30m, 6h or 7d.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the duration in the largest unit that divides it: 7d, 6h, 30m, 3s, 250ms.
func (d Duration) String() string {
	v := time.Duration(d)
	switch {
	case v == 0:
		return "0s"
	case v%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	case v%time.Hour == 0:
		return strconv.FormatInt(int64(v/time.Hour), 10) + "h"
	case v%time.Minute == 0:
		return strconv.FormatInt(int64(v/time.Minute), 10) + "m"
	case v%time.Second == 0:
		return strconv.FormatInt(int64(v/time.Second), 10) + "s"
	case v%time.Millisecond == 0:
		return strconv.FormatInt(int64(v/time.Millisecond), 10) + "ms"
	}
	return v.String()
}

// ParseDuration parses Go durations (90s, 1h30m) and whole days (7d).
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%s is not a duration; write it like 30m, 6h or 7d", quote(s))
		}
		return Duration(time.Duration(days) * 24 * time.Hour), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s is not a duration; write it like 30m, 6h or 7d", quote(s))
	}
	return Duration(v), nil
}

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses what ParseDuration accepts.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Pos is a position in a file. Line and Col count from 1; zero means unknown.
//
// When an environment variable gave the value, Var names it (without the
// $) and File is still the file it was applied to; Line and Col then count
// within the variable's value, when they are known. String writes such a
// position as FILE: $VAR, so that a message reads "a.yaml: $VAR: ...".
type Pos struct {
	File string
	Line int
	Col  int
	Var  string
}

func (p Pos) String() string {
	s := p.File
	if p.Var != "" {
		if s != "" {
			s += ": "
		}
		s += "$" + p.Var
	}
	switch {
	case p.Line == 0:
		return s
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", s, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", s, p.Line, p.Col)
}

// ExprPos maps a position inside an expression (line and column counted
// from 1, as expr reports them) back to the file the expression came from,
// whatever YAML style (plain, quoted, literal |, folded >) held it.
type ExprPos struct {
	File string
	// Var names the environment variable that gave the expression, if one
	// did; Lines then count within its value (see Pos).
	Var string
	// Lines holds, for each source line of the scalar's content in order,
	// the file line, the file column of its first content byte, and its
	// length in bytes.
	Lines []LineSpan
	// Folded is true when YAML joined the source lines with spaces (plain
	// multi-line and folded > scalars), so the expression is one line.
	Folded bool
}

// LineSpan is one source line of a scalar's content.
//
// ExprLine and ExprCol say where the span starts in the expression (from
// 1). Load always sets them; when they are zero, At assumes what Folded
// says: one expression line per span, or one line joined with spaces.
type LineSpan struct{ Line, Col, Len, ExprLine, ExprCol int }

// At returns the file position of expression position (line, col).
func (e ExprPos) At(line, col int) Pos {
	p := Pos{File: e.File, Var: e.Var}
	if len(e.Lines) == 0 {
		return p
	}
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	if e.Lines[0].ExprLine == 0 {
		return e.atLegacy(p, line, col)
	}
	// The span on the expression line that starts at or before col; or
	// the line's first span, when col lies in the indentation before it.
	at := -1
	for i, l := range e.Lines {
		if l.ExprLine == line && (at < 0 || l.ExprCol <= col) {
			at = i
		}
	}
	if at < 0 {
		// No content on that line: the end of the last span before it.
		for i, l := range e.Lines {
			if l.ExprLine < line {
				at = i
			}
		}
		l := e.Lines[max(at, 0)]
		p.Line, p.Col = l.Line, l.Col+l.Len
		return p
	}
	l := e.Lines[at]
	p.Line, p.Col = l.Line, max(1, l.Col+min(col-l.ExprCol, l.Len))
	return p
}

// atLegacy maps positions for spans without expression coordinates.
func (e ExprPos) atLegacy(p Pos, line, col int) Pos {
	if !e.Folded {
		i := min(line-1, len(e.Lines)-1)
		p.Line, p.Col = e.Lines[i].Line, e.Lines[i].Col+col-1
		return p
	}
	// Folded: source lines were joined with one space each.
	off := col - 1
	for i, l := range e.Lines {
		if off <= l.Len || i == len(e.Lines)-1 {
			p.Line, p.Col = l.Line, l.Col+off
			return p
		}
		off -= l.Len + 1
	}
	return p
}

// Error is one problem in a rules file, at a position, possibly in a rule.
type Error struct {
	Pos    Pos
	RuleID string
	Msg    string
}

func (e *Error) Error() string {
	if e.RuleID != "" {
		return fmt.Sprintf("%s: rule %s: %s", e.Pos, e.RuleID, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
