package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
)

// fixture builds one side's output files the way a backtest writes them:
// ids derived from the rule set's hash, version and hash on every record.
type fixture struct {
	version   int64
	sha       string
	decisions []rules.Decision
	verdicts  []rules.Verdict
	dlq       int
}

func ts(s string) rules.Time {
	ms, ok := rules.ParseTime(s)
	if !ok {
		panic("bad time " + s)
	}
	return rules.Time(ms)
}

func amount(x float64) *float64 { return &x }

func (f *fixture) decide(rule, typ, ad, event, at string, offset int64, values map[string]any) {
	f.decisions = append(f.decisions, rules.Decision{
		DecisionID: rules.ID("decision", f.sha, rule, ad, event), RuleID: rule,
		RulesetVersion: f.version, RulesetSHA256: f.sha, Type: typ, AccountID: "acc", AdID: ad,
		EventID: event, TS: ts(at), Input: rules.Input{Topic: "events.jsonl", Offset: offset},
		Values: values, Explain: []string{"true"},
	})
}

// ruleVerdict is the verdict on a rule's proposal, made from the event at
// offset of events.jsonl.
func (f *fixture) ruleVerdict(rule, typ, ad, event, at string, offset int64, status, reason string, old, final *float64) {
	p := rules.Proposal{
		ActionID: rules.ID("action", f.sha, rule, ad, event), TS: ts(at), AccountID: "acc", AdID: ad,
		Type: typ, Source: rule, RulesetVersion: f.version, Input: &rules.Input{Topic: "events.jsonl", Offset: offset},
	}
	if old != nil {
		p.OldBudget, p.NewBudget = old, amount(*old*1.15)
	}
	f.verdict(p, status, reason, final)
}

// externalVerdict is the verdict on an external proposal at a line of
// actions.jsonl.
func (f *fixture) externalVerdict(id, adset, at string, line int64, status, reason string) {
	p := rules.Proposal{
		ActionID: id, TS: ts(at), AccountID: "acc", AdsetID: adset, Type: "pause", Source: "external",
		Input: &rules.Input{Topic: "actions.jsonl", Offset: line},
	}
	f.verdict(p, status, reason, nil)
}

func (f *fixture) verdict(p rules.Proposal, status, reason string, final *float64) {
	v := rules.Verdict{Proposal: p, Status: status, Reason: reason, FinalBudget: final, RulesetVersion: f.version, RulesetSHA256: f.sha}
	if status == "approved" {
		ea := p.TS + 60000
		v.ExecuteAfter = &ea
	}
	f.verdicts = append(f.verdicts, v)
}

func (f *fixture) write(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var d, a, q bytes.Buffer
	for i := range f.decisions {
		b, err := engine.Encode(&f.decisions[i])
		if err != nil {
			t.Fatal(err)
		}
		d.Write(append(b, '\n'))
	}
	for i := range f.verdicts {
		b, err := engine.Encode(&f.verdicts[i])
		if err != nil {
			t.Fatal(err)
		}
		a.Write(append(b, '\n'))
	}
	for range f.dlq {
		q.WriteString(`{"reason":"not JSON","topic":"events.jsonl","partition":0,"offset":1,"value":"x"}` + "\n")
	}
	for name, b := range map[string][]byte{"decisions.jsonl": d.Bytes(), "actions.jsonl": a.Bytes(), "dlq.jsonl": q.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var winnerValues = map[string]any{"ctr": 0.05, "roas": 4.0, "impressions": 1200.0}

// twoSides writes a baseline and a candidate that differ in known ways
// and returns their Sides.
//
//   - decisions: a1 winner on both; a2 winner only in the baseline (lost);
//     a4 winner and a5 pause_candidate only in the candidate (gained); a3
//     pause_candidate on both.
//   - verdicts: scale of a1 approved on both (budget +14.50 and +15.20); pause
//     of a3 rejected in the baseline, approved in the candidate; external x1
//     approved, then rejected; scale of a4 only in the candidate (+7.00).
func twoSides(t *testing.T, root string, adA2, adA4 string) (Side, Side) {
	b := &fixture{version: 1, sha: shaA, dlq: 1}
	b.decide("winner", "rag_index_winner", "a1", "e1", "2026-11-02T10:05:00Z", 1, winnerValues)
	b.decide("winner", "rag_index_winner", adA2, "e2", "2026-11-02T10:30:00Z", 2, map[string]any{"ctr": 0.04, "impressions": 1500.0})
	b.decide("pauser", "pause_candidate", "a3", "e7", "2026-11-02T13:10:00Z", 7, nil)
	b.ruleVerdict("scale", "budget_change", "a1", "e3", "2026-11-02T10:40:00Z", 3, "approved", "", amount(100), amount(114.5))
	b.ruleVerdict("pauser", "pause", "a3", "e7", "2026-11-02T13:10:00Z", 7, "rejected", "rate_limit_hour", nil, nil)
	b.externalVerdict("x1", "s1", "2026-11-02T13:30:00Z", 0, "approved", "")

	c := &fixture{version: 2, sha: shaB, dlq: 1}
	c.decide("winner", "rag_index_winner", "a1", "e1", "2026-11-02T10:05:00Z", 1, winnerValues)
	c.decide("winner", "rag_index_winner", adA4, "e9", "2026-11-02T12:00:00Z", 9, map[string]any{"ctr": 0.031, "roas": 3.5, "impressions": 2100.0, "note": "text"})
	c.decide("pauser", "pause_candidate", "a3", "e7", "2026-11-02T13:10:00Z", 7, nil)
	c.decide("pauser", "pause_candidate", "a5", "e8", "2026-11-02T13:20:00Z", 8, nil)
	c.ruleVerdict("scale", "budget_change", "a1", "e3", "2026-11-02T10:40:00Z", 3, "approved", "", amount(100), amount(115.2))
	c.ruleVerdict("scale", "budget_change", adA4, "e9", "2026-11-02T12:00:00Z", 9, "approved", "", amount(50), amount(57))
	c.ruleVerdict("pauser", "pause", "a3", "e7", "2026-11-02T13:10:00Z", 7, "approved", "", nil, nil)
	c.externalVerdict("x1", "s1", "2026-11-02T13:30:00Z", 0, "rejected", "rate_limit_day")

	bs := Side{Name: "baseline", Dir: filepath.Join(root, "baseline"), Label: "rules.yaml", RulesetVersion: 1, RulesetSHA256: shaA}
	cs := Side{Name: "candidate", Dir: filepath.Join(root, "candidate"), Label: "new.yaml", RulesetVersion: 2, RulesetSHA256: shaB}
	b.write(t, bs.Dir)
	c.write(t, cs.Dir)
	return bs, cs
}

func TestCompare(t *testing.T) {
	bs, cs := twoSides(t, t.TempDir(), "a2", "a4")
	d, err := Compare(bs, cs)
	if err != nil {
		t.Fatal(err)
	}
	wantB := SideStats{
		Name: "baseline", Label: "rules.yaml", RulesetVersion: 1, RulesetSHA256: shaA, Decisions: 3,
		DecisionsByRule:  map[string]int{"winner": 2, "pauser": 1},
		DecisionsByType:  map[string]int{"rag_index_winner": 2, "pause_candidate": 1},
		Verdicts:         3,
		VerdictsByStatus: map[string]int{"approved": 2, "rejected": 1},
		VerdictsByReason: map[string]int{"approved": 2, "rejected/rate_limit_hour": 1},
		BudgetChanges:    1, BudgetMoved: 14.5, DeadLetters: 1,
	}
	if !reflect.DeepEqual(d.Baseline, wantB) {
		t.Errorf("baseline:\n got %+v\nwant %+v", d.Baseline, wantB)
	}
	wantC := SideStats{
		Name: "candidate", Label: "new.yaml", RulesetVersion: 2, RulesetSHA256: shaB, Decisions: 4,
		DecisionsByRule:  map[string]int{"winner": 2, "pauser": 2},
		DecisionsByType:  map[string]int{"rag_index_winner": 2, "pause_candidate": 2},
		Verdicts:         4,
		VerdictsByStatus: map[string]int{"approved": 3, "rejected": 1},
		VerdictsByReason: map[string]int{"approved": 3, "rejected/rate_limit_day": 1},
		BudgetChanges:    2, BudgetMoved: 22.2, DeadLetters: 1,
	}
	if !reflect.DeepEqual(d.Candidate, wantC) {
		t.Errorf("candidate:\n got %+v\nwant %+v", d.Candidate, wantC)
	}

	wantAds := []AdChange{
		{Type: "pause_candidate", AdID: "a5", Change: "gained", Candidate: 1},
		{Type: "rag_index_winner", AdID: "a2", Change: "lost", Baseline: 1},
		{Type: "rag_index_winner", AdID: "a4", Change: "gained", Candidate: 1},
	}
	if !reflect.DeepEqual(d.Ads, wantAds) {
		t.Errorf("ads:\n got %+v\nwant %+v", d.Ads, wantAds)
	}

	// The scale of a1 is approved on both sides under different action ids
	// and final budgets: matched, and not a changed verdict.
	type v struct{ change, source, ad, b, c string }
	var got []v
	for _, x := range d.Verdicts {
		got = append(got, v{x.Change, x.Source, entity(x.AdID, x.AdsetID), verdictText(x.Baseline, "-"), verdictText(x.Candidate, "-")})
	}
	want := []v{
		{"only_candidate", "scale", "a4", "- (-)", "approved"},
		{"changed", "pauser", "a3", "rejected (rate_limit_hour)", "approved"},
		{"changed", "external", "adset s1", "approved", "rejected (rate_limit_day)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("verdicts:\n got %+v\nwant %+v", got, want)
	}
	if x := d.Verdicts[2]; x.Baseline.ActionID != "x1" || x.Candidate.ActionID != "x1" {
		t.Errorf("external verdict ids: %+v %+v", x.Baseline, x.Candidate)
	}
	if x := d.Verdicts[1]; x.Baseline.ActionID == x.Candidate.ActionID {
		t.Errorf("a rule's action ids should differ between rule sets: %+v %+v", x.Baseline, x.Candidate)
	}

	// Line 0 (a1) differs only in decision_id, version and hash; line 1
	// is a2 against a4.
	if d.First == nil || d.First.File != "decisions.jsonl" || d.First.Index != 1 {
		t.Fatalf("first difference: %+v", d.First)
	}
	if !strings.Contains(string(d.First.Baseline), `"ad_id":"a2"`) || !strings.Contains(string(d.First.Candidate), `"ad_id":"a4"`) {
		t.Errorf("first difference records:\n%s\n%s", d.First.Baseline, d.First.Candidate)
	}

	wantHours := []Hour{
		{Hour: ts("2026-11-02T10:00:00Z"), Baseline: HourCount{2, 14.5}, Candidate: HourCount{1, 15.2}},
		{Hour: ts("2026-11-02T12:00:00Z"), Candidate: HourCount{1, 7}},
		{Hour: ts("2026-11-02T13:00:00Z"), Baseline: HourCount{Decisions: 1}, Candidate: HourCount{Decisions: 2}},
	}
	if !reflect.DeepEqual(d.Hours, wantHours) {
		t.Errorf("hours:\n got %+v\nwant %+v", d.Hours, wantHours)
	}

	// a2, a4 and a5 each changed once: ties go by ad id. a4's metrics come
	// from the candidate (its only side), numbers only; a2's from the
	// baseline.
	if len(d.TopAds) != 3 || d.TopAds[0].AdID != "a2" || d.TopAds[1].AdID != "a4" || d.TopAds[2].AdID != "a5" {
		t.Fatalf("top ads: %+v", d.TopAds)
	}
	if a := d.TopAds[1]; a.MetricsFrom != "candidate" || !reflect.DeepEqual(a.Metrics, map[string]float64{"ctr": 0.031, "roas": 3.5, "impressions": 2100}) {
		t.Errorf("a4 metrics: %+v", a)
	}
	if a := d.TopAds[0]; a.MetricsFrom != "baseline" || a.Metrics["impressions"] != 1500 || !reflect.DeepEqual(a.Lost, []string{"rag_index_winner"}) {
		t.Errorf("a2: %+v", a)
	}
	if a := d.TopAds[2]; a.MetricsFrom != "" || len(a.Metrics) != 0 || a.Candidate != 1 {
		t.Errorf("a5: %+v", a)
	}
}

// TestTopAdsOrder: most changes first, then by ad id; at most TopN.
func TestTopAdsOrder(t *testing.T) {
	var changes []AdChange
	for _, ad := range []string{"z", "m", "b"} {
		changes = append(changes, AdChange{Type: "t1", AdID: ad, Change: "gained"})
	}
	changes = append(changes, AdChange{Type: "t2", AdID: "z", Change: "lost"})
	for i := range 30 {
		changes = append(changes, AdChange{Type: "t3", AdID: "x" + string(rune('a'+i)), Change: "gained"})
	}
	empty := &side{adDecisions: map[string]int{}, values: map[string]map[string]float64{}}
	top := topAds(changes, empty, empty)
	if len(top) != TopN {
		t.Fatalf("len %d", len(top))
	}
	if top[0].AdID != "z" || top[0].Changes() != 2 || top[1].AdID != "b" || top[2].AdID != "m" {
		t.Errorf("order: %v %v %v", top[0], top[1], top[2])
	}
}

// TestEqualSides: the same outputs under two rule set versions and
// hashes (so different ids) give no difference at all.
func TestEqualSides(t *testing.T) {
	root := t.TempDir()
	mk := func(version int64, sha string) *fixture {
		f := &fixture{version: version, sha: sha}
		f.decide("winner", "rag_index_winner", "a1", "e1", "2026-11-02T10:05:00Z", 1, winnerValues)
		f.ruleVerdict("scale", "budget_change", "a1", "e3", "2026-11-02T10:40:00Z", 3, "approved", "", amount(100), amount(114.5))
		f.externalVerdict("x1", "s1", "2026-11-02T13:30:00Z", 0, "approved", "")
		return f
	}
	mk(1, shaA).write(t, filepath.Join(root, "b"))
	mk(2, shaB).write(t, filepath.Join(root, "c"))
	d, err := Compare(Side{Dir: filepath.Join(root, "b")}, Side{Dir: filepath.Join(root, "c")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Baseline.Name != "baseline" || d.Candidate.Name != "candidate" {
		t.Errorf("default names: %q %q", d.Baseline.Name, d.Candidate.Name)
	}
	if d.First != nil || len(d.Ads) != 0 || len(d.Verdicts) != 0 || len(d.TopAds) != 0 {
		t.Errorf("differences between equal sides: first %+v ads %+v verdicts %+v top %+v", d.First, d.Ads, d.Verdicts, d.TopAds)
	}
	var out bytes.Buffer
	d.Print(&out)
	for _, want := range []string{"no ad gains or loses", "0 differ", "first difference: none"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestFirstDifferenceEnds: when one side has more records, the first
// difference is the first record past the shorter side's end, with null
// for the side that ended; the actions file is walked after the decisions.
func TestFirstDifferenceEnds(t *testing.T) {
	root := t.TempDir()
	b := &fixture{version: 1, sha: shaA}
	b.decide("winner", "rag_index_winner", "a1", "e1", "2026-11-02T10:05:00Z", 1, nil)
	c := &fixture{version: 1, sha: shaA}
	c.decide("winner", "rag_index_winner", "a1", "e1", "2026-11-02T10:05:00Z", 1, nil)
	c.externalVerdict("x1", "s1", "2026-11-02T13:30:00Z", 0, "approved", "")
	b.write(t, filepath.Join(root, "b"))
	c.write(t, filepath.Join(root, "c"))
	d, err := Compare(Side{Dir: filepath.Join(root, "b")}, Side{Dir: filepath.Join(root, "c")})
	if err != nil {
		t.Fatal(err)
	}
	if d.First == nil || d.First.File != "actions.jsonl" || d.First.Index != 0 || d.First.Baseline != nil || d.First.Candidate == nil {
		t.Fatalf("first difference: %+v", d.First)
	}
	var out bytes.Buffer
	if err := d.WriteJSONL(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `{"kind":"first_difference","file":"actions.jsonl","index":0,"baseline":null,"candidate":{"action_id":"x1",`) {
		t.Errorf("diff.jsonl:\n%s", out.String())
	}
}

func TestCompareErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := Compare(Side{Dir: filepath.Join(root, "none")}, Side{Dir: filepath.Join(root, "none")}); err == nil {
		t.Error("missing directory: no error")
	}
	(&fixture{}).write(t, filepath.Join(root, "ok"))
	bad := filepath.Join(root, "bad")
	(&fixture{}).write(t, bad)
	os.WriteFile(filepath.Join(bad, "decisions.jsonl"), []byte("{\"rule_id\":\"r\"}\nnot json\n"), 0o644)
	_, err := Compare(Side{Dir: filepath.Join(root, "ok")}, Side{Dir: bad})
	if err == nil || !strings.Contains(err.Error(), "decisions.jsonl:2:") {
		t.Errorf("bad line: %v", err)
	}
}

// TestJSONL: every line is an object with a kind, in the documented order.
func TestJSONL(t *testing.T) {
	bs, cs := twoSides(t, t.TempDir(), "a2", "a4")
	d, err := Compare(bs, cs)
	if err != nil {
		t.Fatal(err)
	}
	d.Meta = Meta{From: "2026-11-02T00:00:00Z", To: "2026-11-03T00:00:00Z", Input: "events.jsonl", Records: 10}
	var out bytes.Buffer
	if err := d.WriteJSONL(&out); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if !strings.HasPrefix(line, `{"kind":"`) {
			t.Errorf("kind is not the first field: %s", line)
		}
		kinds = append(kinds, m["kind"].(string))
	}
	want := []string{"meta", "side", "side", "hour", "hour", "hour", "ad", "ad", "ad", "verdict", "verdict", "verdict", "first_difference"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	for _, want := range []string{
		`{"kind":"meta","from":"2026-11-02T00:00:00Z","to":"2026-11-03T00:00:00Z","input":"events.jsonl","records":10}`,
		`{"kind":"side","name":"candidate","label":"new.yaml","ruleset_version":2,"ruleset_sha256":"` + shaB + `","decisions":4,"decisions_by_rule":{"pauser":2,"winner":2},`,
		`{"kind":"ad","type":"rag_index_winner","ad_id":"a2","change":"lost","baseline":1,"candidate":0}`,
		`{"kind":"hour","hour":"2026-11-02T12:00:00Z","baseline":{"decisions":0,"budget_moved":0},"candidate":{"decisions":1,"budget_moved":7}}`,
		`"change":"changed","source":"external","type":"pause","ts":"2026-11-02T13:30:00Z","account_id":"acc","adset_id":"s1","input":{"topic":"actions.jsonl","partition":0,"offset":0},"baseline":{"action_id":"x1","status":"approved"},"candidate":{"action_id":"x1","status":"rejected","reason":"rate_limit_day"}}`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diff.jsonl lacks\n%s\nin\n%s", want, out.String())
		}
	}
}

// TestDeterministic: two comparisons of the same directories write
// byte-identical files and summaries.
func TestDeterministic(t *testing.T) {
	root := t.TempDir()
	bs, cs := twoSides(t, root, "a2", "a4")
	var outs [2]map[string][]byte
	for i := range outs {
		d, err := Compare(bs, cs)
		if err != nil {
			t.Fatal(err)
		}
		d.Meta = Meta{Input: "events.jsonl"}
		dir := filepath.Join(root, "out", string(rune('0'+i)))
		os.MkdirAll(dir, 0o755)
		if err := WriteFiles(dir, d); err != nil {
			t.Fatal(err)
		}
		outs[i] = map[string][]byte{}
		for _, name := range []string{"diff.jsonl", "report.html", "report.md"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			outs[i][name] = b
		}
		var p bytes.Buffer
		d.Print(&p)
		outs[i]["summary"] = p.Bytes()
	}
	for name, b := range outs[0] {
		if !bytes.Equal(b, outs[1][name]) {
			t.Errorf("%s differs between two runs", name)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
}

func TestPrint(t *testing.T) {
	bs, cs := twoSides(t, t.TempDir(), "a2", "a4")
	d, err := Compare(bs, cs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d.Print(&out)
	s := out.String()
	for _, want := range []string{
		"rule set", "rules.yaml v1 aaaaaaaaaaaa", "new.yaml v2 bbbbbbbbbbbb",
		"decisions", "  rule pauser", "  type rag_index_winner", "rejected/rate_limit_hour",
		"budget moved", "+14.50", "+22.20", "+7.70",
		"1 gained pause_candidate: a5", "1 gained rag_index_winner: a4", "1 lost rag_index_winner: a2",
		"verdicts:   3 differ: 2 changed, 0 only in baseline, 1 only in candidate",
		"first difference: decisions.jsonl line 2 (index 1)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestMarkdown(t *testing.T) {
	bs, cs := twoSides(t, t.TempDir(), "a|2*<b>", "a4")
	d, err := Compare(bs, cs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.WriteMarkdown(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"## Decisions per rule", "| pauser | 1 | 2 | +1 |",
		"## Verdicts per status and reason", "| rejected/rate_limit_day | 0 | 1 | +1 |",
		"## Top changed ads", "| a4 | rag_index_winner |  | 0 | 1 | ctr 0.031, impressions 2100, roas 3.5 | candidate |",
		"## Ads that gain or lose a decision type", `| rag_index_winner | a\|2\*&lt;b&gt; | lost | 1 | 0 |`,
		"## Changed verdicts", "| 2026-11-02T13:10:00Z | pauser | pause | a3 | events.jsonl/0@7 | rejected (rate_limit_hour) | approved |",
		"| - (only in candidate) | approved |",
		"## Decisions and budget moved per hour", "| 2026-11-02T12:00Z | 0 | 1 | 0.00 | +7.00 | +14.50 | +22.20 |",
		"## First difference", "decisions.jsonl, line 2 (index 1).",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// Outside the first difference's code blocks, no tag is left as is.
	if before, _, _ := strings.Cut(s, "```"); strings.Contains(before, "<b>") {
		t.Error("report.md holds an unescaped tag")
	}
	// Every table row has as many cells as its header.
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "|") && !strings.HasSuffix(line, "|") {
			t.Errorf("broken row: %s", line)
		}
	}
}

// hostile is an ad id that tries to end the data script and open markup.
const hostile = `</script><script>alert(1)</script>"&<>`

func TestHTMLSelfContainedAndEscaped(t *testing.T) {
	bs, cs := twoSides(t, t.TempDir(), hostile, "a4'\"&<x>")
	d, err := Compare(bs, cs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.WriteHTML(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	noNetwork(t, s)
	if strings.Contains(s, "alert(1)</script>") || strings.Contains(s, "<x>") {
		t.Error("an ad id is not escaped")
	}
	if n := strings.Count(s, "<script"); n != 3 {
		t.Errorf("%d script elements, want 3 (error recorder, data, charts)", n)
	}
	// The data reads back with the ids as they were.
	m := regexp.MustCompile(`(?s)<script type="application/json" id="data">(.*?)</script>`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("no data element")
	}
	var data chartData
	if err := json.Unmarshal([]byte(m[1]), &data); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range data.Top {
		ids = append(ids, a.ID)
	}
	if !reflect.DeepEqual(ids, []string{hostile, "a4'\"&<x>", "a5"}) {
		t.Errorf("top ads in the data: %q", ids)
	}
	for _, want := range []string{`<pre id="errors" hidden></pre>`, `<body data-status="pending">`, `id="chart-hours"`, `id="chart-budget"`, `id="chart-top"`} {
		if !strings.Contains(s, want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
}

// noNetwork fails when the page names anything to fetch.
func noNetwork(t *testing.T, page string) {
	t.Helper()
	for _, bad := range []string{"http://", "https://", "url(", "@import", "<link", "<iframe", "<img"} {
		if strings.Contains(page, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	if m := regexp.MustCompile(`(?i)\b(src|href)\s*=`).FindString(page); m != "" {
		t.Errorf("report.html has a %s attribute", m)
	}
}

func TestHTMLEmpty(t *testing.T) {
	root := t.TempDir()
	(&fixture{}).write(t, filepath.Join(root, "b"))
	(&fixture{}).write(t, filepath.Join(root, "c"))
	d, err := Compare(Side{Dir: filepath.Join(root, "b")}, Side{Dir: filepath.Join(root, "c")})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.WriteHTML(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `{"names":["baseline","candidate"],"hours":[],"top":[]}`) {
		t.Errorf("empty data: %s", out.String())
	}
	noNetwork(t, out.String())
}
