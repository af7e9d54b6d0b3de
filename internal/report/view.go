package report

import (
	"fmt"
	"html/template"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/adrules/adrules/rules"
)

// maxRows caps the long tables of report.html and report.md; diff.jsonl
// has every row.
const (
	maxRows     = 200
	maxHourRows = 1000
)

// view is what report.html and report.md show, so both show the same
// tables.
type view struct {
	Title  string
	Names  [2]string
	Tables []table
	First  *firstView
	Data   template.JS // the charts' data (report.html)
}

type table struct {
	ID, Title string
	Intro     string // a sentence above the table
	Empty     string // shown instead of an empty table
	Head      []string
	Num       []bool // right-aligned (numeric) columns
	Rows      [][]string
	More      int  // rows left out
	Folded    bool // report.html shows it folded
}

// Numeric reports whether column i is right-aligned.
func (t table) Numeric(i int) bool { return i < len(t.Num) && t.Num[i] }

// MoreText says how many rows were left out.
func (t table) MoreText() string {
	return fmt.Sprintf("%d more rows in diff.jsonl.", t.More)
}

// add appends a row unless the table is full, counting what it leaves out.
func (t *table) add(max int, row ...string) {
	if len(t.Rows) >= max {
		t.More++
		return
	}
	t.Rows = append(t.Rows, row)
}

type firstView struct {
	File                string
	Index, Line         int    // 0-based index, 1-based line
	Baseline, Candidate string // the records, "" when that side's file ended
}

func (d *Diff) view() *view {
	b, c := &d.Baseline, &d.Candidate
	v := &view{Title: fmt.Sprintf("Backtest report: %s and %s", b.Name, c.Name), Names: [2]string{b.Name, c.Name}}
	counts := []string{"", b.Name, c.Name, "change"}
	countNum := []bool{false, true, true, true}

	rs := table{ID: "rulesets", Title: "Rule sets", Head: []string{"Side", "Label", "Version", "SHA-256"}}
	for _, s := range []*SideStats{b, c} {
		ver := ""
		if s.RulesetVersion != 0 {
			ver = strconv.FormatInt(s.RulesetVersion, 10)
		}
		rs.add(maxRows, s.Name, s.Label, ver, s.RulesetSHA256)
	}
	v.Tables = append(v.Tables, rs)

	if d.Meta != (Meta{}) {
		m := table{ID: "records", Title: "Records", Intro: "Both sides ran over these records.", Head: []string{"", "value"}}
		for _, f := range []struct{ name, val string }{
			{"from", d.Meta.From}, {"to", d.Meta.To}, {"input", d.Meta.Input}, {"actions", d.Meta.Actions},
		} {
			if f.val != "" {
				m.add(maxRows, f.name, f.val)
			}
		}
		if d.Meta.Records != 0 {
			m.add(maxRows, "records read", strconv.FormatInt(d.Meta.Records, 10))
		}
		v.Tables = append(v.Tables, m)
	}

	gained, lost := 0, 0
	for _, a := range d.Ads {
		if a.Change == "gained" {
			gained++
		} else {
			lost++
		}
	}
	tot := table{ID: "totals", Title: "Totals", Head: counts, Num: countNum}
	row := func(t *table, name string, x, y int) { t.add(maxRows, name, itoa(x), itoa(y), signed(y-x)) }
	row(&tot, "decisions", b.Decisions, c.Decisions)
	row(&tot, "verdicts", b.Verdicts, c.Verdicts)
	row(&tot, "approved", b.VerdictsByStatus["approved"], c.VerdictsByStatus["approved"])
	row(&tot, "rejected", b.VerdictsByStatus["rejected"], c.VerdictsByStatus["rejected"])
	row(&tot, "approved budget changes", b.BudgetChanges, c.BudgetChanges)
	tot.add(maxRows, "budget moved", money(b.BudgetMoved), money(c.BudgetMoved), money(c.BudgetMoved-b.BudgetMoved))
	row(&tot, "dead letters", b.DeadLetters, c.DeadLetters)
	v.Tables = append(v.Tables, tot)

	byRule := table{ID: "rules", Title: "Decisions per rule", Head: []string{"rule", b.Name, c.Name, "change"}, Num: countNum, Empty: "No decisions on either side."}
	for _, k := range unionKeys(b.DecisionsByRule, c.DecisionsByRule) {
		row(&byRule, k, b.DecisionsByRule[k], c.DecisionsByRule[k])
	}
	byType := table{ID: "types", Title: "Decisions per type", Head: []string{"type", b.Name, c.Name, "change"}, Num: countNum, Empty: "No decisions on either side."}
	for _, k := range unionKeys(b.DecisionsByType, c.DecisionsByType) {
		row(&byType, k, b.DecisionsByType[k], c.DecisionsByType[k])
	}
	verdicts := table{ID: "verdicts", Title: "Verdicts per status and reason", Head: []string{"status/reason", b.Name, c.Name, "change"}, Num: countNum, Empty: "No verdicts on either side."}
	for _, k := range unionKeys(b.VerdictsByReason, c.VerdictsByReason) {
		row(&verdicts, k, b.VerdictsByReason[k], c.VerdictsByReason[k])
	}
	v.Tables = append(v.Tables, byRule, byType, verdicts)

	hours := table{ID: "hours", Title: "Decisions and budget moved per hour", Folded: true,
		Intro: "Event time, UTC. Budget moved is the sum of final_budget - old_budget of the approved budget changes of the hour; cumulative from the first hour.",
		Head:  []string{"hour", "decisions " + b.Name, "decisions " + c.Name, "budget moved " + b.Name, "budget moved " + c.Name, "cumulative " + b.Name, "cumulative " + c.Name},
		Num:   []bool{false, true, true, true, true, true, true}, Empty: "No decisions or budget changes on either side."}
	var cb, cc float64
	for _, h := range d.Hours {
		cb += h.Baseline.BudgetMoved
		cc += h.Candidate.BudgetMoved
		hours.add(maxHourRows, hourText(h.Hour), itoa(h.Baseline.Decisions), itoa(h.Candidate.Decisions),
			money(h.Baseline.BudgetMoved), money(h.Candidate.BudgetMoved), money(cb), money(cc))
	}
	v.Tables = append(v.Tables, hours)

	top := table{ID: "top", Title: "Top changed ads", Empty: "No ad gains or loses a decision type.",
		Intro: fmt.Sprintf("The %d ads with the most decision types gained or lost, with the values of their last decision.", TopN),
		Head:  []string{"ad", "gained", "lost", "decisions " + b.Name, "decisions " + c.Name, "metrics", "metrics from"},
		Num:   []bool{false, false, false, true, true}}
	for _, a := range d.TopAds {
		top.add(maxRows, a.AdID, strings.Join(a.Gained, ", "), strings.Join(a.Lost, ", "), itoa(a.Baseline), itoa(a.Candidate), metrics(a.Metrics), a.MetricsFrom)
	}
	ads := table{ID: "ads", Title: "Ads that gain or lose a decision type", Empty: "None.",
		Intro: fmt.Sprintf("An ad gains a type when %s has decisions of that type for it and %s none, and loses it in the reverse.", c.Name, b.Name),
		Head:  []string{"type", "ad", "change", b.Name, c.Name}, Num: []bool{false, false, false, true, true}}
	for _, a := range d.Ads {
		ads.add(maxRows, a.Type, a.AdID, a.Change, itoa(a.Baseline), itoa(a.Candidate))
	}
	changed := table{ID: "changed", Title: "Changed verdicts", Empty: "None: every proposal got the same verdict on both sides.",
		Intro: "Proposals matched by source, type, entity and input record, whose status or reason differs, or that only one side made.",
		Head:  []string{"event time", "source", "type", "entity", "input", b.Name, c.Name}}
	for _, x := range d.Verdicts {
		changed.add(maxRows, rules.FormatTime(int64(x.TS)), x.Source, x.Type, entity(x.AdID, x.AdsetID), input(x.Input),
			verdictText(x.Baseline, "only in "+c.Name), verdictText(x.Candidate, "only in "+b.Name))
	}
	v.Tables = append(v.Tables, top, ads, changed)

	if d.First != nil {
		v.First = &firstView{File: d.First.File, Index: d.First.Index, Line: d.First.Index + 1, Baseline: record(d.First.Baseline), Candidate: record(d.First.Candidate)}
	}
	return v
}

func unionKeys(a, b map[string]int) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func itoa(n int) string { return strconv.Itoa(n) }

func signed(n int) string {
	if n > 0 {
		return "+" + itoa(n)
	}
	return itoa(n)
}

func money(x float64) string {
	x = cents(x)
	if x > 0 {
		return fmt.Sprintf("+%.2f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func hourText(t rules.Time) string { return rules.FormatTime(int64(t))[:13] + ":00Z" }

func metrics(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+number(m[k]))
	}
	return strings.Join(parts, ", ")
}

// number writes whole numbers as integers and others with 6 significant
// digits.
func number(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

func entity(ad, adset string) string {
	switch {
	case ad != "" && adset != "":
		return ad + " (adset " + adset + ")"
	case ad != "":
		return ad
	}
	return "adset " + adset
}

func input(in *rules.Input) string {
	if in == nil {
		return ""
	}
	return fmt.Sprintf("%s/%d@%d", in.Topic, in.Partition, in.Offset)
}

func verdictText(v *VerdictState, missing string) string {
	if v == nil {
		return "- (" + missing + ")"
	}
	if v.Reason != "" {
		return v.Status + " (" + v.Reason + ")"
	}
	return v.Status
}

// record is a record as written, "" when that side's file ended.
func record(r []byte) string { return string(r) }
