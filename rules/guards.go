package rules

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/adrules/adrules/config"
)

// Verdict reasons (DESIGN section 5a, S8).
const (
	ReasonDisabled       = "disabled"
	ReasonRateLimitHour  = "rate_limit_hour"
	ReasonRateLimitDay   = "rate_limit_day"
	ReasonBudgetVelocity = "budget_velocity"
)

// Verdict is the guards' answer to one proposal (topic adrules.actions).
type Verdict struct {
	Proposal
	Status         string   `json:"status"` // approved or rejected
	Reason         string   `json:"reason,omitempty"`
	FinalBudget    *float64 `json:"final_budget,omitempty"`
	ExecuteAfter   *Time    `json:"execute_after,omitempty"`
	RulesetVersion int64    `json:"ruleset_version"`
	RulesetSHA256  string   `json:"ruleset_sha256"`
}

// Guards is the compiled safe-executor configuration.
type Guards struct {
	Enabled      bool
	PerAd        bool
	MaxPerHour   int
	MaxPerDay    int
	MaxChangePct float64
	VelocityMS   int64
	JitterMinMS  int64
	JitterMaxMS  int64
	VariancePct  float64
}

func newGuards(g config.Guards) Guards {
	out := Guards{
		Enabled:      g.Enabled == nil || *g.Enabled,
		PerAd:        g.RateLimit.Per == "ad",
		MaxPerHour:   g.RateLimit.MaxPerHour,
		MaxPerDay:    g.RateLimit.MaxPerDay,
		MaxChangePct: g.Velocity.MaxChangePct,
		VelocityMS:   g.Velocity.Window.D().Milliseconds(),
	}
	if g.Jitter.Enabled == nil || *g.Jitter.Enabled {
		out.JitterMinMS, out.JitterMaxMS = g.Jitter.Min.D().Milliseconds(), g.Jitter.Max.D().Milliseconds()
	}
	if g.Fuzzy.Enabled == nil || *g.Fuzzy.Enabled {
		out.VariancePct = g.Fuzzy.VariancePct
	}
	return out
}

// Guards returns the rule set's compiled guard settings.
func (rs *RuleSet) Guards() Guards { return rs.guards }

// Approval is one approved action in an account's history.
type Approval struct {
	TS int64
	// Entity is the proposal's ad_id, or "adset:" and its adset_id when it
	// names no ad: the scope of per-ad rate limits.
	Entity string
}

// BudgetChange is one approved budget change of an entity (an ad, or an
// adset when the proposal names no ad).
type BudgetChange struct {
	Entity    string
	TS        int64
	OldBudget float64
}

// AccountState is everything stage 2 knows about one account: its approved
// actions and approved budget changes within the guards' windows. Both are
// sorted by ts.
type AccountState struct {
	AccountID string
	MaxTS     int64
	Approved  []Approval
	Changes   []BudgetChange
}

const (
	hourMS = 3_600_000
	dayMS  = 24 * hourMS
)

// Check applies the guards to p in the order of S8 and, when p is approved,
// records it in st. It reads no clock and no random source: fuzz and jitter
// come from a hash of the action id and the rule set's hash.
func (rs *RuleSet) Check(p *Proposal, st *AccountState) Verdict {
	g := &rs.guards
	v := Verdict{Proposal: *p, Status: "rejected", RulesetVersion: rs.Version, RulesetSHA256: rs.SHA256}
	v.Order = nil // where it stood in the queue is stage 2's business, not the verdict's
	t := int64(p.TS)
	entity := p.AdID
	if entity == "" {
		entity = "adset:" + p.AdsetID
	}
	scope := func(a Approval) bool { return !g.PerAd || a.Entity == entity }
	switch {
	case !g.Enabled:
		v.Reason = ReasonDisabled
		return v
	case st.count(t-hourMS, t, scope) >= g.MaxPerHour:
		v.Reason = ReasonRateLimitHour
		return v
	case st.count(t-dayMS, t, scope) >= g.MaxPerDay:
		v.Reason = ReasonRateLimitDay
		return v
	}
	budget := p.Type == "budget_change" && p.OldBudget != nil && p.NewBudget != nil
	if budget {
		base := *p.OldBudget
		for _, c := range st.Changes {
			if c.Entity == entity && c.TS > t-g.VelocityMS && c.TS <= t {
				base = c.OldBudget
				break
			}
		}
		if exceeds(*p.NewBudget, base, g.MaxChangePct) {
			v.Reason = ReasonBudgetVelocity
			return v
		}
	}
	v.Status = "approved"
	d, j := rs.fuzzJitter(p.ActionID)
	ea := Time(t + j)
	v.ExecuteAfter = &ea
	if budget {
		f := fuzz(*p.NewBudget, d, g.VariancePct)
		v.FinalBudget = &f
		st.Changes = insertSorted(st.Changes, BudgetChange{Entity: entity, TS: t, OldBudget: *p.OldBudget},
			func(c BudgetChange) int64 { return c.TS })
	}
	st.Approved = insertSorted(st.Approved, Approval{TS: t, Entity: entity}, func(a Approval) int64 { return a.TS })
	st.MaxTS = max(st.MaxTS, t)
	// Keep twice the longest window: a proposal up to one window late
	// still sees every approval its own windows reach.
	st.expire(rs.AccountKeepMS())
	return v
}

// AccountKeepMS is how far behind an account's newest approval the guards
// look: twice the longest of a day and the budget velocity window, so a
// proposal up to one window late still sees every approval its own windows
// reach. An account's history older than that is dropped, and an account
// silent for longer may leave memory (engine.Evicter).
func (rs *RuleSet) AccountKeepMS() int64 { return 2 * max(dayMS, rs.guards.VelocityMS) }

func exceeds(newBudget, base, maxPct float64) bool {
	if base == 0 {
		return newBudget != 0
	}
	return math.Abs(newBudget-base)/base*100 > maxPct
}

// fuzzJitter derives d in [-1, 1] and the jitter in [min, max] ms from the
// action id and the rule set hash.
func (rs *RuleSet) fuzzJitter(actionID string) (float64, int64) {
	h := sha256.Sum256([]byte(actionID + "\x00" + rs.SHA256))
	u1 := binary.BigEndian.Uint64(h[0:8])
	u2 := binary.BigEndian.Uint64(h[8:16])
	d := float64(u1>>11)/float64(1<<53)*2 - 1
	g := &rs.guards
	j := g.JitterMinMS
	if span := g.JitterMaxMS - g.JitterMinMS; span > 0 {
		j += int64(u2 % uint64(span+1))
	}
	return d, j
}

// fuzz moves budget by d*variancePct percent, rounded to the cent and kept
// inside the band.
func fuzz(budget, d, variancePct float64) float64 {
	v := variancePct / 100
	f := math.Round(budget*(1+d*v)*100) / 100
	lo, hi := math.Ceil(budget*(1-v)*100)/100, math.Floor(budget*(1+v)*100)/100
	if lo > hi {
		// The band is narrower than a cent: no cent inside it to move to.
		return budget
	}
	return min(max(f, lo), hi)
}

func (st *AccountState) count(from, to int64, ok func(Approval) bool) int {
	n := 0
	for _, a := range st.Approved {
		if a.TS > from && a.TS <= to && ok(a) {
			n++
		}
	}
	return n
}

// expire drops history that no window reaches again.
func (st *AccountState) expire(keepMS int64) {
	cut := st.MaxTS - keepMS
	if len(st.Approved) > 0 && st.Approved[0].TS <= cut {
		st.Approved = slices.DeleteFunc(st.Approved, func(a Approval) bool { return a.TS <= cut })
	}
	if len(st.Changes) > 0 && st.Changes[0].TS <= cut {
		st.Changes = slices.DeleteFunc(st.Changes, func(c BudgetChange) bool { return c.TS <= cut })
	}
}

// insertSorted inserts x after every element with a ts <= its own.
func insertSorted[T any](s []T, x T, ts func(T) int64) []T {
	i := len(s)
	for i > 0 && ts(s[i-1]) > ts(x) {
		i--
	}
	return slices.Insert(s, i, x)
}

// DecodeProposal parses and validates an action proposal: required fields
// present, ids as an event's (checkID), budgets of a budget_change money
// within MaxMoney.
func DecodeProposal(data []byte) (Proposal, error) {
	var p Proposal
	if err := json.Unmarshal(data, &p); err != nil {
		return p, &DecodeError{Reason: "not a valid proposal: " + err.Error()}
	}
	switch {
	case p.ActionID == "":
		return p, &DecodeError{Field: "action_id", Reason: "required field missing"}
	case p.TS == 0:
		return p, &DecodeError{Field: "ts", Reason: "required field missing"}
	case p.AccountID == "":
		return p, &DecodeError{Field: "account_id", Reason: "required field missing"}
	case p.AdID == "" && p.AdsetID == "":
		return p, &DecodeError{Field: "ad_id", Reason: "a proposal names an ad_id or an adset_id"}
	case p.Type == "":
		return p, &DecodeError{Field: "type", Reason: "required field missing"}
	}
	for _, id := range []struct{ name, v string }{
		{"action_id", p.ActionID}, {"account_id", p.AccountID}, {"campaign_id", p.CampaignID},
		{"adset_id", p.AdsetID}, {"ad_id", p.AdID}, {"type", p.Type}, {"source", p.Source},
	} {
		if err := checkID(id.name, id.v); err != nil {
			return p, err
		}
	}
	if p.Type == "budget_change" {
		for _, f := range []struct {
			name string
			b    *float64
		}{{"old_budget", p.OldBudget}, {"new_budget", p.NewBudget}} {
			name, b := f.name, f.b
			if b == nil {
				return p, &DecodeError{Field: name, Reason: "required for budget_change"}
			}
			if *b < 0 || math.IsNaN(*b) || math.IsInf(*b, 0) {
				return p, &DecodeError{Field: name, Reason: fmt.Sprintf("money must be a non-negative number, got %v", *b)}
			}
			if *b > MaxMoney {
				return p, &DecodeError{Field: name, Reason: fmt.Sprintf("money must be at most %s, got %v", maxMoneyText, *b)}
			}
		}
	}
	if p.Source == "" {
		p.Source = "external"
	}
	return p, nil
}
