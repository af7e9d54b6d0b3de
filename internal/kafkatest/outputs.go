package kafkatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/rules"
)

// Outputs are what a file backtest wrote, line by line.
type Outputs struct {
	Decisions [][]byte
	Verdicts  [][]byte
	DLQ       [][]byte // the backtest's dead-letter lines (JSON, with the reason)
	Summary   *backtest.Summary
}

// BacktestAll runs the file backtest over metric event lines and external
// proposal lines (nil: none) and returns everything it wrote.
func BacktestAll(t testing.TB, rs *rules.RuleSet, events, actions [][]byte) Outputs {
	t.Helper()
	dir := t.TempDir()
	o := backtest.Options{RuleSet: rs, Input: bytes.NewReader(joinLines(events)), InputName: "file", OutDir: dir}
	if actions != nil {
		o.Actions, o.ActionsName = bytes.NewReader(joinLines(actions)), "actions"
	}
	sum, err := backtest.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) [][]byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return nil
		}
		return bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	}
	return Outputs{Decisions: read("decisions.jsonl"), Verdicts: read("actions.jsonl"), DLQ: read("dlq.jsonl"), Summary: sum}
}

func joinLines(lines [][]byte) []byte {
	return append(bytes.Join(lines, []byte("\n")), '\n')
}

// Verdicts returns, for verdict lines, action_id -> what the guards said:
// status, reason, final budget and execute_after. That is what must not
// depend on timing, partitions or nodes; where the proposal was read from
// and the version number may.
func Verdicts(t testing.TB, lines [][]byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range lines {
		var v struct {
			ActionID     string   `json:"action_id"`
			Status       string   `json:"status"`
			Reason       string   `json:"reason"`
			FinalBudget  *float64 `json:"final_budget"`
			ExecuteAfter string   `json:"execute_after"`
		}
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatalf("not a verdict: %s", l)
		}
		if _, dup := out[v.ActionID]; dup {
			t.Fatalf("two verdicts for action %s", v.ActionID)
		}
		fb := "-"
		if v.FinalBudget != nil {
			fb = fmt.Sprint(*v.FinalBudget)
		}
		out[v.ActionID] = fmt.Sprintf("%s %s %s %s", v.Status, v.Reason, fb, v.ExecuteAfter)
	}
	return out
}

// DiffVerdicts describes how two sets of Verdicts differ (at most n lines),
// "" when they are equal.
func DiffVerdicts(got, want map[string]string, n int) string {
	var b bytes.Buffer
	ids := map[string]bool{}
	for id := range got {
		ids[id] = true
	}
	for id := range want {
		ids[id] = true
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	slices.Sort(sorted)
	diffs := 0
	for _, id := range sorted {
		if got[id] != want[id] {
			diffs++
			if diffs <= n {
				fmt.Fprintf(&b, "  %s: got %q, want %q\n", id, got[id], want[id])
			}
		}
	}
	if diffs == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d verdicts differ:\n%s", diffs, len(sorted), b.String())
}
