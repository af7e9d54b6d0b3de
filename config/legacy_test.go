package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPredecessorFile loads the predecessor's own file as it is, in each
// of its environments.
func TestPredecessorFile(t *testing.T) {
	data := readFile(t, "learning_config.yaml")
	for _, env := range []string{"", "development", "staging", "production"} {
		t.Run("env="+env, func(t *testing.T) {
			d, err := Load("learning_config.yaml", data, Options{Vars: map[string]string{"ENVIRONMENT": env}})
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != "default" || d.Environment != env {
				t.Errorf("name %q, environment %q", d.Name, d.Environment)
			}
			wd := d.Params["winner_detection"].(map[string]any)
			minImp := 1000
			if env == "staging" {
				minImp = 500
			}
			want := map[string]any{"ctr_threshold": 0.03, "roas_threshold": 3.0, "require_both": false, "min_impressions": minImp, "min_hours_live": 24}
			if !reflect.DeepEqual(wd, want) {
				t.Errorf("winner_detection = %v, want %v", wd, want)
			}
			interval := 3600
			if env == "development" {
				interval = 60
			}
			if got := d.Params["self_learning_cycle"].(map[string]any)["interval_seconds"]; got != interval {
				t.Errorf("interval_seconds = %v, want %v", got, interval)
			}
			for _, section := range []string{"rag_indexing", "model_evaluation"} {
				if _, ok := d.Params[section].(map[string]any); !ok {
					t.Errorf("params.%s missing", section)
				}
			}

			w := WinnerRule()
			w.Group, w.Enabled = "default", ptr(true)
			r := d.Rules[0]
			if len(d.Rules) != 1 || r.ID != w.ID || r.When != w.When || r.Once != "per_ad" || r.EnabledBy != "rag_auto_indexing" ||
				!reflect.DeepEqual(r.Emit, &Emit{Type: "rag_index_winner", Values: []string{"ctr", "roas", "impressions"}}) {
				t.Errorf("rules = %+v, want the built-in winner rule", d.Rules)
			}
			if r.Pos.Line != 7 {
				t.Errorf("winner rule at %v, want line 7 (winner_detection)", r.Pos)
			}
			if !d.FeatureFlags["rag_auto_indexing"] || len(d.FeatureFlags) != 4 {
				t.Errorf("feature_flags = %v", d.FeatureFlags)
			}
			if c := d.Groups["default"].ContinueOnError; c == nil || !*c {
				t.Errorf("default group continue_on_error = %v, want true", c)
			}

			poll := 5 * time.Second
			if env == "development" {
				poll = time.Second
			}
			g := d.Guards
			wantG := Guards{
				Enabled:      ptr(true),
				PollInterval: Duration(poll),
				RateLimit:    RateLimit{Per: "account", MaxPerHour: 15, MaxPerDay: 100},
				Velocity:     BudgetVelocity{MaxChangePct: 20, Window: Duration(6 * time.Hour)},
				Jitter:       Jitter{Enabled: ptr(true), Min: Duration(3 * time.Second), Max: Duration(18 * time.Second)},
				Fuzzy:        FuzzyBudget{Enabled: ptr(true), VariancePct: 3},
			}
			if !reflect.DeepEqual(g, wantG) {
				t.Errorf("guards = %+v, want %+v", g, wantG)
			}
		})
	}
}

// TestPredecessorFilePositions checks problems in the predecessor's
// sections are reported where the file has them.
func TestPredecessorFilePositions(t *testing.T) {
	data := strings.Replace(string(readFile(t, "learning_config.yaml")), "max_actions_per_hour: 15", "max_actions_per_hour: 0", 1)
	_, err := Load("learning_config.yaml", []byte(data), Options{})
	if err == nil || !strings.Contains(err.Error(), "learning_config.yaml:40:27: rate_limit.max_per_hour must be at least 1") {
		t.Errorf("got %v", err)
	}
}

// TestPredecessorVariablesOnFile sets the predecessor's variable names on
// its own file, in production.
func TestPredecessorVariablesOnFile(t *testing.T) {
	vars := map[string]string{
		"ENVIRONMENT":                     "production",
		"WINNER_CTR_THRESHOLD":            "0.04",
		"WINNER_ROAS_THRESHOLD":           "2.5",
		"WINNER_MIN_IMPRESSIONS":          "2000",
		"LEARNING_CYCLE_INTERVAL_SECONDS": "600",
		"SAFE_EXECUTOR_POLL_INTERVAL_MS":  "250",
		"MAX_ACTIONS_PER_HOUR":            "10",
		"MAX_ACTIONS_PER_DAY":             "50",
		"MAX_BUDGET_CHANGE_PCT":           "15",
		"VELOCITY_WINDOW_HOURS":           "12",
		"JITTER_MIN_MS":                   "1000",
		"JITTER_MAX_MS":                   "5000",
		"FUZZY_BUDGET_VARIANCE_PCT":       "2.5",
		"RAG_AUTO_INDEXING_ENABLED":       "false",
	}
	d, err := Load("learning_config.yaml", readFile(t, "learning_config.yaml"), Options{Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	wd := d.Params["winner_detection"].(map[string]any)
	if wd["ctr_threshold"] != 0.04 || wd["roas_threshold"] != 2.5 || wd["min_impressions"] != 2000 {
		t.Errorf("winner_detection = %v", wd)
	}
	if got := d.Params["self_learning_cycle"].(map[string]any)["interval_seconds"]; got != 600 {
		t.Errorf("interval_seconds = %v", got)
	}
	g := d.Guards
	if g.PollInterval != Duration(250*time.Millisecond) || g.RateLimit.MaxPerHour != 10 || g.RateLimit.MaxPerDay != 50 ||
		g.Velocity.MaxChangePct != 15 || g.Velocity.Window != Duration(12*time.Hour) ||
		g.Jitter.Min != Duration(time.Second) || g.Jitter.Max != Duration(5*time.Second) || g.Fuzzy.VariancePct != 2.5 {
		t.Errorf("guards = %+v", g)
	}
	if d.FeatureFlags["rag_auto_indexing"] {
		t.Errorf("rag_auto_indexing still on")
	}
}

// TestShapesHashAlike checks the predecessor's file and the same content
// in the new shape, with the winner rule spelled out as in DESIGN.md,
// are one rule set: the same hash.
func TestShapesHashAlike(t *testing.T) {
	old, err := Load("learning_config.yaml", readFile(t, "learning_config.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Load("learning_config.new.yaml", readFile(t, "learning_config.new.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if old.SHA256() != cur.SHA256() {
		t.Errorf("hashes differ:\n%s\n%s", old.Canonical(), cur.Canonical())
	}
}

// TestWinnerRuleMatchesDesign checks WinnerRule is the winner rule of the
// DESIGN.md sketch, as YAML reads it.
func TestWinnerRuleMatchesDesign(t *testing.T) {
	d, err := Load("design.yaml", readFile(t, "design.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := WinnerRule()
	r := d.Rules[0]
	if r.ID != w.ID || r.When != w.When || r.EnabledBy != w.EnabledBy || r.Once != w.Once || !reflect.DeepEqual(r.Emit, w.Emit) {
		t.Errorf("design winner rule %+v\nWinnerRule %+v", r, w)
	}
}

// A file with winner_detection and an explicit empty rules list gets no
// built-in rule.
func TestNoBuiltinWithRulesKey(t *testing.T) {
	d, err := Load("test.yaml", []byte("winner_detection: {ctr_threshold: 0.03}\nrules: []\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Rules) != 0 {
		t.Errorf("rules = %v, want none", d.Rules)
	}
}

func ptr[T any](v T) *T { return &v }
