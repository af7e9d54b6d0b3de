package config

import (
	"errors"
	"strings"
	"testing"
)

// TestPosOf checks PosOf finds the value at a path where the file (or a
// variable) gave it, and the zero Pos where nobody did.
func TestPosOf(t *testing.T) {
	src := `params:
  winner_detection: {ctr_threshold: 0.03}
rules:
  - id: a
    when: ad.ctr > 0.1
    emit: {type: x, values: [ctr, w24h.roas]}
  - id: b
    when: ad.ctr > 0.2
    emit:
      type: y
      values:
        - roas
        - w6h.spend / w6h.impressions
`
	d, err := Load("test.yaml", []byte(src), Options{Vars: map[string]string{"ADRULES__RULES__A__EMIT__TYPE": "z"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want Pos
	}{
		{"rules[0].emit.values[0]", Pos{File: "test.yaml", Line: 6, Col: 30}},
		{"rules[0].emit.values[1]", Pos{File: "test.yaml", Line: 6, Col: 35}},
		{"rules[1].emit.values[1]", Pos{File: "test.yaml", Line: 13, Col: 11}},
		{"rules[1].emit.values", Pos{File: "test.yaml", Line: 12, Col: 9}},
		{"rules[1]", Pos{File: "test.yaml", Line: 7, Col: 5}},
		{"params.winner_detection.ctr_threshold", Pos{File: "test.yaml", Line: 2, Col: 37}},
		{"rules[0].emit.type", Pos{File: "test.yaml", Var: "ADRULES__RULES__A__EMIT__TYPE"}},
		{"rules[1].emit.values[2]", Pos{}}, // no such value
		{"rules[1].cooldown", Pos{}},       // left out
		{"guards.jitter.min", Pos{}},       // a default
		{"rules[1].emit.values[1].x", Pos{}},
		{"", Pos{File: "test.yaml", Line: 1, Col: 1}},
	}
	for _, tc := range tests {
		if got := d.PosOf(tc.path); got != tc.want {
			t.Errorf("PosOf(%q) = %#v, want %#v", tc.path, got, tc.want)
		}
	}
	if got := (&Document{}).PosOf("rules[0]"); got != (Pos{}) {
		t.Errorf("PosOf on a Document built in code = %v", got)
	}
}

// TestPosOfPredecessor checks PosOf on the predecessor's file: guards
// values are where safe_executor has them, and the built-in winner rule's
// emit values, which no file wrote, have no position.
func TestPosOfPredecessor(t *testing.T) {
	d, err := Load("learning_config.yaml", readFile(t, "learning_config.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want Pos
	}{
		{"guards.jitter.min", Pos{File: "learning_config.yaml", Line: 47, Col: 13}},
		{"guards.rate_limit.max_per_hour", Pos{File: "learning_config.yaml", Line: 40, Col: 27}},
		{"params.winner_detection.min_impressions", Pos{File: "learning_config.yaml", Line: 11, Col: 20}},
		{"rules[0].emit.values[0]", Pos{}},
	}
	for _, tc := range tests {
		if got := d.PosOf(tc.path); got != tc.want {
			t.Errorf("PosOf(%q) = %#v, want %#v", tc.path, got, tc.want)
		}
	}
}

// TestSchemaAndValidationErrorsTogether checks Load reports the problems
// of keys and types together with those of validation, in file order.
func TestSchemaAndValidationErrorsTogether(t *testing.T) {
	src := `rules:
  - id: a
    when: ad.ctr > 0.1
    cooldwn: 6h
    emit: {type: x}
  - id: b
    when: ad.ctr > 0.1
    once: twice
    emit: {type: x}
guards:
  rate_limit: {max_per_hour: many}
  jitter: {min: 9s, max: 1s}
`
	_, err := Load("test.yaml", []byte(src), Options{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []string{
		`test.yaml:4:5: rule a: unknown key "cooldwn" in rule (did you mean cooldown?)`,
		`test.yaml:8:11: rule b: once must be per_ad or left out`,
		`test.yaml:11:30: expected a whole number, got "many"`,
		`test.yaml:12:17: jitter.min 9s is more than jitter.max 1s`,
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(es), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(es[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, es[i].Error(), w)
		}
	}
}

// TestNoValidationOfUnreadValues checks that a value that could not be
// read is reported once, not judged again by validation as the zero left
// in its place.
func TestNoValidationOfUnreadValues(t *testing.T) {
	tests := []struct {
		name, src string
		msg       string // the one error
	}{
		{"whole number", base + "guards: {rate_limit: {max_per_hour: many}}\n", `expected a whole number, got "many"`},
		{"change_pct", "rules: [{id: a, when: true, action: {type: budget_change, change_pct: lots}}]\n", `expected a number, got "lots"`},
		{"misspelt when", "rules: [{id: a, wen: true, emit: {type: x}}]\n", `unknown key "wen" in rule (did you mean when?)`},
		{"misspelt emit", "rules: [{id: a, when: true, emitt: {type: x}}]\n", `unknown key "emitt" in rule (did you mean emit?)`},
		{"emit not a mapping", "rules: [{id: a, when: true, emit: x}]\n", `expected keys and values (a mapping), got "x"`},
		{"emit type not text", "rules: [{id: a, when: true, emit: {type: [x]}}]\n", `expected text, got a list`},
		{"rule not a mapping", "rules: [a]\n", `expected keys and values (a mapping), got "a"`},
		{"rule id not text", "rules: [{id: [a], when: true, emit: {type: x}}]\n", `expected text, got a list`},
		{"window", base + "windows: [1h, 6x]\n", `"6x" is not a duration`},
		{"horizon", base + "dedupe: {horizon: long}\n", `"long" is not a duration`},
		{"jitter max", base + "guards: {jitter: {min: 5s, max: soon}}\n", `"soon" is not a duration`},
		{"feature_flags", "feature_flags: [a]\nrules: [{id: a, when: true, enabled_by: a, emit: {type: x}}]\n", "expected keys and values (a mapping), got a list"},
		{"name", base + "name: [x]\n", "expected text, got a list"},
		{"guards", base + "guards: off\n", `expected keys and values (a mapping), got "off"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if tc.name == "name" {
				src = strings.Replace(src, "name: test\n", "", 1)
			}
			_, err := Load("test.yaml", []byte(src), Options{})
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Msg, tc.msg) {
				t.Errorf("got %v, want one error containing %q", err, tc.msg)
			}
		})
	}
}
