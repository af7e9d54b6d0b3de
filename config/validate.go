package config

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	ruleIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	identRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate reports every problem of the document, in file order, as
// Errors, or nil. Messages say what to change; rule problems carry the
// rule id. Validate judges the document as it is: call Defaults first
// (Load does both).
func (d *Document) Validate() error {
	if errs := d.validate(nil); len(errs) > 0 {
		return errs
	}
	return nil
}

// validate is Validate for a document whose values at the paths in failed
// (and below them) could not be decoded: checks that would judge those
// values, which hold zeros the file never wrote, are left out.
func (d *Document) validate(failed map[string]bool) Errors {
	v := &validator{d: d, failed: failed}
	if strings.TrimSpace(d.Name) == "" {
		v.fail("name", "name must not be empty; it names the rule set on the config topic")
	}
	v.windows()
	v.params("params", d.Params)
	for _, name := range slices.Sorted(maps.Keys(d.FeatureFlags)) {
		if !identRe.MatchString(name) {
			v.failKey("feature_flags."+name, "feature flag %q must be a name of letters, digits and _ (not starting with a digit)", name)
		}
	}
	v.rules()
	v.guards()
	sortErrors(v.errs)
	return v.errs
}

type validator struct {
	d      *Document
	failed map[string]bool
	rule   string
	errs   Errors
}

// broken reports whether the value at one of paths, or a value that holds
// it, failed to decode.
func (v *validator) broken(paths ...string) bool {
	for _, p := range paths {
		for {
			if v.failed[p] {
				return true
			}
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return false
}

// fail reports a problem of the value at path, unless it failed to decode.
func (v *validator) fail(path, format string, args ...any) {
	if !v.broken(path) {
		v.errs = append(v.errs, &Error{Pos: v.d.at(path), RuleID: v.rule, Msg: fmt.Sprintf(format, args...)})
	}
}

func (v *validator) failKey(path, format string, args ...any) {
	if !v.broken(path) {
		v.errs = append(v.errs, &Error{Pos: v.d.keyAt(path), RuleID: v.rule, Msg: fmt.Sprintf(format, args...)})
	}
}

func (v *validator) windows() {
	d := v.d
	seen := map[Duration]bool{}
	for i, w := range d.Windows {
		path := fmt.Sprintf("windows[%d]", i)
		switch {
		case w <= 0:
			v.fail(path, "window %s must be longer than zero", w)
		case w.D()%time.Minute != 0:
			v.fail(path, "window %s must be a whole number of minutes", w)
		case seen[w]:
			v.fail(path, "window %s is listed twice", w)
		}
		seen[w] = true
	}
	for i := range d.Windows {
		if v.broken(fmt.Sprintf("windows[%d]", i)) {
			return
		}
	}
	if len(d.Windows) > 0 {
		if longest := slices.Max(d.Windows); d.Dedupe.Horizon < longest {
			v.fail("dedupe.horizon", "dedupe.horizon %s is shorter than the longest window %s; events older than the horizon could count twice", d.Dedupe.Horizon, longest)
		}
	}
}

// params checks that rules can read every key as params.x.y and that
// every number is finite.
func (v *validator) params(path string, val any) {
	switch x := val.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			p := path + "." + k
			if !identRe.MatchString(k) {
				v.failKey(p, "%s: key %q cannot be read by rules as %s; use letters, digits and _ (not starting with a digit)", path, k, p)
			}
			v.params(p, x[k])
		}
	case []any:
		for i, e := range x {
			v.params(fmt.Sprintf("%s[%d]", path, i), e)
		}
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			v.fail(path, "%s must be a finite number", path)
		}
	}
}

func (v *validator) rules() {
	d := v.d
	ids := map[string]int{}
	for i, r := range d.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		v.rule = ruleLabel(r.ID)
		switch j, dup := ids[r.ID]; {
		case v.broken(p + ".id"):
		case r.ID == "":
			v.fail(p, "rule %d has no id; every rule needs one, such as scale-winner", i+1)
		case len(r.ID) > MaxRuleIDSize:
			v.fail(p+".id", "the id is %d bytes; a rule id is at most %d", len(r.ID), MaxRuleIDSize)
		case !ruleIDRe.MatchString(r.ID):
			v.fail(p+".id", "id %s may hold only lowercase letters, digits, - and _, and must start with a letter or digit", quote(r.ID))
		case dup:
			v.fail(p+".id", "rule id %q is used twice; the first is at line %d", r.ID, d.Rules[j].Pos.Line)
		default:
			ids[r.ID] = i
		}
		if strings.TrimSpace(r.When) == "" && !v.broken(p+".when") {
			v.fail(p, "when is missing: write the condition for the rule to fire, such as w24h.roas > 4")
		}
		if r.Once != "" && r.Once != "per_ad" {
			v.fail(p+".once", "once must be per_ad or left out, not %s", quote(r.Once))
		}
		if r.Cooldown < 0 {
			v.fail(p+".cooldown", "cooldown must not be negative")
		}
		if r.Emit == nil && r.Action == nil && !v.broken(p+".emit", p+".action") {
			v.fail(p, "the rule does nothing: give it an emit (a decision to write) or an action (a change to propose), or both")
		}
		if r.Emit != nil && r.Emit.Type == "" && !v.broken(p+".emit.type") {
			v.fail(p+".emit", "emit needs a type, such as rag_index_winner")
		}
		if a := r.Action; a != nil {
			switch {
			case v.broken(p+".action.type", p+".action.change_pct"):
			case a.Type == "":
				v.fail(p+".action", "action needs a type, such as budget_change or pause")
			case math.IsInf(a.ChangePct, 0) || math.IsNaN(a.ChangePct):
				v.fail(p+".action.change_pct", "change_pct must be a finite number")
			case a.Type == "budget_change" && a.ChangePct == 0:
				v.fail(p+".action", "a budget_change needs change_pct, such as 20 for +20%% or -10 for -10%%")
			case a.Type == "budget_change" && a.ChangePct <= -100:
				v.fail(p+".action.change_pct", "change_pct %v would take the budget to zero or below; use more than -100", a.ChangePct)
			}
		}
		if r.EnabledBy != "" && !v.broken("feature_flags") {
			if _, ok := d.FeatureFlags[r.EnabledBy]; !ok {
				v.fail(p+".enabled_by", "enabled_by names feature flag %s, which feature_flags does not define%s", quote(r.EnabledBy), flagList(d.FeatureFlags))
			}
		}
	}
	v.rule = ""
}

func flagList(flags map[string]bool) string {
	if len(flags) == 0 {
		return ""
	}
	return " (it has " + strings.Join(slices.Sorted(maps.Keys(flags)), ", ") + ")"
}

func (v *validator) guards() {
	g := v.d.Guards
	const p = "guards."
	if per := g.RateLimit.Per; per != "account" && per != "ad" {
		v.fail(p+"rate_limit.per", "rate_limit.per must be account or ad, not %s", quote(per))
	}
	if g.RateLimit.MaxPerHour < 1 {
		v.fail(p+"rate_limit.max_per_hour", "rate_limit.max_per_hour must be at least 1, got %d; to stop all actions set guards.enabled: false", g.RateLimit.MaxPerHour)
	}
	if g.RateLimit.MaxPerDay < 1 {
		v.fail(p+"rate_limit.max_per_day", "rate_limit.max_per_day must be at least 1, got %d; to stop all actions set guards.enabled: false", g.RateLimit.MaxPerDay)
	}
	if c := g.Velocity.MaxChangePct; !(c > 0) || math.IsInf(c, 0) {
		v.fail(p+"budget_velocity.max_change_pct", "budget_velocity.max_change_pct must be more than 0, got %v", c)
	}
	if g.Velocity.Window <= 0 {
		v.fail(p+"budget_velocity.window", "budget_velocity.window must be longer than zero, got %s", g.Velocity.Window)
	}
	switch j := g.Jitter; {
	case v.broken(p+"jitter.min", p+"jitter.max"):
	case j.Min < 0:
		v.fail(p+"jitter.min", "jitter.min must not be negative")
	case j.Min > j.Max:
		v.fail(p+"jitter.min", "jitter.min %s is more than jitter.max %s", j.Min, j.Max)
	}
	if f := g.Fuzzy.VariancePct; !(f >= 0 && f < 50) {
		v.fail(p+"fuzzy_budget.variance_pct", "fuzzy_budget.variance_pct must be at least 0 and below 50, got %v", f)
	}
}
