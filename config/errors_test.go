package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// readFile reads a file of testdata.
func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// overlayBase is base with params and feature_flags for overlays to set.
const overlayBase = base + `params:
  winner_detection: {ctr_threshold: 0.03, min_impressions: 1000}
`

// A minimal valid rule set, for cases that change one thing.
const base = `name: test
feature_flags: {budget_scaling: true}
rules:
  - id: scale
    when: w24h.roas > 4
    action: {type: budget_change, change_pct: 20}
`

// TestConfigMistakes checks each mistake a user can make in a file (or in
// a variable) is reported with a message that says what is wrong, at the
// right line and column, and with the rule id. In the style of
// nats-server's config_check_test.go.
func TestConfigMistakes(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		env    string // the environment to select
		vars   map[string]string
		msg    string // a substring of the message
		file   string // default "test.yaml"
		vr     string // the variable the error is at
		line   int
		col    int
		ruleID string
	}{
		{
			name: "unknown key at top level",
			src:  base + "rulez: []\n",
			msg:  `unknown key "rulez" at the top level (did you mean rules?); known keys: name,`,
			line: 7, col: 1,
		},
		{
			name: "unknown key in rule",
			src: `rules:
  - id: scale
    when: w24h.roas > 4
    cooldwn: 6h
    action: {type: pause}
`,
			msg:  `unknown key "cooldwn" in rule (did you mean cooldown?); known keys: id, description,`,
			line: 4, col: 5, ruleID: "scale",
		},
		{
			name: "unknown key in guards",
			src:  base + "guards:\n  rate_limit: {per: ad}\n  jiter: {min: 1s}\n",
			msg:  `unknown key "jiter" in guards (did you mean jitter?); known keys: enabled, poll_interval, rate_limit,`,
			line: 9, col: 3,
		},
		{
			name: "unknown key in guards.rate_limit",
			src:  base + "guards:\n  rate_limit:\n    max_per_hr: 5\n",
			msg:  `unknown key "max_per_hr" in guards.rate_limit`,
			line: 9, col: 5,
		},
		{
			name: "unknown key in emit",
			src:  "rules:\n  - id: a\n    when: ad.ctr > 0.1\n    emit: {type: x, value: [ctr]}\n",
			msg:  `unknown key "value" in emit (did you mean values?)`,
			line: 4, col: 21, ruleID: "a",
		},
		{
			name: "wrong type for a number",
			src:  base + "guards:\n  budget_velocity: {max_change_pct: abc}\n",
			msg:  `expected a number, got "abc"`,
			line: 8, col: 37,
		},
		{
			name: "wrong type for a whole number",
			src:  base + "guards:\n  rate_limit:\n    max_per_hour: 1.5\n",
			msg:  `expected a whole number, got "1.5"`,
			line: 9, col: 19,
		},
		{
			name: "wrong type for a list",
			src:  base + "windows: 1h\n",
			msg:  `expected a list, got "1h"`,
			line: 7, col: 10,
		},
		{
			name: "wrong type for a bool",
			src:  base + "guards: {enabled: maybe}\n",
			msg:  `expected true or false, got "maybe"`,
			line: 7, col: 19,
		},
		{
			name: "bad duration",
			src: `rules:
  - id: scale
    when: w24h.roas > 4
    cooldown: 6x
    action: {type: pause}
`,
			msg:  `"6x" is not a duration; write it like 30m, 6h or 7d`,
			line: 4, col: 15, ruleID: "scale",
		},
		{
			name: "duplicate rule id",
			src: base + `  - id: scale
    when: w6h.roas > 5
    action: {type: pause}
`,
			msg:  `rule id "scale" is used twice; the first is at line 4`,
			line: 7, col: 9, ruleID: "scale",
		},
		{
			name: "bad rule id",
			src:  "rules:\n  - id: Scale Winner\n    when: true\n    action: {type: pause}\n",
			msg:  `id "Scale Winner" may hold only lowercase letters, digits, - and _`,
			line: 2, col: 9, ruleID: "Scale Winner",
		},
		{
			name: "missing rule id",
			src:  "rules:\n  - when: true\n    action: {type: pause}\n",
			msg:  "rule 1 has no id",
			line: 2, col: 5,
		},
		{
			name: "missing when",
			src:  base + "  - id: pause-losers\n    action: {type: pause}\n",
			msg:  "when is missing",
			line: 7, col: 5, ruleID: "pause-losers",
		},
		{
			name: "once always",
			src:  base + "  - id: w\n    when: ad.ctr > 0.1\n    once: always\n    emit: {type: w}\n",
			msg:  `once must be per_ad or left out, not "always"`,
			line: 9, col: 11, ruleID: "w",
		},
		{
			name: "rule does nothing",
			src:  base + "  - id: idle\n    when: ad.ctr > 0.1\n",
			msg:  "the rule does nothing",
			line: 7, col: 5, ruleID: "idle",
		},
		{
			name: "emit without type",
			src:  base + "  - id: w\n    when: ad.ctr > 0.1\n    emit: {values: [ctr]}\n",
			msg:  "emit needs a type",
			line: 9, col: 11, ruleID: "w",
		},
		{
			name: "budget change without change_pct",
			src:  "rules:\n  - id: a\n    when: true\n    action:\n      type: budget_change\n",
			msg:  "a budget_change needs change_pct",
			line: 5, col: 7, ruleID: "a",
		},
		{
			name: "budget change to nothing",
			src:  "rules:\n  - id: a\n    when: true\n    action: {type: budget_change, change_pct: -100}\n",
			msg:  "change_pct -100 would take the budget to zero or below",
			line: 4, col: 47, ruleID: "a",
		},
		{
			name: "enabled_by unknown flag",
			src:  base + "    enabled_by: budget_scailng\n",
			msg:  `enabled_by names feature flag "budget_scailng", which feature_flags does not define (it has budget_scaling)`,
			line: 7, col: 17, ruleID: "scale",
		},
		{
			name: "params key rules cannot read",
			src:  base + "params:\n  winner:\n    min-impressions: 100\n",
			msg:  `key "min-impressions" cannot be read by rules as params.winner.min-impressions`,
			line: 9, col: 5,
		},
		{
			name: "feature flag name",
			src:  "feature_flags: {2fast: true}\n",
			msg:  `feature flag "2fast" must be a name`,
			line: 1, col: 17,
		},
		{
			name: "jitter min above max",
			src:  base + "guards:\n  jitter: {min: 20s, max: 10s}\n",
			msg:  "jitter.min 20s is more than jitter.max 10s",
			line: 8, col: 17,
		},
		{
			name: "explicit zero rate limit",
			src:  base + "guards:\n  rate_limit: {max_per_hour: 0}\n",
			msg:  "rate_limit.max_per_hour must be at least 1, got 0",
			line: 8, col: 30,
		},
		{
			name: "rate limit scope",
			src:  base + "guards:\n  rate_limit: {per: campaign}\n",
			msg:  `rate_limit.per must be account or ad, not "campaign"`,
			line: 8, col: 21,
		},
		{
			name: "fuzz too wide",
			src:  base + "guards:\n  fuzzy_budget: {variance_pct: 50}\n",
			msg:  "fuzzy_budget.variance_pct must be at least 0 and below 50, got 50",
			line: 8, col: 32,
		},
		{
			name: "window not whole minutes",
			src:  base + "windows: [1h, 90s]\n",
			msg:  "window 90s must be a whole number of minutes",
			line: 7, col: 15,
		},
		{
			name: "window twice",
			src:  base + "windows: [1h, 60m]\n",
			msg:  "window 1h is listed twice",
			line: 7, col: 15,
		},
		{
			name: "dedupe shorter than windows",
			src:  base + "dedupe: {horizon: 1d}\n",
			msg:  "dedupe.horizon 1d is shorter than the longest window 7d",
			line: 7, col: 19,
		},
		{
			name: "key twice",
			src:  base + "name: again\n",
			msg:  `key "name" appears twice; the first is at line 1`,
			line: 7, col: 1,
		},
		{
			name: "syntax error",
			src:  "name: x\nrules: [\n",
			msg:  "YAML syntax: did not find expected node content",
			line: 2,
		},
		{
			name: "two documents",
			src:  base + "---\nname: other\n",
			msg:  "more than one YAML document",
			line: 7, col: 1,
		},
		{
			name: "empty file",
			src:  "# nothing yet\n",
			msg:  "the file is empty",
			line: 1, col: 1,
		},
		{
			name: "not a mapping",
			src:  "- id: a\n",
			msg:  "expected keys and values",
			line: 1, col: 1,
		},
		{
			name: "alias cycle",
			src:  "params: &p {x: [*p]}\n",
			msg:  "alias *p refers to itself",
			line: 1, col: 17,
		},
		{
			name: "rule id too long",
			src:  "rules:\n  - id: " + strings.Repeat("r", 65) + "\n    when: w24h.roas > 4\n    emit: {type: t}\n",
			msg:  "the id is 65 bytes; a rule id is at most 64",
			line: 2, col: 9, ruleID: strings.Repeat("r", 64) + "...",
		},
		{
			name: "a long value is quoted short",
			src:  base + "guards:\n  rate_limit: {per: " + strings.Repeat("a", 1000) + "}\n",
			msg:  `rate_limit.per must be account or ad, not "` + strings.Repeat("a", 64) + `"... (1000 bytes)`,
			line: 8, col: 21,
		},
		{
			name: "unknown environment",
			src:  base + "environments:\n  staging: {}\n  production: {}\n",
			env:  "prod",
			msg:  `environment "prod" is not defined; the file defines staging, production`,
			line: 7, col: 1,
		},
		{
			name: "unknown environment from ADRULES_ENV",
			src:  base + "environments:\n  staging: {}\n",
			vars: map[string]string{"ADRULES_ENV": "qa"},
			msg:  `environment "qa" is not defined; the file defines staging`,
			vr:   "ADRULES_ENV",
		},
		{
			name: "environment overlay with an unknown key",
			src:  base + "environments:\n  dev:\n    guards: {jitter: {mn: 1s}}\n",
			env:  "dev",
			msg:  `unknown key "mn" in guards.jitter (did you mean min?)`,
			line: 9, col: 23,
		},
		{
			name: "variable typo under params",
			src:  base + "params:\n  winner_detection: {ctr_threshold: 0.03}\n",
			vars: map[string]string{"ADRULES__PARAMS__WINNER_DETECTION__CTR_TRESHOLD": "0.05"},
			msg:  "sets params.winner_detection.ctr_treshold, which the file does not define; params.winner_detection has ctr_threshold",
			vr:   "ADRULES__PARAMS__WINNER_DETECTION__CTR_TRESHOLD",
		},
		{
			name: "variable typo outside params",
			src:  base,
			vars: map[string]string{"ADRULES__GUARDS__RATE_LIMIT__MAX_PER_HR": "5"},
			msg:  `unknown key "max_per_hr" in guards.rate_limit`,
			vr:   "ADRULES__GUARDS__RATE_LIMIT__MAX_PER_HR",
		},
		{
			name: "variable of the wrong type",
			src:  base,
			vars: map[string]string{"ADRULES__GUARDS__RATE_LIMIT__MAX_PER_HOUR": "many"},
			msg:  `expected a whole number, got "many"`,
			vr:   "ADRULES__GUARDS__RATE_LIMIT__MAX_PER_HOUR",
		},
		{
			name: "variable number for a number param",
			src:  base + "params:\n  winner_detection: {ctr_threshold: 0.03}\n",
			vars: map[string]string{"WINNER_CTR_THRESHOLD": "high"},
			msg:  `params.winner_detection.ctr_threshold: expected a number like the file's 0.03, got "high"`,
			vr:   "WINNER_CTR_THRESHOLD",
		},
		{
			name: "variable bool for a flag",
			src:  "feature_flags: {rag_auto_indexing: true}\n",
			vars: map[string]string{"RAG_AUTO_INDEXING_ENABLED": "maybe"},
			msg:  `feature_flags.rag_auto_indexing: expected true or false, got "maybe"`,
			vr:   "RAG_AUTO_INDEXING_ENABLED",
		},
		{
			name: "variable for a section",
			src:  base,
			vars: map[string]string{"ADRULES__FEATURE_FLAGS": "true"},
			msg:  "feature_flags: is keys and values (a mapping); a variable can set only a single value",
			vr:   "ADRULES__FEATURE_FLAGS",
		},
		{
			name: "predecessor variable without its param",
			src:  base + "params:\n  winner_detection: {ctr_threshold: 0.03}\n",
			vars: map[string]string{"WINNER_MIN_IMPRESSIONS": "500"},
			msg:  "sets params.winner_detection.min_impressions, which the file does not define; params.winner_detection has ctr_threshold",
			vr:   "WINNER_MIN_IMPRESSIONS",
		},
		{
			name: "predecessor variable not a number",
			src:  base,
			vars: map[string]string{"JITTER_MIN_MS": "soon"},
			msg:  `guards.jitter.min: expected a non-negative number of milliseconds, got "soon"`,
			vr:   "JITTER_MIN_MS",
		},
		{
			name: "two variables for one key",
			src:  base,
			vars: map[string]string{"MAX_ACTIONS_PER_HOUR": "10", "ADRULES__GUARDS__RATE_LIMIT__MAX_PER_HOUR": "12"},
			msg:  "both $ADRULES__GUARDS__RATE_LIMIT__MAX_PER_HOUR and $MAX_ACTIONS_PER_HOUR set guards.rate_limit.max_per_hour",
			vr:   "MAX_ACTIONS_PER_HOUR",
		},
		{
			name: "guards and safe_executor",
			src:  base + "guards: {enabled: true}\nsafe_executor: {enabled: true}\n",
			msg:  "the file has both guards and safe_executor (line 7)",
			line: 8, col: 1,
		},
		{
			name: "unknown key in safe_executor",
			src:  "safe_executor:\n  rate_limiting:\n    max_actions_per_hr: 5\n",
			msg:  `unknown key "max_actions_per_hr" in safe_executor.rate_limiting; known keys: max_actions_per_hour, max_actions_per_day`,
			line: 3, col: 5,
		},
		{
			name: "safe_executor hours not a number",
			src:  "safe_executor:\n  budget_velocity: {velocity_window_hours: six}\n",
			msg:  `expected a non-negative number of hours, got "six"`,
			line: 2, col: 44,
		},
		{
			name: "predecessor section given twice",
			src:  "params:\n  winner_detection: {ctr_threshold: 0.03}\nwinner_detection: {ctr_threshold: 0.04}\n",
			msg:  "winner_detection is given both at the top level and under params (line 2)",
			line: 3, col: 1,
		},
		// Overlays follow the rule of variables under params and
		// feature_flags, and every overlay is checked, selected or not.
		{
			name: "overlay typo under params, selected",
			src:  overlayBase + "environments:\n  development:\n    params: {winner_detection: {min_impresions: 100}}\n",
			env:  "development",
			msg:  "environment development sets params.winner_detection.min_impresions, which the file does not define; did you mean min_impressions?",
			line: 11, col: 33,
		},
		{
			name: "overlay typo under params, not selected",
			src:  overlayBase + "environments:\n  development:\n    params:\n      winner_detection:\n        min_impresions: 100\n",
			msg:  "environment development sets params.winner_detection.min_impresions, which the file does not define; did you mean min_impressions?",
			line: 13, col: 9,
		},
		{
			name: "overlay typo under params, another selected",
			src:  overlayBase + "environments:\n  staging: {}\n  development:\n    params: {winner_detection: {min_impresions: 100}}\n",
			env:  "staging",
			msg:  "environment development sets params.winner_detection.min_impresions",
			line: 12, col: 33,
		},
		{
			name: "overlay new section under params",
			src:  overlayBase + "environments:\n  development:\n    params: {scaling: {min_roas: 4}}\n",
			msg:  "environment development sets params.scaling, which the file does not define; params has winner_detection",
			line: 11, col: 14,
		},
		{
			name: "overlay params in a file without params",
			src:  base + "environments:\n  development:\n    params: {x: 1}\n",
			msg:  "environment development sets params.x, which the file does not define",
			line: 9, col: 14,
		},
		{
			name: "overlay typo in feature_flags",
			src:  overlayBase + "environments:\n  development:\n    feature_flags: {budget_scailng: false}\n",
			msg:  "environment development sets feature_flags.budget_scailng, which the file does not define; did you mean budget_scaling?",
			line: 11, col: 21,
		},
		{
			name: "overlay typo in a predecessor section over a new-shape file",
			src:  overlayBase + "environments:\n  development:\n    winner_detection: {min_impresions: 100}\n",
			msg:  "environment development sets params.winner_detection.min_impresions, which the file does not define; did you mean min_impressions?",
			line: 11, col: 24,
		},
		{
			name: "overlay typo under params over a predecessor-shape file",
			src:  "winner_detection: {min_impressions: 1000}\nenvironments:\n  development:\n    params: {winner_detection: {min_impresions: 100}}\n",
			msg:  "environment development sets params.winner_detection.min_impresions",
			line: 4, col: 33,
		},
		{
			name: "overlay decimal for a whole-number param",
			src:  overlayBase + "environments:\n  development:\n    params: {winner_detection: {min_impressions: 1.5}}\n",
			env:  "development",
			msg:  `environment development sets params.winner_detection.min_impressions: expected a whole number like the file's 1000, got "1.5"`,
			line: 11, col: 50,
		},
		{
			name: "overlay text for a number param",
			src:  overlayBase + "environments:\n  development:\n    params: {winner_detection: {ctr_threshold: high}}\n",
			msg:  `environment development sets params.winner_detection.ctr_threshold: expected a number like the file's 0.03, got "high"`,
			line: 11, col: 48,
		},
		{
			name: "overlay value for a params section",
			src:  overlayBase + "environments:\n  development:\n    params: {winner_detection: 5}\n",
			msg:  `environment development sets params.winner_detection: expected keys and values (a mapping), as the file has, got "5"`,
			line: 11, col: 32,
		},
		{
			name: "unknown key in an overlay that is not selected",
			src:  base + "environments:\n  development:\n    guards: {rate_limit: {max_per_hr: 5}}\n",
			msg:  `unknown key "max_per_hr" in guards.rate_limit (did you mean max_per_hour?)`,
			line: 9, col: 27,
		},
		{
			name: "unknown key in an overlay while another is selected",
			src:  base + "environments:\n  staging: {}\n  development:\n    guards: {rate_limit: {max_per_hr: 5}}\n",
			env:  "staging",
			msg:  `unknown key "max_per_hr" in guards.rate_limit (did you mean max_per_hour?)`,
			line: 10, col: 27,
		},
		{
			name: "wrong type in an overlay that is not selected",
			src:  base + "environments:\n  development:\n    guards: {rate_limit: {max_per_hour: many}}\n",
			msg:  `expected a whole number, got "many"`,
			line: 9, col: 41,
		},
		{
			name: "unknown top-level key in an overlay that is not selected",
			src:  base + "environments:\n  development:\n    rulez: []\n",
			msg:  `unknown key "rulez" at the top level (did you mean rules?)`,
			line: 9, col: 5,
		},
		{
			name: "unknown safe_executor key in an overlay that is not selected",
			src:  base + "environments:\n  development:\n    safe_executor: {jitter: {min_msec: 5}}\n",
			msg:  `unknown key "min_msec" in safe_executor.jitter`,
			line: 9, col: 30,
		},
		{
			name: "overlay that is not a mapping, not selected",
			src:  base + "environments:\n  development: fast\n",
			msg:  `environment development must be a mapping in the shape of the file, got "fast"`,
			line: 8, col: 16,
		},
		{
			name: "overlay with environments, not selected",
			src:  base + "environments:\n  development:\n    environments: {}\n",
			msg:  "an environment overlay cannot hold environments",
			line: 9, col: 5,
		},
		// Variables: integers stay integers, durations are not negative,
		// and the generic scheme reaches safe_executor keys.
		{
			name: "variable decimal for a whole-number param",
			src:  overlayBase,
			vars: map[string]string{"WINNER_MIN_IMPRESSIONS": "1.5"},
			msg:  `params.winner_detection.min_impressions: expected a whole number like the file's 1000, got "1.5"`,
			vr:   "WINNER_MIN_IMPRESSIONS",
		},
		{
			name: "variable negative milliseconds",
			src:  base,
			vars: map[string]string{"JITTER_MIN_MS": "-5"},
			msg:  `guards.jitter.min: expected a non-negative number of milliseconds, got "-5"`,
			vr:   "JITTER_MIN_MS",
		},
		{
			name: "variable negative hours",
			src:  base,
			vars: map[string]string{"VELOCITY_WINDOW_HOURS": "-1"},
			msg:  `guards.budget_velocity.window: expected a non-negative number of hours, got "-1"`,
			vr:   "VELOCITY_WINDOW_HOURS",
		},
		{
			name: "variable negative poll interval",
			src:  "safe_executor: {poll_interval_ms: 5000}\n",
			vars: map[string]string{"SAFE_EXECUTOR_POLL_INTERVAL_MS": "-1"},
			msg:  `guards.poll_interval: expected a non-negative number of milliseconds, got "-1"`,
			vr:   "SAFE_EXECUTOR_POLL_INTERVAL_MS",
		},
		{
			name: "variable milliseconds too long",
			src:  base,
			vars: map[string]string{"JITTER_MAX_MS": "1e300"},
			msg:  `guards.jitter.max: 1e300 milliseconds is too long`,
			vr:   "JITTER_MAX_MS",
		},
		{
			name: "generic variable for a safe_executor key",
			src:  base,
			vars: map[string]string{"ADRULES__SAFE_EXECUTOR__JITTER__MIN_MS": "-5"},
			msg:  `guards.jitter.min: expected a non-negative number of milliseconds, got "-5"`,
			vr:   "ADRULES__SAFE_EXECUTOR__JITTER__MIN_MS",
		},
		{
			name: "generic variable for a safe_executor key it does not have",
			src:  base,
			vars: map[string]string{"ADRULES__SAFE_EXECUTOR__JITTER__MIN": "5"},
			msg:  `safe_executor has no key jitter.min; it has enabled, poll_interval_ms,`,
			vr:   "ADRULES__SAFE_EXECUTOR__JITTER__MIN",
		},
		{
			name: "generic variable for a params section the file lacks",
			src:  base,
			vars: map[string]string{"ADRULES__SELF_LEARNING_CYCLE__INTERVAL_SECONDS": "5"},
			msg:  "sets params.self_learning_cycle.interval_seconds, which the file does not define",
			vr:   "ADRULES__SELF_LEARNING_CYCLE__INTERVAL_SECONDS",
		},
		{
			name: "negative milliseconds in safe_executor",
			src:  "safe_executor:\n  jitter: {min_ms: -5}\n",
			msg:  `expected a non-negative number of milliseconds, got "-5"`,
			line: 2, col: 20,
		},
		{
			name: "payload_fields not a list",
			src:  "winner_detection: {ctr_threshold: 0.03}\nrag_indexing: {payload_fields: ctr}\n",
			msg:  "payload_fields must be a list",
			line: 2, col: 32,
		},
		{
			name: "a typo among many keys lists the first 20",
			src:  base + "params: {" + manyKeys(25) + "}\nenvironments:\n  dev: {params: {zzz: 1}}\n",
			msg:  "environment dev sets params.zzz, which the file does not define; params has p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, p16, p17, p18, p19 and 5 more",
			line: 9, col: 18,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("test.yaml", []byte(tc.src), Options{Environment: tc.env, Vars: tc.vars})
			if err == nil {
				t.Fatalf("Load accepted the file; want an error containing %q", tc.msg)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Load returned %T, want Errors: %v", err, err)
			}
			var got *Error
			for _, e := range es {
				if strings.Contains(e.Msg, tc.msg) {
					got = e
					break
				}
			}
			if got == nil {
				t.Fatalf("no error contains %q; got:\n%v", tc.msg, err)
			}
			file := tc.file
			if file == "" {
				file = "test.yaml"
			}
			want := Pos{File: file, Line: tc.line, Col: tc.col, Var: tc.vr}
			if got.Pos != want || got.RuleID != tc.ruleID {
				t.Errorf("error %q at %v in rule %q; want %v in rule %q", got.Msg, got.Pos, got.RuleID, want, tc.ruleID)
			}
		})
	}
}

// TestAllErrorsInFileOrder checks Load reports every problem at once, in
// the order of the file, and that each is a *Error for errors.As.
func TestAllErrorsInFileOrder(t *testing.T) {
	src := `rules:
  - id: b
    when: ad.ctr > 0.1
    once: twice
    emit: {type: x}
  - id: a
    action: {type: pause}
guards:
  jitter: {min: 9s, max: 1s}
`
	_, err := Load("test.yaml", []byte(src), Options{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []string{
		"test.yaml:4:11: rule b: once must be per_ad or left out",
		"test.yaml:6:5: rule a: when is missing",
		"test.yaml:9:17: jitter.min 9s is more than jitter.max 1s",
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(es), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(es[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, es[i].Error(), w)
		}
	}
	var e *Error
	if !errors.As(err, &e) || e != es[0] {
		t.Errorf("errors.As did not find the first *Error")
	}
}

// TestDecodeAllMistakes checks the strict decoder reports every schema
// mistake at once rather than stopping at the first.
func TestDecodeAllMistakes(t *testing.T) {
	src := "nam: x\nguards: {rate_limit: {max_per_hour: x}}\nrules: [{id: a, wen: true, emit: {type: x}}]\n"
	_, err := Load("test.yaml", []byte(src), Options{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
}

// manyKeys is n keys p0, p1, ... of a flow mapping.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "p%d: 1, ", i)
	}
	return b.String()
}
