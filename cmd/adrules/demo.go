package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/rules"
)

// cmdDemo generates a week of events with some noise, backtests the default
// rules over it and shows what they decided, then what a looser threshold
// would have decided instead, with the report.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rulesFile := fs.String("rules", "examples/rules.yaml", "rules file")
	dir := fs.String("dir", ".data/demo", "where to write the generated files and the output")
	seed := fs.Uint64("seed", 1, "seed of the synthetic history")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	rs, err := loadRules(*rulesFile, "", env)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{1}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	events := filepath.Join(*dir, "events.jsonl")
	actions := filepath.Join(*dir, "actions-in.jsonl")
	o := gen.Options{Seed: *seed, BadPct: 0.5, DupPct: 1, EpochMsPct: 30}
	w, done, err := create(events, stdout)
	if err != nil {
		return err
	}
	st, err := gen.Events(w, o)
	if err = done(err); err != nil {
		return err
	}
	w, done, err = create(actions, stdout)
	if err != nil {
		return err
	}
	np, err := gen.Proposals(w, gen.ProposalOptions{Seed: *seed, Count: 300})
	if err = done(err); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Generated %s: %d lines, %d ads over 7 days (%d malformed, %d duplicates), and %d external proposals.\n\n",
		events, st.Lines, st.Ads, st.Bad, st.Dups, np)

	in, err := os.Open(events)
	if err != nil {
		return err
	}
	defer in.Close()
	ain, err := os.Open(actions)
	if err != nil {
		return err
	}
	defer ain.Close()
	out := filepath.Join(*dir, "out")
	sum, err := backtest.Run(ctx, backtest.Options{
		RuleSet: rs, Input: in, InputName: events, Actions: ain, ActionsName: actions, OutDir: out,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Backtest of %s (rule set %q, sha256 %s):\n", *rulesFile, rs.Name, rs.SHA256[:12])
	sum.Print(stdout)

	fmt.Fprintln(stdout, "\nFirst winners found:")
	if err := show(filepath.Join(out, "decisions.jsonl"), 3, stdout, func(b []byte) string {
		var d rules.Decision
		if json.Unmarshal(b, &d) != nil {
			return ""
		}
		return fmt.Sprintf("  %s  %s  %s (account %s)\n      %s", rules.FormatTime(int64(d.TS)), d.Type, d.AdID, d.AccountID, strings.Join(d.Explain, "\n      "))
	}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nFirst guard verdicts:")
	if err := show(filepath.Join(out, "actions.jsonl"), 5, stdout, func(b []byte) string {
		var v rules.Verdict
		if json.Unmarshal(b, &v) != nil {
			return ""
		}
		s := fmt.Sprintf("  %s  %-13s %-8s %-16s", rules.FormatTime(int64(v.TS)), v.Type, v.Status, v.Reason)
		if v.FinalBudget != nil {
			s += fmt.Sprintf(" budget %.2f -> %.2f (final %.2f)", *v.OldBudget, *v.NewBudget, *v.FinalBudget)
		}
		return s
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nAll output is in %s: decisions.jsonl, actions.jsonl, dlq.jsonl.\n", out)

	// What would a looser CTR threshold have done? The same file, one
	// parameter changed the way a deployment changes it (a variable), side
	// by side with the rules as they are.
	const knob = "ADRULES__PARAMS__WINNER_DETECTION__CTR_THRESHOLD"
	cand, err := loadRules(*rulesFile, "", map[string]string{knob: "0.02"})
	if err != nil {
		return err
	}
	cmp := filepath.Join(*dir, "compare")
	fmt.Fprintf(stdout, "\nThe same week with %s=0.02 (candidate) beside the rules as they are (baseline):\n\n", knob)
	sides := []*backtest.Side{
		{Name: "candidate", Label: "ctr_threshold 0.02", RuleSet: cand, Dir: filepath.Join(cmp, "candidate")},
		{Name: "baseline", Label: *rulesFile, RuleSet: rs, Dir: filepath.Join(cmp, "baseline")},
	}
	if err := fileBacktest(ctx, sides, backtest.FilesOptions{Input: events, Actions: actions}, cmp, stdout, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe comparison is in %s: diff.jsonl, report.md, and report.html to open in a browser.\n", cmp)
	return nil
}

// show prints the first n lines of a JSON Lines file through format.
func show(path string, n int, w io.Writer, format func([]byte) string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; i < n && sc.Scan(); i++ {
		fmt.Fprintln(w, format(sc.Bytes()))
	}
	return sc.Err()
}
