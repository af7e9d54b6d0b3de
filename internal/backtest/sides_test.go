package backtest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/report"
)

// sideFiles writes a history and proposals for it to files and returns
// the default rules (baseline) and stricter winner thresholds (candidate).
func sideFiles(t *testing.T) (events, actions string, base, cand *Side) {
	t.Helper()
	dir := t.TempDir()
	var ev, ac bytes.Buffer
	if _, err := gen.Events(&ev, gen.Options{Seed: 21, Accounts: 4, Duration: 48 * time.Hour, BadPct: 1, DupPct: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Proposals(&ac, gen.ProposalOptions{Seed: 21, Accounts: 4, Duration: 48 * time.Hour, Count: 50}); err != nil {
		t.Fatal(err)
	}
	events, actions = filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "actions.jsonl")
	if err := os.WriteFile(events, ev.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(actions, ac.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.NewReplacer("ctr_threshold: 0.03", "ctr_threshold: 0.045", "roas_threshold: 3.0", "roas_threshold: 4.5").Replace(string(src))
	base = &Side{Name: "baseline", Label: "rules.yaml", RuleSet: ruleSet(t, string(src)), Dir: filepath.Join(dir, "out", "baseline")}
	cand = &Side{Name: "candidate", Label: "strict.yaml", RuleSet: ruleSet(t, strict), Dir: filepath.Join(dir, "out", "candidate")}
	return events, actions, base, cand
}

// alone runs s by itself over the files (Run) and returns its decisions.
func alone(t *testing.T, s *Side, events, actions string) []byte {
	t.Helper()
	ev, _ := os.Open(events)
	defer ev.Close()
	ac, _ := os.Open(actions)
	defer ac.Close()
	dir := t.TempDir()
	if _, err := Run(context.Background(), Options{RuleSet: s.RuleSet, Input: ev, InputName: events, Actions: ac, ActionsName: actions, OutDir: dir}); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join(dir, "decisions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRunFilesCompare: two sides run at once over the same files, each
// with its own state, write what each would alone; progress counts both
// sides' bytes; Compare writes the report of the two with the meta given.
func TestRunFilesCompare(t *testing.T) {
	t.Parallel()
	events, actions, base, cand := sideFiles(t)
	st, err := os.Stat(events)
	if err != nil {
		t.Fatal(err)
	}
	var size, read int64
	var unit string
	progress := func(tot int64, u string, r func() int64) func() {
		size, unit = tot, u
		return func() { read = r() }
	}
	sides := []*Side{cand, base}
	if err := RunFiles(context.Background(), FilesOptions{Input: events, Actions: actions, Progress: progress}, sides); err != nil {
		t.Fatal(err)
	}
	if unit != "bytes" || size != 2*st.Size() || read != size {
		t.Errorf("progress: %d of %d %s, want %d of %d bytes", read, size, unit, 2*st.Size(), 2*st.Size())
	}
	for _, s := range sides {
		got, err := os.ReadFile(filepath.Join(s.Dir, "decisions.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if want := alone(t, s, events, actions); !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes of decisions beside the other side, %d alone", s.Name, len(got), len(want))
		}
		if s.Summary == nil || s.Summary.Interrupted || s.Summary.External != 50 || s.Summary.Lines == 0 {
			t.Errorf("%s: summary %+v", s.Name, s.Summary)
		}
	}
	if base.Summary.Types["rag_index_winner"] <= cand.Summary.Types["rag_index_winner"] {
		t.Fatalf("winners: baseline %d, candidate %d: the test would prove little", base.Summary.Types["rag_index_winner"], cand.Summary.Types["rag_index_winner"])
	}

	out := filepath.Dir(base.Dir)
	meta := report.Meta{Input: events, Actions: actions, Records: base.Summary.Lines}
	d, err := Compare(base, cand, meta, out)
	if err != nil {
		t.Fatal(err)
	}
	if d.Meta != meta || d.Baseline.Name != "baseline" || d.Candidate.Label != "strict.yaml" || d.Candidate.RulesetSHA256 != cand.RuleSet.SHA256 {
		t.Errorf("diff: meta %+v, baseline %+v, candidate %+v", d.Meta, d.Baseline, d.Candidate)
	}
	if d.Baseline.Decisions != total(base.Summary.Decisions) || d.Candidate.Decisions != total(cand.Summary.Decisions) {
		t.Errorf("diff counts %d and %d decisions, the runs %d and %d", d.Baseline.Decisions, d.Candidate.Decisions, total(base.Summary.Decisions), total(cand.Summary.Decisions))
	}
	for _, f := range []string{"diff.jsonl", "report.html", "report.md"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestRunFilesInterrupted: a run whose context has ended returns no error;
// every side's summary says it was interrupted.
func TestRunFilesInterrupted(t *testing.T) {
	t.Parallel()
	events, _, base, cand := sideFiles(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sides := []*Side{cand, base}
	if err := RunFiles(ctx, FilesOptions{Input: events}, sides); err != nil {
		t.Fatal(err)
	}
	for _, s := range sides {
		if s.Summary == nil || !s.Summary.Interrupted {
			t.Errorf("%s: summary %+v, want interrupted", s.Name, s.Summary)
		}
	}
}

// TestRunFilesErrors: standard input for two sides, a missing file, and a
// side that cannot write (named in the error).
func TestRunFilesErrors(t *testing.T) {
	t.Parallel()
	events, _, base, cand := sideFiles(t)
	ctx := context.Background()
	if err := RunFiles(ctx, FilesOptions{Input: "-", Stdin: strings.NewReader("")}, []*Side{cand, base}); err == nil {
		t.Error("two sides read standard input")
	}
	if err := RunFiles(ctx, FilesOptions{Input: events, Actions: events + ".none"}, []*Side{cand}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing actions file: %v", err)
	}
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base.Dir = blocked
	if err := RunFiles(ctx, FilesOptions{Input: events}, []*Side{cand, base}); err == nil || !strings.HasPrefix(err.Error(), "baseline: ") {
		t.Errorf("a side that cannot write: %v, want an error named baseline", err)
	}
}

// TestDefaultWarmup: the longest window of any side's rule set.
func TestDefaultWarmup(t *testing.T) {
	t.Parallel()
	short := &Side{RuleSet: ruleSet(t, "windows: [1h, 6h]\nrules: [{id: a, when: \"true\", emit: {type: x}}]\n")}
	src, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := &Side{RuleSet: ruleSet(t, string(src))} // windows [1h, 6h, 24h, 7d]
	for _, c := range []struct {
		sides []*Side
		want  time.Duration
	}{
		{nil, 0},
		{[]*Side{short}, 6 * time.Hour},
		{[]*Side{short, base}, 7 * 24 * time.Hour},
	} {
		if got := DefaultWarmup(c.sides); got != c.want {
			t.Errorf("%d sides: %s, want %s", len(c.sides), got, c.want)
		}
	}
}
