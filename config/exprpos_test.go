package config

import (
	"strings"
	"testing"
)

// exprAt returns the expression position (line and column from 1) of the
// first occurrence of tok in expr.
func exprAt(t *testing.T, expr, tok string) (int, int) {
	t.Helper()
	i := strings.Index(expr, tok)
	if i < 0 {
		t.Fatalf("%q not in %q", tok, expr)
	}
	line := strings.Count(expr[:i], "\n") + 1
	col := i - strings.LastIndexByte(expr[:i], '\n')
	return line, col
}

// TestWhenPositions checks that a position inside a when-expression maps
// back to the place in the file where that text is, for every YAML style.
func TestWhenPositions(t *testing.T) {
	src := `rules:
  - id: plain
    when: ad.ctr > 0.03 && ad.roas > 3
    emit: {type: x}
  - id: double-quoted
    when: "ad.ctr > 0.03 && ad.roas > 3"
    emit: {type: x}
  - id: single-quoted
    when: 'ad.ctr > 0.03 && ad.roas > 3'
    emit: {type: x}
  - id: flow
    emit: {type: x}
  - {id: in-flow, when: ad.ctr > 0.03 && ad.roas > 3, emit: {type: x}}
  - id: plain-multi-line
    when: ad.ctr > 0.03 &&
      ad.roas > 3
    emit: {type: x}
  - id: literal
    when: |
      ad.ctr > 0.03 &&
        ad.roas > 3
    emit: {type: x}
  - id: folded
    when: >-
      ad.ctr > 0.03 &&
      ad.roas > 3
    emit: {type: x}
  - id: folded-more-indented
    when: >
      ad.ctr > 0.03 &&
      (ad.impressions > 10
        ? ad.roas > 3
        : ad.roas > 4)
    emit: {type: x}
  - id: escapes
    when: "ad.ctr > 0.03 && \"x\" != \"y\" && ad.roas > 3"
    emit: {type: x}
`
	src = strings.Replace(src, "  - id: flow\n    emit: {type: x}\n", "", 1)
	lines := strings.Split(src, "\n")
	d, err := Load("test.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	folded := map[string]bool{"plain-multi-line": true, "folded": true, "folded-more-indented": true}
	for _, r := range d.Rules {
		t.Run(r.ID, func(t *testing.T) {
			if r.WhenPos.Folded != folded[r.ID] {
				t.Errorf("Folded = %v", r.WhenPos.Folded)
			}
			for _, tok := range []string{"ad.ctr", "0.03", "ad.roas > 3"} {
				if r.ID == "escapes" && tok == "ad.roas > 3" {
					continue // after an escape the columns shift; the line is still right
				}
				line, col := exprAt(t, r.When, tok)
				p := r.WhenPos.At(line, col)
				if p.File != "test.yaml" || p.Line < 1 || p.Line > len(lines) || p.Col < 1 {
					t.Fatalf("At(%d, %d) = %v for %q", line, col, p, tok)
				}
				if got := lines[p.Line-1][p.Col-1:]; !strings.HasPrefix(got, tok) {
					t.Errorf("At(%d, %d) for %q = %v, which holds %q", line, col, tok, p, got)
				}
			}
		})
	}
}

func TestWhenPositionsExact(t *testing.T) {
	src := `rules:
  - id: folded
    when: >
      ad.ctr > 0.03 &&
      (ad.impressions > 10
        ? ad.roas > 3
        : ad.roas > 4)
    emit: {type: x}
`
	d, err := Load("test.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := d.Rules[0].WhenPos
	if !e.Folded {
		t.Errorf("Folded = false for a > scalar")
	}
	tests := []struct {
		line, col int
		want      Pos
	}{
		{1, 1, Pos{File: "test.yaml", Line: 4, Col: 7}},    // ad.ctr
		{1, 18, Pos{File: "test.yaml", Line: 5, Col: 7}},   // (ad.impressions, joined with a space
		{1, 19, Pos{File: "test.yaml", Line: 5, Col: 8}},   // ad.impressions
		{2, 3, Pos{File: "test.yaml", Line: 6, Col: 9}},    // ? ad.roas: more-indented lines keep their breaks
		{2, 1, Pos{File: "test.yaml", Line: 6, Col: 7}},    // the indentation before it
		{3, 3, Pos{File: "test.yaml", Line: 7, Col: 9}},    // : ad.roas
		{3, 100, Pos{File: "test.yaml", Line: 7, Col: 23}}, // past the end: just after the line
		{9, 1, Pos{File: "test.yaml", Line: 7, Col: 23}},   // past the last line
	}
	for _, tc := range tests {
		if got := e.At(tc.line, tc.col); got != tc.want {
			t.Errorf("At(%d, %d) = %v, want %v", tc.line, tc.col, got, tc.want)
		}
	}
	if p := d.Rules[0].Pos; p != (Pos{File: "test.yaml", Line: 2, Col: 5}) {
		t.Errorf("rule Pos = %v", p)
	}
}

// ExprPos values built by hand, without expression coordinates, keep
// their meaning.
func TestExprPosWithoutExprCoordinates(t *testing.T) {
	literal := ExprPos{File: "f", Lines: []LineSpan{{Line: 3, Col: 7, Len: 4}, {Line: 4, Col: 9, Len: 5}}}
	if got := literal.At(2, 2); got != (Pos{File: "f", Line: 4, Col: 10}) {
		t.Errorf("literal At(2, 2) = %v", got)
	}
	folded := literal
	folded.Folded = true
	if got := folded.At(1, 7); got != (Pos{File: "f", Line: 4, Col: 10}) {
		t.Errorf("folded At(1, 7) = %v", got)
	}
	if got := (ExprPos{File: "f"}).At(1, 1); got != (Pos{File: "f"}) {
		t.Errorf("empty At = %v", got)
	}
}

// A when set by a variable points at the variable.
func TestWhenFromVariable(t *testing.T) {
	d, err := Load("test.yaml", []byte(base), Options{Vars: map[string]string{"ADRULES__RULES__SCALE__WHEN": "w6h.roas > 5"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Rules[0].WhenPos.At(1, 5); got != (Pos{File: "test.yaml", Var: "ADRULES__RULES__SCALE__WHEN", Line: 1, Col: 5}) {
		t.Errorf("At = %v", got)
	}
}
