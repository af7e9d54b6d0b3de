package report

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/adrules/adrules/engine"
)

// WriteJSONL writes diff.jsonl: one JSON object per line, each with a
// "kind" field: "meta" (only when Meta is set), "side" (baseline, then
// candidate), "hour" (each hour in order), "ad" (gained and lost, by type
// and ad), "verdict" (changed verdicts, by ts) and "first_difference" (only
// when the sides differ). docs/backtests.md lists the fields.
func (d *Diff) WriteJSONL(w io.Writer) error {
	bw := bufio.NewWriter(w)
	line := func(v any) error {
		b, err := engine.Encode(v)
		if err != nil {
			return err
		}
		bw.Write(b)
		return bw.WriteByte('\n')
	}
	type kind struct {
		Kind string `json:"kind"`
	}
	if d.Meta != (Meta{}) {
		if err := line(struct {
			kind
			*Meta
		}{kind{"meta"}, &d.Meta}); err != nil {
			return err
		}
	}
	for _, s := range []*SideStats{&d.Baseline, &d.Candidate} {
		if err := line(struct {
			kind
			*SideStats
		}{kind{"side"}, s}); err != nil {
			return err
		}
	}
	for i := range d.Hours {
		if err := line(struct {
			kind
			*Hour
		}{kind{"hour"}, &d.Hours[i]}); err != nil {
			return err
		}
	}
	for i := range d.Ads {
		if err := line(struct {
			kind
			*AdChange
		}{kind{"ad"}, &d.Ads[i]}); err != nil {
			return err
		}
	}
	for i := range d.Verdicts {
		if err := line(struct {
			kind
			*VerdictChange
		}{kind{"verdict"}, &d.Verdicts[i]}); err != nil {
			return err
		}
	}
	if d.First != nil {
		if err := line(struct {
			kind
			*FirstDifference
		}{kind{"first_difference"}, d.First}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Print writes a short summary for a terminal: per-side totals, the ads
// that gain or lose each type, the changed verdicts and the first
// difference.
func (d *Diff) Print(w io.Writer) {
	b, c := &d.Baseline, &d.Candidate
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "\t%s\t%s\tchange\n", b.Name, c.Name)
	fmt.Fprintf(tw, "rule set\t%s\t%s\n", ruleset(b), ruleset(c))
	row := func(name string, x, y int) { fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", name, x, y, signed(y-x)) }
	row("decisions", b.Decisions, c.Decisions)
	for _, k := range unionKeys(b.DecisionsByRule, c.DecisionsByRule) {
		row("  rule "+k, b.DecisionsByRule[k], c.DecisionsByRule[k])
	}
	for _, k := range unionKeys(b.DecisionsByType, c.DecisionsByType) {
		row("  type "+k, b.DecisionsByType[k], c.DecisionsByType[k])
	}
	row("verdicts", b.Verdicts, c.Verdicts)
	for _, k := range unionKeys(b.VerdictsByReason, c.VerdictsByReason) {
		row("  "+k, b.VerdictsByReason[k], c.VerdictsByReason[k])
	}
	fmt.Fprintf(tw, "budget moved\t%s\t%s\t%s\n", money(b.BudgetMoved), money(c.BudgetMoved), money(c.BudgetMoved-b.BudgetMoved))
	tw.Flush()

	if len(d.Ads) == 0 {
		fmt.Fprintln(w, "ads:        no ad gains or loses a decision type")
	}
	for _, g := range adGroups(d.Ads) {
		fmt.Fprintf(w, "ads:        %d %s %s: %s\n", len(g.ads), g.change, g.typ, sample(g.ads, 5))
	}
	var changed, onlyB, onlyC int
	for _, v := range d.Verdicts {
		switch v.Change {
		case "changed":
			changed++
		case "only_baseline":
			onlyB++
		default:
			onlyC++
		}
	}
	fmt.Fprintf(w, "verdicts:   %d differ: %d changed, %d only in %s, %d only in %s\n",
		len(d.Verdicts), changed, onlyB, b.Name, onlyC, c.Name)
	if d.First == nil {
		fmt.Fprintln(w, "first difference: none, the outputs are the same")
	} else {
		fmt.Fprintf(w, "first difference: %s line %d (index %d)\n", d.First.File, d.First.Index+1, d.First.Index)
	}
}

// WriteFiles writes dir/diff.jsonl, dir/report.html and dir/report.md.
func WriteFiles(dir string, d *Diff) error {
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"diff.jsonl", d.WriteJSONL}, {"report.html", d.WriteHTML}, {"report.md", d.WriteMarkdown}} {
		var b bytes.Buffer
		if err := f.write(&b); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// WriteMarkdown writes report.md: the tables of report.html, with the
// charts as a table per hour.
func (d *Diff) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	v := d.view()
	fmt.Fprintf(bw, "# %s\n\n", md(v.Title))
	for _, t := range v.Tables {
		fmt.Fprintf(bw, "## %s\n\n", md(t.Title))
		if t.Intro != "" {
			fmt.Fprintf(bw, "%s\n\n", md(t.Intro))
		}
		if len(t.Rows) == 0 {
			fmt.Fprintf(bw, "%s\n\n", md(t.Empty))
			continue
		}
		cells := func(row []string) {
			for _, c := range row {
				fmt.Fprintf(bw, "| %s ", md(c))
			}
			bw.WriteString("|\n")
		}
		cells(t.Head)
		for i := range t.Head {
			if t.Numeric(i) {
				bw.WriteString("| ---: ")
			} else {
				bw.WriteString("| --- ")
			}
		}
		bw.WriteString("|\n")
		for _, r := range t.Rows {
			cells(r)
		}
		bw.WriteString("\n")
		if t.More > 0 {
			fmt.Fprintf(bw, "%s\n\n", md(t.MoreText()))
		}
	}
	bw.WriteString("## First difference\n\n")
	if v.First == nil {
		bw.WriteString("None: the outputs are the same, apart from the rule set's version, hash and the ids derived from it.\n")
	} else {
		fmt.Fprintf(bw, "%s, line %d (index %d).\n\n", md(v.First.File), v.First.Index+1, v.First.Index)
		for _, s := range []struct{ name, rec string }{{d.Baseline.Name, v.First.Baseline}, {d.Candidate.Name, v.First.Candidate}} {
			fmt.Fprintf(bw, "%s:\n\n", md(s.name))
			if s.rec == "" {
				bw.WriteString("(no record: the file ended)\n\n")
				continue
			}
			fence := "```"
			for strings.Contains(s.rec, fence) {
				fence += "`"
			}
			fmt.Fprintf(bw, "%sjson\n%s\n%s\n\n", fence, s.rec, fence)
		}
	}
	return bw.Flush()
}

// md escapes text for a Markdown table cell or paragraph: characters
// Markdown reads as syntax are backslash-escaped, and <, > and & become
// entities so no id can open an HTML tag.
func md(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\', '|', '`', '*', '[', ']', '#':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\n', '\r':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func ruleset(s *SideStats) string {
	out := s.Label
	if s.RulesetVersion != 0 {
		out += fmt.Sprintf(" v%d", s.RulesetVersion)
	}
	if s.RulesetSHA256 != "" {
		out += " " + short(s.RulesetSHA256)
	}
	if out == "" {
		return "-"
	}
	return strings.TrimSpace(out)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func sample(ads []string, n int) string {
	if len(ads) <= n {
		return strings.Join(ads, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ads[:n], ", "), len(ads)-n)
}

type adGroup struct {
	typ, change string
	ads         []string
}

// adGroups groups the ad changes by type, then change ("gained" before
// "lost"), each group's ads in order.
func adGroups(ads []AdChange) []adGroup {
	var out []adGroup
	for _, a := range ads {
		i := slices.IndexFunc(out, func(g adGroup) bool { return g.typ == a.Type && g.change == a.Change })
		if i < 0 {
			i = len(out)
			out = append(out, adGroup{typ: a.Type, change: a.Change})
		}
		out[i].ads = append(out[i].ads, a.AdID)
	}
	slices.SortStableFunc(out, func(x, y adGroup) int {
		return cmp.Or(cmp.Compare(x.typ, y.typ), cmp.Compare(x.change, y.change))
	})
	return out
}
