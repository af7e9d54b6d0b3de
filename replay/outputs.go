package replay

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/adrules/adrules/rules"
)

// sort orders each kind of output by its input record, keeping the order
// of the outputs of one record (a node writes them in rule order).
func (o *Outputs) sort() {
	for _, x := range [][]Output{o.Decisions, o.Proposals, o.Verdicts} {
		slices.SortStableFunc(x, func(a, b Output) int { return compareInput(a.Input, b.Input) })
	}
}

// WriteDir writes the outputs as JSON Lines into dir (made if missing):
// decisions.jsonl, proposals.jsonl and actions.jsonl (the verdicts).
func (o *Outputs) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, outs := range map[string][]Output{"decisions.jsonl": o.Decisions, "proposals.jsonl": o.Proposals, "actions.jsonl": o.Verdicts} {
		var b bytes.Buffer
		for _, x := range outs {
			b.Write(x.Value)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// firstDiff compares replayed and recorded outputs of one kind (both in
// input order) input record by input record, and describes the first
// record whose outputs differ, or returns "". topic is where the recorded
// ones were read.
func firstDiff(kind, topic string, replayed, recorded []Output) string {
	a, b := replayed, recorded
	for len(a) > 0 || len(b) > 0 {
		var in rules.Input
		switch {
		case len(a) == 0:
			in = b[0].Input
		case len(b) == 0:
			in = a[0].Input
		case compareInput(a[0].Input, b[0].Input) <= 0:
			in = a[0].Input
		default:
			in = b[0].Input
		}
		var ga, gb []Output
		for len(a) > 0 && a[0].Input == in {
			ga, a = append(ga, a[0]), a[1:]
		}
		for len(b) > 0 && b[0].Input == in {
			gb, b = append(gb, b[0]), b[1:]
		}
		if slices.EqualFunc(ga, gb, func(x, y Output) bool { return bytes.Equal(x.Value, y.Value) }) {
			continue
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "different: %s of input %s/%d@%d", kind, in.Topic, in.Partition, in.Offset)
		onlyA, onlyB := without(ga, gb), without(gb, ga)
		if len(onlyA) == 0 && len(onlyB) == 0 {
			sb.WriteString(": the same records in another order")
			onlyA, onlyB = ga, gb
		}
		for _, o := range onlyA {
			fmt.Fprintf(&sb, "\n  replayed, not on %s: %s", topic, o.Value)
		}
		for _, o := range onlyB {
			fmt.Fprintf(&sb, "\n  on %s, not replayed: %s", topic, o.Value)
		}
		return sb.String()
	}
	return ""
}

// compareInput orders input records by topic, partition and offset.
func compareInput(x, y rules.Input) int {
	return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition), cmp.Compare(x.Offset, y.Offset))
}

// without returns the outputs of x that y does not hold (as many times).
func without(x, y []Output) []Output {
	left := map[string]int{}
	for _, o := range y {
		left[string(o.Value)]++
	}
	var out []Output
	for _, o := range x {
		if left[string(o.Value)] > 0 {
			left[string(o.Value)]--
			continue
		}
		out = append(out, o)
	}
	return out
}
