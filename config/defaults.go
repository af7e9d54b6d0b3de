package config

import (
	"slices"
	"time"
)

// Default values, as the field docs of the schema state them.
const (
	DefaultName             = "default"
	DefaultGroup            = "default"
	DefaultMaxPerHour       = 15
	DefaultMaxPerDay        = 100
	DefaultMaxChangePct     = 20
	DefaultVelocityWindow   = Duration(6 * time.Hour)
	DefaultJitterMin        = Duration(3 * time.Second)
	DefaultJitterMax        = Duration(18 * time.Second)
	DefaultFuzzyVariancePct = 3
)

// DefaultWindows returns the windows a document gets when it names none:
// 1h, 6h, 24h and 7d.
func DefaultWindows() []Duration {
	return []Duration{Duration(time.Hour), Duration(6 * time.Hour), Duration(24 * time.Hour), Duration(7 * 24 * time.Hour)}
}

// Defaults fills in what the document leaves out. A number the file gives
// explicitly, even 0, is kept (Validate then judges it); only a missing
// one gets its default. Load calls Defaults; a document built in code
// should call it before Validate. Calling it twice changes nothing.
//
// After Defaults, every switch is explicit (Enabled pointers are set) and
// every group a rule names, and "default", has an entry, so that documents
// with the same meaning have the same Canonical form.
func (d *Document) Defaults() {
	if d.Name == "" {
		d.Name = DefaultName
	}
	if len(d.Windows) == 0 {
		d.Windows = DefaultWindows()
	}
	if d.Dedupe.Horizon == 0 && !d.set("dedupe.horizon") {
		d.Dedupe.Horizon = slices.Max(d.Windows)
	}

	g := &d.Guards
	g.Enabled = orTrue(g.Enabled)
	if g.RateLimit.Per == "" {
		g.RateLimit.Per = "account"
	}
	if g.RateLimit.MaxPerHour == 0 && !d.set("guards.rate_limit.max_per_hour") {
		g.RateLimit.MaxPerHour = DefaultMaxPerHour
	}
	if g.RateLimit.MaxPerDay == 0 && !d.set("guards.rate_limit.max_per_day") {
		g.RateLimit.MaxPerDay = DefaultMaxPerDay
	}
	if g.Velocity.MaxChangePct == 0 && !d.set("guards.budget_velocity.max_change_pct") {
		g.Velocity.MaxChangePct = DefaultMaxChangePct
	}
	if g.Velocity.Window == 0 && !d.set("guards.budget_velocity.window") {
		g.Velocity.Window = DefaultVelocityWindow
	}
	g.Jitter.Enabled = orTrue(g.Jitter.Enabled)
	minSet, maxSet := g.Jitter.Min != 0 || d.set("guards.jitter.min"), g.Jitter.Max != 0 || d.set("guards.jitter.max")
	if !minSet {
		g.Jitter.Min = DefaultJitterMin
		if maxSet {
			g.Jitter.Min = min(g.Jitter.Min, g.Jitter.Max)
		}
	}
	if !maxSet {
		g.Jitter.Max = max(DefaultJitterMax, g.Jitter.Min)
	}
	g.Fuzzy.Enabled = orTrue(g.Fuzzy.Enabled)
	if g.Fuzzy.VariancePct == 0 && !d.set("guards.fuzzy_budget.variance_pct") {
		g.Fuzzy.VariancePct = DefaultFuzzyVariancePct
	}

	if d.Groups == nil {
		d.Groups = map[string]Group{}
	}
	groups := []string{DefaultGroup}
	for i := range d.Rules {
		r := &d.Rules[i]
		if r.Group == "" {
			r.Group = DefaultGroup
		}
		r.Enabled = orTrue(r.Enabled)
		groups = append(groups, r.Group)
	}
	for _, name := range groups {
		if _, ok := d.Groups[name]; !ok {
			d.Groups[name] = Group{}
		}
	}
	for name, gr := range d.Groups {
		gr.ContinueOnError = orTrue(gr.ContinueOnError)
		d.Groups[name] = gr
	}
}

func orTrue(b *bool) *bool {
	if b != nil {
		return b
	}
	t := true
	return &t
}
