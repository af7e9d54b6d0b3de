package replay_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/adrules/adrules/replay"
	"github.com/adrules/adrules/rules"
)

func in(topic string, p int32, off int64) rules.Input {
	return rules.Input{Topic: topic, Partition: p, Offset: off}
}

func out(i rules.Input, v string) replay.Output { return replay.Output{Input: i, Value: []byte(v)} }

func TestCompareInput(t *testing.T) {
	ordered := []rules.Input{in("a", 0, 5), in("a", 1, 0), in("a", 1, 3), in("b", 0, 0)}
	for i, x := range ordered {
		for j, y := range ordered {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := replay.CompareInput(x, y); got != want {
				t.Errorf("CompareInput(%v, %v) = %d, want %d", x, y, got, want)
			}
		}
	}
}

func TestWithout(t *testing.T) {
	a, b, c := out(in("t", 0, 0), "a"), out(in("t", 0, 0), "b"), out(in("t", 0, 0), "c")
	for _, tc := range []struct {
		x, y, want []replay.Output
	}{
		{nil, nil, nil},
		{[]replay.Output{a, b}, nil, []replay.Output{a, b}},
		{[]replay.Output{a, b}, []replay.Output{b}, []replay.Output{a}},
		// As many times: one a of two is held.
		{[]replay.Output{a, a, c}, []replay.Output{a, b}, []replay.Output{a, c}},
		{[]replay.Output{a}, []replay.Output{a, a}, nil},
	} {
		got := replay.Without(tc.x, tc.y)
		if !slices.EqualFunc(got, tc.want, func(p, q replay.Output) bool { return string(p.Value) == string(q.Value) }) {
			t.Errorf("Without(%s, %s) = %s, want %s", values(tc.x), values(tc.y), values(got), values(tc.want))
		}
	}
}

func values(o []replay.Output) []string {
	var s []string
	for _, x := range o {
		s = append(s, string(x.Value))
	}
	return s
}

func TestFirstDiff(t *testing.T) {
	r0, r1, r2 := in("m", 0, 1), in("m", 0, 2), in("m", 1, 0)
	for _, tc := range []struct {
		name               string
		replayed, recorded []replay.Output
		want               string
	}{
		{"both empty", nil, nil, ""},
		{"identical", []replay.Output{out(r0, "x"), out(r0, "y"), out(r2, "z")}, []replay.Output{out(r0, "x"), out(r0, "y"), out(r2, "z")}, ""},
		{"a value changed", []replay.Output{out(r0, "x"), out(r1, "y")}, []replay.Output{out(r0, "x"), out(r1, "Y")},
			"different: decisions of input m/0@2\n  replayed, not on out: y\n  on out, not replayed: Y"},
		{"missing on the topic", []replay.Output{out(r0, "x"), out(r1, "y")}, []replay.Output{out(r0, "x")},
			"different: decisions of input m/0@2\n  replayed, not on out: y"},
		{"not replayed", []replay.Output{out(r2, "z")}, []replay.Output{out(r1, "y"), out(r2, "z")},
			"different: decisions of input m/0@2\n  on out, not replayed: y"},
		{"the first of two differences", []replay.Output{out(r1, "y"), out(r2, "z")}, []replay.Output{out(r1, "y2"), out(r2, "z2")},
			"different: decisions of input m/0@2\n  replayed, not on out: y\n  on out, not replayed: y2"},
		{"another order", []replay.Output{out(r0, "x"), out(r0, "y")}, []replay.Output{out(r0, "y"), out(r0, "x")},
			"different: decisions of input m/0@1: the same records in another order\n  replayed, not on out: x\n  replayed, not on out: y\n  on out, not replayed: y\n  on out, not replayed: x"},
		{"one more copy", []replay.Output{out(r0, "x")}, []replay.Output{out(r0, "x"), out(r0, "x")},
			"different: decisions of input m/0@1\n  on out, not replayed: x"},
	} {
		if got := replay.FirstDiffOf("decisions", "out", tc.replayed, tc.recorded); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestWriteDir: one line per output, each kind in its file, and an empty
// file for a kind without outputs.
func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	o := &replay.Outputs{
		Decisions: []replay.Output{out(in("m", 0, 0), `{"d":1}`), out(in("m", 0, 1), `{"d":2}`)},
		Verdicts:  []replay.Output{out(in("m", 0, 0), `{"v":1}`)},
	}
	if err := o.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"decisions.jsonl": "{\"d\":1}\n{\"d\":2}\n",
		"proposals.jsonl": "",
		"actions.jsonl":   "{\"v\":1}\n",
	} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q (%v), want %q", file, got, err, want)
		}
	}
}
