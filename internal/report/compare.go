package report

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/adrules/adrules/rules"
)

// Side is one side of a comparison: its name ("baseline", "candidate"), the
// directory holding its decisions.jsonl and actions.jsonl, and what ran.
type Side struct {
	Name           string
	Dir            string
	Label          string // e.g. "rules.yaml", "live v7", "v3"
	RulesetVersion int64
	RulesetSHA256  string
}

// Meta describes the records both sides ran over, for the report's header.
// Every field is optional; the caller sets what it knows.
type Meta struct {
	From    string `json:"from,omitempty"`    // first event time or offset of the range
	To      string `json:"to,omitempty"`      // last event time or offset of the range
	Input   string `json:"input,omitempty"`   // topic or file of the metric events
	Actions string `json:"actions,omitempty"` // topic or file of external proposals
	Records int64  `json:"records,omitempty"` // records read
}

// Diff is the comparison of two sides.
type Diff struct {
	Meta      Meta
	Baseline  SideStats
	Candidate SideStats
	// Ads lists the ads that gain or lose a decision type, by type then ad.
	Ads []AdChange
	// Verdicts lists the proposals whose verdict changes, by ts then key.
	Verdicts []VerdictChange
	// First is the first differing record, nil when the sides are equal.
	First *FirstDifference
	// Hours holds each hour (UTC, event time) with a decision or an approved
	// budget change on either side, in order.
	Hours []Hour
	// TopAds are the ads with the most gained and lost decisions, at most
	// TopN of them.
	TopAds []TopAd
}

// TopN is how many changed ads the report shows with their metrics.
const TopN = 20

// SideStats counts one side's outputs.
type SideStats struct {
	Name           string `json:"name"`
	Label          string `json:"label,omitempty"`
	RulesetVersion int64  `json:"ruleset_version"`
	RulesetSHA256  string `json:"ruleset_sha256"`
	Decisions      int    `json:"decisions"`
	// DecisionsByRule and DecisionsByType count decisions by rule_id and by type.
	DecisionsByRule map[string]int `json:"decisions_by_rule"`
	DecisionsByType map[string]int `json:"decisions_by_type"`
	Verdicts        int            `json:"verdicts"`
	// VerdictsByStatus counts verdicts by status; VerdictsByReason by
	// "status" or "status/reason" ("rejected/rate_limit_hour").
	VerdictsByStatus map[string]int `json:"verdicts_by_status"`
	VerdictsByReason map[string]int `json:"verdicts_by_reason"`
	// BudgetChanges counts approved budget changes; BudgetMoved sums their
	// final_budget - old_budget, rounded to cents.
	BudgetChanges int     `json:"budget_changes"`
	BudgetMoved   float64 `json:"budget_moved"`
	// DeadLetters counts the lines of dlq.jsonl (0 when there is none).
	DeadLetters int `json:"dead_letters"`
}

// AdChange is an ad that gains or loses a decision type: Change is "gained"
// when the candidate has decisions of the type for the ad and the baseline
// none, "lost" in the reverse.
type AdChange struct {
	Type      string `json:"type"`
	AdID      string `json:"ad_id"`
	Change    string `json:"change"`
	Baseline  int    `json:"baseline"`  // the ad's decisions of the type
	Candidate int    `json:"candidate"` // likewise on the candidate side
}

// VerdictChange is a proposal whose verdict differs between the sides, or
// that only one side made. Change is "changed", "only_baseline" or
// "only_candidate"; the side that lacks the proposal is nil.
type VerdictChange struct {
	Change    string        `json:"change"`
	Source    string        `json:"source"` // the rule id, or the external producer
	Type      string        `json:"type"`
	TS        rules.Time    `json:"ts"`
	AccountID string        `json:"account_id"`
	AdsetID   string        `json:"adset_id,omitempty"`
	AdID      string        `json:"ad_id,omitempty"`
	Input     *rules.Input  `json:"input"`
	Baseline  *VerdictState `json:"baseline"`
	Candidate *VerdictState `json:"candidate"`
	key       string
}

// VerdictState is one side's verdict on a proposal.
type VerdictState struct {
	ActionID    string   `json:"action_id"`
	Status      string   `json:"status"`
	Reason      string   `json:"reason,omitempty"`
	FinalBudget *float64 `json:"final_budget,omitempty"`
}

// FirstDifference is the first record that differs: File is
// "decisions.jsonl" or "actions.jsonl", Index the 0-based line, and each
// side's record as written (nil when that side's file ended first).
type FirstDifference struct {
	File      string          `json:"file"`
	Index     int             `json:"index"`
	Baseline  json.RawMessage `json:"baseline"`
	Candidate json.RawMessage `json:"candidate"`
}

// Hour counts one hour of event time on both sides.
type Hour struct {
	Hour      rules.Time `json:"hour"`
	Baseline  HourCount  `json:"baseline"`
	Candidate HourCount  `json:"candidate"`
}

// HourCount is one side's decisions in an hour and the budget its approved
// budget changes of that hour moved (rounded to cents).
type HourCount struct {
	Decisions   int     `json:"decisions"`
	BudgetMoved float64 `json:"budget_moved"`
}

// TopAd is a changed ad with the metrics of its decisions.
type TopAd struct {
	AdID      string   `json:"ad_id"`
	Gained    []string `json:"gained"` // decision types
	Lost      []string `json:"lost"`
	Baseline  int      `json:"baseline"` // the ad's decisions of any type
	Candidate int      `json:"candidate"`
	// Metrics are the numeric values of the ad's last decision that has
	// any, on the candidate side when it has one, else on the baseline
	// side (MetricsFrom names which).
	Metrics     map[string]float64 `json:"metrics"`
	MetricsFrom string             `json:"metrics_from,omitempty"`
}

// Changes is the number of decision types the ad gained or lost.
func (a *TopAd) Changes() int { return len(a.Gained) + len(a.Lost) }

// Compare reads both sides' outputs and computes the diff. Deterministic:
// same inputs, byte-identical outputs of every writer.
func Compare(baseline, candidate Side) (*Diff, error) {
	if baseline.Name == "" {
		baseline.Name = "baseline"
	}
	if candidate.Name == "" {
		candidate.Name = "candidate"
	}
	b, err := read(baseline)
	if err != nil {
		return nil, err
	}
	c, err := read(candidate)
	if err != nil {
		return nil, err
	}
	d := &Diff{Baseline: b.stats, Candidate: c.stats}
	d.Ads = adChanges(b, c)
	d.Verdicts = verdictChanges(b, c)
	d.Hours = hours(b, c)
	d.TopAds = topAds(d.Ads, b, c)
	d.First, err = firstDifference(baseline.Dir, candidate.Dir)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// side is what Compare keeps of one side's files.
type side struct {
	stats SideStats
	// adTypes counts decisions by ad and type.
	adTypes map[adType]int
	// adDecisions counts decisions by ad.
	adDecisions map[string]int
	// values holds each ad's last non-empty numeric values.
	values map[string]map[string]float64
	// verdicts by match key, in file order in keys.
	verdicts map[string]*rules.Verdict
	keys     []string
	// hourly decisions and (unrounded) budget moved.
	hourDecisions map[int64]int
	hourBudget    map[int64]float64
}

type adType struct{ ad, typ string }

const hourMS = 3600 * 1000

func read(s Side) (*side, error) {
	sd := &side{
		stats: SideStats{
			Name: s.Name, Label: s.Label, RulesetVersion: s.RulesetVersion, RulesetSHA256: s.RulesetSHA256,
			DecisionsByRule: map[string]int{}, DecisionsByType: map[string]int{},
			VerdictsByStatus: map[string]int{}, VerdictsByReason: map[string]int{},
		},
		adTypes: map[adType]int{}, adDecisions: map[string]int{}, values: map[string]map[string]float64{},
		verdicts: map[string]*rules.Verdict{}, hourDecisions: map[int64]int{}, hourBudget: map[int64]float64{},
	}
	st := &sd.stats
	err := eachLine(filepath.Join(s.Dir, "decisions.jsonl"), func(line []byte, n int) error {
		var d rules.Decision
		if err := json.Unmarshal(line, &d); err != nil {
			return err
		}
		st.Decisions++
		st.DecisionsByRule[d.RuleID]++
		st.DecisionsByType[d.Type]++
		sd.adTypes[adType{d.AdID, d.Type}]++
		sd.adDecisions[d.AdID]++
		sd.hourDecisions[hourOf(d.TS)]++
		if m := numbers(d.Values); len(m) > 0 {
			sd.values[d.AdID] = m
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var moved float64
	err = eachLine(filepath.Join(s.Dir, "actions.jsonl"), func(line []byte, n int) error {
		v := new(rules.Verdict)
		if err := json.Unmarshal(line, v); err != nil {
			return err
		}
		st.Verdicts++
		st.VerdictsByStatus[v.Status]++
		st.VerdictsByReason[statusReason(v)]++
		if v.Status == "approved" && v.FinalBudget != nil && v.OldBudget != nil {
			m := *v.FinalBudget - *v.OldBudget
			st.BudgetChanges++
			moved += m
			sd.hourBudget[hourOf(v.TS)] += m
		}
		k := matchKey(&v.Proposal)
		// Keys are unique in practice (a rule proposes once per input
		// record, and each external line is its own record); should one
		// repeat, its later copies are numbered and matched in order.
		for i := 2; sd.verdicts[k] != nil; i++ {
			k = matchKey(&v.Proposal) + "#" + strconv.Itoa(i)
		}
		sd.verdicts[k] = v
		sd.keys = append(sd.keys, k)
		return nil
	})
	if err != nil {
		return nil, err
	}
	st.BudgetMoved = cents(moved)
	err = eachLine(filepath.Join(s.Dir, "dlq.jsonl"), func([]byte, int) error {
		st.DeadLetters++
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return sd, nil
}

// eachLine calls fn with each non-blank line of the file and its 0-based
// index; an error names the file and line.
func eachLine(path string, fn func(line []byte, n int) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for n := 0; ; n++ {
		line, err := r.ReadBytes('\n')
		if line = bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
			if ferr := fn(line, n); ferr != nil {
				return fmt.Errorf("%s:%d: %w", path, n+1, ferr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}

func statusReason(v *rules.Verdict) string {
	if v.Reason == "" {
		return v.Status
	}
	return v.Status + "/" + v.Reason
}

// matchKey names a proposal by what does not depend on the rule set: its
// source, type, entity and input record (see the package doc). A proposal
// without an input (never written by the engine) falls back to its id.
func matchKey(p *rules.Proposal) string {
	if p.Input == nil {
		return "action_id\x00" + p.ActionID
	}
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d", p.Source, p.Type, p.AdID, p.AdsetID,
		p.Input.Topic, p.Input.Partition, p.Input.Offset)
}

func hourOf(t rules.Time) int64 {
	ms := int64(t)
	return ms - ((ms%hourMS)+hourMS)%hourMS
}

// numbers keeps the finite numeric values.
func numbers(values map[string]any) map[string]float64 {
	var m map[string]float64
	for k, v := range values {
		if f, ok := v.(float64); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
			if m == nil {
				m = map[string]float64{}
			}
			m[k] = f
		}
	}
	return m
}

func cents(x float64) float64 {
	r := math.Round(x*100) / 100
	if r == 0 {
		return 0 // no -0 in the output
	}
	return r
}

func adChanges(b, c *side) []AdChange {
	keys := map[adType]bool{}
	for k := range b.adTypes {
		keys[k] = true
	}
	for k := range c.adTypes {
		keys[k] = true
	}
	var out []AdChange
	for k := range keys {
		nb, nc := b.adTypes[k], c.adTypes[k]
		switch {
		case nb == 0 && nc > 0:
			out = append(out, AdChange{Type: k.typ, AdID: k.ad, Change: "gained", Baseline: nb, Candidate: nc})
		case nb > 0 && nc == 0:
			out = append(out, AdChange{Type: k.typ, AdID: k.ad, Change: "lost", Baseline: nb, Candidate: nc})
		}
	}
	slices.SortFunc(out, func(x, y AdChange) int {
		return cmp.Or(cmp.Compare(x.Type, y.Type), cmp.Compare(x.AdID, y.AdID))
	})
	return out
}

func verdictChanges(b, c *side) []VerdictChange {
	var out []VerdictChange
	add := func(k string, vb, vc *rules.Verdict) {
		v := vb
		if v == nil {
			v = vc
		}
		ch := VerdictChange{
			Source: v.Source, Type: v.Type, TS: v.TS, AccountID: v.AccountID, AdsetID: v.AdsetID, AdID: v.AdID,
			Input: v.Input, Baseline: state(vb), Candidate: state(vc), key: k,
		}
		switch {
		case vb == nil:
			ch.Change = "only_candidate"
		case vc == nil:
			ch.Change = "only_baseline"
		default:
			ch.Change = "changed"
		}
		out = append(out, ch)
	}
	for _, k := range b.keys {
		vb, vc := b.verdicts[k], c.verdicts[k]
		if vc == nil || vb.Status != vc.Status || vb.Reason != vc.Reason {
			add(k, vb, vc)
		}
	}
	for _, k := range c.keys {
		if b.verdicts[k] == nil {
			add(k, nil, c.verdicts[k])
		}
	}
	slices.SortFunc(out, func(x, y VerdictChange) int {
		return cmp.Or(cmp.Compare(x.TS, y.TS), cmp.Compare(x.key, y.key))
	})
	return out
}

func state(v *rules.Verdict) *VerdictState {
	if v == nil {
		return nil
	}
	return &VerdictState{ActionID: v.ActionID, Status: v.Status, Reason: v.Reason, FinalBudget: v.FinalBudget}
}

func hours(b, c *side) []Hour {
	set := map[int64]bool{}
	for _, m := range []map[int64]int{b.hourDecisions, c.hourDecisions} {
		for h := range m {
			set[h] = true
		}
	}
	for _, m := range []map[int64]float64{b.hourBudget, c.hourBudget} {
		for h := range m {
			set[h] = true
		}
	}
	var out []Hour
	for _, h := range slices.Sorted(maps.Keys(set)) {
		out = append(out, Hour{
			Hour:      rules.Time(h),
			Baseline:  HourCount{Decisions: b.hourDecisions[h], BudgetMoved: cents(b.hourBudget[h])},
			Candidate: HourCount{Decisions: c.hourDecisions[h], BudgetMoved: cents(c.hourBudget[h])},
		})
	}
	return out
}

func topAds(changes []AdChange, b, c *side) []TopAd {
	byAd := map[string]*TopAd{}
	var order []string
	for _, ch := range changes {
		a := byAd[ch.AdID]
		if a == nil {
			a = &TopAd{AdID: ch.AdID, Gained: []string{}, Lost: []string{}}
			byAd[ch.AdID] = a
			order = append(order, ch.AdID)
		}
		if ch.Change == "gained" {
			a.Gained = append(a.Gained, ch.Type)
		} else {
			a.Lost = append(a.Lost, ch.Type)
		}
	}
	slices.SortFunc(order, func(x, y string) int {
		return cmp.Or(cmp.Compare(byAd[y].Changes(), byAd[x].Changes()), cmp.Compare(x, y))
	})
	if len(order) > TopN {
		order = order[:TopN]
	}
	out := make([]TopAd, 0, len(order))
	for _, id := range order {
		a := byAd[id]
		a.Baseline, a.Candidate = b.adDecisions[id], c.adDecisions[id]
		a.Metrics = map[string]float64{}
		switch {
		case c.values[id] != nil:
			a.Metrics, a.MetricsFrom = c.values[id], c.stats.Name
		case b.values[id] != nil:
			a.Metrics, a.MetricsFrom = b.values[id], b.stats.Name
		}
		out = append(out, *a)
	}
	return out
}
