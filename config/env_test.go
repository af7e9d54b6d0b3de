package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const overlays = `name: test
params:
  winner_detection: {ctr_threshold: 0.03, min_impressions: 1000}
feature_flags: {rag_auto_indexing: true}
rules:
  - id: scale
    when: w24h.roas > 4
    action: {type: budget_change, change_pct: 20}
guards:
  rate_limit: {max_per_hour: 15}
environments:
  development:
    params: {winner_detection: {min_impressions: 100}}
    guards: {rate_limit: {max_per_hour: 1000}}
  staging:
    params: {winner_detection: {min_impressions: 500}}
  production: {}
`

func minImpressions(t *testing.T, d *Document) any {
	t.Helper()
	return d.Params["winner_detection"].(map[string]any)["min_impressions"]
}

func TestOverlaySelection(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		env  string
		want int
	}{
		{"none", Options{}, "", 1000},
		{"ADRULES_ENV", Options{Vars: map[string]string{"ADRULES_ENV": "development"}}, "development", 100},
		{"ENVIRONMENT", Options{Vars: map[string]string{"ENVIRONMENT": "staging"}}, "staging", 500},
		{"ADRULES_ENV wins over ENVIRONMENT", Options{Vars: map[string]string{"ADRULES_ENV": "staging", "ENVIRONMENT": "development"}}, "staging", 500},
		{"Options.Environment wins", Options{Environment: "development", Vars: map[string]string{"ADRULES_ENV": "staging"}}, "development", 100},
		{"case is ignored", Options{Environment: "Staging"}, "staging", 500},
		{"empty overlay", Options{Environment: "production"}, "production", 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Load("test.yaml", []byte(overlays), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if d.Environment != tc.env {
				t.Errorf("Environment = %q, want %q", d.Environment, tc.env)
			}
			if got := minImpressions(t, d); got != tc.want {
				t.Errorf("min_impressions = %v, want %v", got, tc.want)
			}
			// The overlay merges: ctr_threshold stays.
			if got := d.Params["winner_detection"].(map[string]any)["ctr_threshold"]; got != 0.03 {
				t.Errorf("ctr_threshold = %v, want 0.03", got)
			}
		})
	}
}

func TestOverlayMergesDeepAndReplacesLists(t *testing.T) {
	src := base + `windows: [1h, 24h]
guards:
  rate_limit: {per: ad, max_per_hour: 5}
environments:
  dev:
    windows: [6h]
    guards: {rate_limit: {max_per_hour: 50}}
`
	d, err := Load("test.yaml", []byte(src), Options{Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Duration{Duration(6 * time.Hour)}; !slices.Equal(d.Windows, want) {
		t.Errorf("windows = %v, want %v", d.Windows, want)
	}
	if rl := d.Guards.RateLimit; rl.Per != "ad" || rl.MaxPerHour != 50 {
		t.Errorf("rate_limit = %+v, want per ad, 50 an hour", rl)
	}
}

// An ENVIRONMENT the deployment sets for other reasons does not break a
// file that has no overlays; ADRULES_ENV is ours, so it must match.
func TestEnvironmentWithoutOverlays(t *testing.T) {
	if _, err := Load("test.yaml", []byte(base), Options{Vars: map[string]string{"ENVIRONMENT": "production"}}); err != nil {
		t.Errorf("ENVIRONMENT without overlays: %v", err)
	}
	if _, err := Load("test.yaml", []byte(base), Options{Vars: map[string]string{"ADRULES_ENV": "production"}}); err == nil {
		t.Errorf("ADRULES_ENV without overlays: no error")
	}
}

// newShape is a new-shaped file with every key the predecessor's variables
// can set.
const newShape = `name: test
params:
  winner_detection: {ctr_threshold: 0.03, roas_threshold: 3.0, min_impressions: 1000}
  self_learning_cycle: {interval_seconds: 3600}
feature_flags: {rag_auto_indexing: true}
rules:
  - id: scale
    when: w24h.roas > 4
    action: {type: budget_change, change_pct: 20}
`

// oldShape is the same in the predecessor's shape.
const oldShape = `winner_detection: {ctr_threshold: 0.03, roas_threshold: 3.0, min_impressions: 1000}
self_learning_cycle: {interval_seconds: 3600}
feature_flags: {rag_auto_indexing: true}
safe_executor:
  poll_interval_ms: 5000
rules:
  - id: scale
    when: w24h.roas > 4
    action: {type: budget_change, change_pct: 20}
`

// TestPredecessorVariables sets each of the predecessor's variables, on a
// file of each shape, and checks it changes the right field.
func TestPredecessorVariables(t *testing.T) {
	param := func(section, key string) func(*Document) any {
		return func(d *Document) any { return d.Params[section].(map[string]any)[key] }
	}
	tests := []struct {
		name, value string
		get         func(*Document) any
		want        any
	}{
		{"WINNER_CTR_THRESHOLD", "0.05", param("winner_detection", "ctr_threshold"), 0.05},
		// The file's 3.0 is a decimal number, so 4 is read as 4.0.
		{"WINNER_ROAS_THRESHOLD", "4", param("winner_detection", "roas_threshold"), 4.0},
		{"WINNER_MIN_IMPRESSIONS", "500", param("winner_detection", "min_impressions"), 500},
		{"LEARNING_CYCLE_INTERVAL_SECONDS", "60", param("self_learning_cycle", "interval_seconds"), 60},
		{"SAFE_EXECUTOR_POLL_INTERVAL_MS", "1000", func(d *Document) any { return d.Guards.PollInterval }, Duration(time.Second)},
		{"MAX_ACTIONS_PER_HOUR", "7", func(d *Document) any { return d.Guards.RateLimit.MaxPerHour }, 7},
		{"MAX_ACTIONS_PER_DAY", "70", func(d *Document) any { return d.Guards.RateLimit.MaxPerDay }, 70},
		{"MAX_BUDGET_CHANGE_PCT", "12.5", func(d *Document) any { return d.Guards.Velocity.MaxChangePct }, 12.5},
		{"VELOCITY_WINDOW_HOURS", "12", func(d *Document) any { return d.Guards.Velocity.Window }, Duration(12 * time.Hour)},
		{"JITTER_MIN_MS", "500", func(d *Document) any { return d.Guards.Jitter.Min }, Duration(500 * time.Millisecond)},
		{"JITTER_MAX_MS", "60000", func(d *Document) any { return d.Guards.Jitter.Max }, Duration(time.Minute)},
		{"FUZZY_BUDGET_VARIANCE_PCT", "5", func(d *Document) any { return d.Guards.Fuzzy.VariancePct }, 5.0},
		{"RAG_AUTO_INDEXING_ENABLED", "false", func(d *Document) any { return d.FeatureFlags["rag_auto_indexing"] }, false},
	}
	for _, shape := range []struct{ name, src string }{{"new shape", newShape}, {"predecessor shape", oldShape}} {
		for _, tc := range tests {
			t.Run(shape.name+"/"+tc.name, func(t *testing.T) {
				before, err := Load("test.yaml", []byte(shape.src), Options{})
				if err != nil {
					t.Fatal(err)
				}
				d, err := Load("test.yaml", []byte(shape.src), Options{Vars: map[string]string{tc.name: tc.value, "UNRELATED": "x"}})
				if err != nil {
					t.Fatal(err)
				}
				if got := tc.get(d); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s=%s: got %v (%T), want %v (%T)", tc.name, tc.value, got, got, tc.want, tc.want)
				}
				if before.SHA256() == d.SHA256() {
					t.Errorf("%s did not change the hash", tc.name)
				}
			})
		}
	}
	if len(tests) != len(legacyVars) {
		t.Errorf("the table tests %d variables; there are %d", len(tests), len(legacyVars))
	}
}

func TestGenericVariables(t *testing.T) {
	tests := []struct {
		name, value string
		get         func(*Document) any
		want        any
	}{
		{"ADRULES__PARAMS__WINNER_DETECTION__CTR_THRESHOLD", "0.05", func(d *Document) any { return d.Params["winner_detection"].(map[string]any)["ctr_threshold"] }, 0.05},
		// A section of the predecessor's may be named with or without params.
		{"ADRULES__WINNER_DETECTION__MIN_IMPRESSIONS", "10", func(d *Document) any { return d.Params["winner_detection"].(map[string]any)["min_impressions"] }, 10},
		{"ADRULES__NAME", "other", func(d *Document) any { return d.Name }, "other"},
		{"ADRULES__GUARDS__RATE_LIMIT__PER", "ad", func(d *Document) any { return d.Guards.RateLimit.Per }, "ad"},
		{"ADRULES__GUARDS__ENABLED", "false", func(d *Document) any { return *d.Guards.Enabled }, false},
		{"ADRULES__GUARDS__BUDGET_VELOCITY__WINDOW", "12h", func(d *Document) any { return d.Guards.Velocity.Window }, Duration(12 * time.Hour)},
		{"ADRULES__FEATURE_FLAGS__RAG_AUTO_INDEXING", "false", func(d *Document) any { return d.FeatureFlags["rag_auto_indexing"] }, false},
		{"ADRULES__RULES__0__COOLDOWN", "1h", func(d *Document) any { return d.Rules[0].Cooldown }, Duration(time.Hour)},
		{"ADRULES__RULES__SCALE__ACTION__CHANGE_PCT", "10", func(d *Document) any { return d.Rules[0].Action.ChangePct }, 10.0},
		{"ADRULES__WINDOWS__1", "12h", func(d *Document) any { return d.Windows[1] }, Duration(12 * time.Hour)},
	}
	src := newShape + "windows: [1h, 6h]\n"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Load("test.yaml", []byte(src), Options{Vars: map[string]string{tc.name: tc.value}})
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(d); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v (%T), want %v (%T)", got, got, tc.want, tc.want)
			}
		})
	}
}

// Variables apply after the overlay, and empty ones are ignored.
func TestVariablesAfterOverlay(t *testing.T) {
	vars := map[string]string{
		"ADRULES_ENV":                              "development",
		"WINNER_MIN_IMPRESSIONS":                   "42",
		"ADRULES__GUARDS__RATE_LIMIT__MAX_PER_DAY": "",
	}
	d, err := Load("test.yaml", []byte(overlays), Options{Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	if got := minImpressions(t, d); got != 42 {
		t.Errorf("min_impressions = %v, want 42", got)
	}
	if got := d.Guards.RateLimit.MaxPerDay; got != DefaultMaxPerDay {
		t.Errorf("max_per_day = %v, want the default", got)
	}
}

// A string param stays a string when a variable sets it to digits.
func TestVariableKeepsStringType(t *testing.T) {
	src := base + "params: {campaign: {code: abc}}\n"
	d, err := Load("test.yaml", []byte(src), Options{Vars: map[string]string{"ADRULES__PARAMS__CAMPAIGN__CODE": "007"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Params["campaign"].(map[string]any)["code"]; got != "007" {
		t.Errorf("code = %#v, want \"007\"", got)
	}
}

func TestParamOverrides(t *testing.T) {
	vars := map[string]string{
		"ADRULES_ENV":          "production",
		"ENVIRONMENT":          "production",
		"ADRULES_ADMIN_TOKEN":  "secret",
		"ADRULES_BROKERS":      "localhost:9092",
		"ADRULES__":            "x",
		"ADRULES__PARAMS__X":   "1",
		"MAX_ACTIONS_PER_HOUR": "10",
		"JITTER_MIN_MS":        "",
		"WINNER_CTR_THRESHOLD": "0.05",
		"HOME":                 "/root",
	}
	want := []string{"ADRULES__PARAMS__X", "MAX_ACTIONS_PER_HOUR", "WINNER_CTR_THRESHOLD"}
	if got := ParamOverrides(vars); !slices.Equal(got, want) {
		t.Errorf("ParamOverrides = %v, want %v", got, want)
	}
	if got := ParamOverrides(nil); got != nil {
		t.Errorf("ParamOverrides(nil) = %v", got)
	}
}

// TestOverlayShapes checks an overlay in either shape applies to a file in
// either shape, merging with what the file has.
func TestOverlayShapes(t *testing.T) {
	const newFile = `params:
  winner_detection: {ctr_threshold: 0.03, min_impressions: 1000}
rules: [{id: r, when: ad.ctr > 0.1, emit: {type: x}}]
guards:
  rate_limit: {per: ad, max_per_hour: 10}
  jitter: {min: 2s, max: 4s}
`
	const oldFile = `winner_detection: {ctr_threshold: 0.03, min_impressions: 1000}
rules: [{id: r, when: ad.ctr > 0.1, emit: {type: x}}]
safe_executor:
  rate_limiting: {max_actions_per_hour: 10, max_actions_per_day: 50}
  jitter: {min_ms: 2000, max_ms: 4000}
`
	type check struct {
		get  func(*Document) any
		want any
	}
	minImp := func(d *Document) any { return d.Params["winner_detection"].(map[string]any)["min_impressions"] }
	perHour := func(d *Document) any { return d.Guards.RateLimit.MaxPerHour }
	jitterMin := func(d *Document) any { return d.Guards.Jitter.Min }
	jitterMax := func(d *Document) any { return d.Guards.Jitter.Max }
	tests := []struct {
		name, file, overlay string
		checks              []check
	}{
		{"safe_executor over guards", newFile, "safe_executor: {rate_limiting: {max_actions_per_hour: 5}, jitter: {min_ms: 500}}",
			[]check{{perHour, 5}, {jitterMin, Duration(500 * time.Millisecond)}, {jitterMax, Duration(4 * time.Second)},
				{func(d *Document) any { return d.Guards.RateLimit.Per }, "ad"}}},
		{"guards over safe_executor", oldFile, "guards: {rate_limit: {max_per_hour: 7}}",
			[]check{{perHour, 7}, {func(d *Document) any { return d.Guards.RateLimit.MaxPerDay }, 50}, {jitterMin, Duration(2 * time.Second)}}},
		{"safe_executor over safe_executor", oldFile, "safe_executor: {jitter: {max_ms: 9000}}",
			[]check{{jitterMax, Duration(9 * time.Second)}, {perHour, 10}}},
		{"params over the predecessor's section", oldFile, "params: {winner_detection: {min_impressions: 5}}",
			[]check{{minImp, 5}}},
		{"the predecessor's section over params", newFile, "winner_detection: {min_impressions: 5}",
			[]check{{minImp, 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.file + "environments:\n  dev: {" + tc.overlay + "}\n"
			d, err := Load("test.yaml", []byte(src), Options{Environment: "dev"})
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range tc.checks {
				if got := c.get(d); !reflect.DeepEqual(got, c.want) {
					t.Errorf("check %d: got %v (%T), want %v (%T)", i, got, got, c.want, c.want)
				}
			}
			// Not selected, the overlay is checked and changes nothing.
			plain, err := Load("test.yaml", []byte(tc.file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			other, err := Load("test.yaml", []byte(src), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if plain.SHA256() != other.SHA256() {
				t.Errorf("an overlay that is not selected changed the document")
			}
		})
	}
}

// TestOverlayParamTypes checks a value an overlay sets under params takes
// the type of the file's.
func TestOverlayParamTypes(t *testing.T) {
	const file = `params:
  p: {whole: 10, decimal: 0.5, text: abc, flag: true, open: ~, list: [1, 2]}
rules: [{id: r, when: ad.ctr > 0.1, emit: {type: x}}]
`
	tests := []struct {
		overlay string
		key     string
		want    any
	}{
		{"whole: 20", "whole", 20},
		{"decimal: 1", "decimal", 1.0},
		{"decimal: 0.25", "decimal", 0.25},
		{"text: 007", "text", "007"},
		{"text: true", "text", "true"},
		{"flag: false", "flag", false},
		{"open: {any: thing}", "open", map[string]any{"any": "thing"}},
		{"list: [3]", "list", []any{3}},
	}
	for _, tc := range tests {
		t.Run(tc.overlay, func(t *testing.T) {
			src := file + "environments:\n  dev: {params: {p: {" + tc.overlay + "}}}\n"
			d, err := Load("test.yaml", []byte(src), Options{Environment: "dev"})
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Params["p"].(map[string]any)[tc.key]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %v (%T), want %v (%T)", tc.key, got, got, tc.want, tc.want)
			}
		})
	}
}

// TestPredecessorVariablesWithoutTheirSection checks the predecessor's
// parameter variables, left over in a deployment's environment, do not
// stop a file without their section from loading, and change nothing.
func TestPredecessorVariablesWithoutTheirSection(t *testing.T) {
	const onlyWinner = `params:
  winner_detection: {ctr_threshold: 0.03, roas_threshold: 3.0, min_impressions: 1000}
rules: [{id: r, when: ad.ctr > 0.1, emit: {type: x}}]
`
	const onlyCycle = `self_learning_cycle: {interval_seconds: 3600}
rules: [{id: r, when: ad.ctr > 0.1, emit: {type: x}}]
`
	const nullParams = "params:\nrules: [{id: r, when: ad.ctr > 0.1, emit: {type: x}}]\n"
	tests := []struct {
		file, name, value string
	}{
		{onlyWinner, "LEARNING_CYCLE_INTERVAL_SECONDS", "5"},
		{onlyCycle, "WINNER_CTR_THRESHOLD", "0.05"},
		{onlyCycle, "WINNER_ROAS_THRESHOLD", "4"},
		{onlyCycle, "WINNER_MIN_IMPRESSIONS", "10"},
		{base, "WINNER_MIN_IMPRESSIONS", "10"},
		{nullParams, "LEARNING_CYCLE_INTERVAL_SECONDS", "5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plain, err := Load("test.yaml", []byte(tc.file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := Load("test.yaml", []byte(tc.file), Options{Vars: map[string]string{tc.name: tc.value}})
			if err != nil {
				t.Fatalf("%s=%s: %v", tc.name, tc.value, err)
			}
			if d.SHA256() != plain.SHA256() {
				t.Errorf("%s changed a file without its section", tc.name)
			}
		})
	}
}

// TestVariableNumberTypes checks a variable for a whole-number parameter
// must be a whole number, and one for a decimal parameter becomes decimal.
func TestVariableNumberTypes(t *testing.T) {
	tests := []struct {
		name, value string
		key         string
		want        any // or the error
		err         string
	}{
		{"WINNER_MIN_IMPRESSIONS", "500", "min_impressions", 500, ""},
		{"WINNER_MIN_IMPRESSIONS", "1.5", "", nil, `test.yaml: $WINNER_MIN_IMPRESSIONS: params.winner_detection.min_impressions: expected a whole number like the file's 1000, got "1.5"`},
		{"WINNER_MIN_IMPRESSIONS", "1e3", "", nil, `expected a whole number like the file's 1000, got "1e3"`},
		{"WINNER_CTR_THRESHOLD", "1", "ctr_threshold", 1.0, ""},
		{"WINNER_CTR_THRESHOLD", "0.5", "ctr_threshold", 0.5, ""},
		{"WINNER_ROAS_THRESHOLD", "4", "roas_threshold", 4.0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			d, err := Load("test.yaml", []byte(newShape), Options{Vars: map[string]string{tc.name: tc.value}})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Params["winner_detection"].(map[string]any)[tc.key]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %v (%T), want %v (%T)", tc.key, got, got, tc.want, tc.want)
			}
		})
	}
}

// TestVariableErrorsNameTheFile checks a variable's problem says which
// file it was applied to, as adrules check a.yaml b.yaml prints it.
func TestVariableErrorsNameTheFile(t *testing.T) {
	vars := map[string]string{"LEARNING_CYCLE_INTERVAL_SECONDS": "soon"}
	for _, file := range []string{"a.yaml", "b.yaml"} {
		_, err := Load(file, []byte(newShape), Options{Vars: vars})
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 {
			t.Fatalf("%s: got %v, want one error", file, err)
		}
		want := file + `: $LEARNING_CYCLE_INTERVAL_SECONDS: params.self_learning_cycle.interval_seconds: expected a whole number like the file's 3600, got "soon"`
		if got := es[0].Error(); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		if p := es[0].Pos; p.File != file || p.Var != "LEARNING_CYCLE_INTERVAL_SECONDS" || p.Line != 0 {
			t.Errorf("Pos = %#v", p)
		}
	}
}

func TestPosString(t *testing.T) {
	tests := []struct {
		pos  Pos
		want string
	}{
		{Pos{File: "a.yaml", Line: 3, Col: 5}, "a.yaml:3:5"},
		{Pos{File: "a.yaml", Line: 3}, "a.yaml:3"},
		{Pos{File: "a.yaml"}, "a.yaml"},
		{Pos{File: "a.yaml", Var: "X"}, "a.yaml: $X"},
		{Pos{File: "a.yaml", Var: "X", Line: 1, Col: 4}, "a.yaml: $X:1:4"},
		{Pos{Var: "X"}, "$X"},
		{Pos{}, ""},
	}
	for _, tc := range tests {
		if got := tc.pos.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.pos, got, tc.want)
		}
	}
}
