package shadow

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// DefaultWinnerType is the decision type judged by default: the winner
// rule's rag_index_winner job.
const DefaultWinnerType = "rag_index_winner"

// DefaultHorizon is how much event time after a winner decision its outcome
// covers.
const DefaultHorizon = 24 * time.Hour

// Settings decide how the shadow is judged. They come from the LIVE rule
// set (FromDocument): the champion sets the bar for both sides, so a
// challenger cannot win by lowering its own thresholds or its own
// promotion criteria.
type Settings struct {
	// MinSamples is the least number of resolved winner decisions each side
	// needs (params.model_evaluation.min_samples; default 1000).
	MinSamples int `json:"min_samples"`
	// MinImprovementPct is the least relative gain of the shadow's precision
	// over the live one, in percent of the live precision
	// (params.model_evaluation.min_improvement_pct; default 2.0).
	MinImprovementPct float64 `json:"min_improvement_pct"`
	// ConfidenceLevel is the one-sided confidence of the two-proportion
	// test, a share in (0, 1) (params.model_evaluation.confidence_level;
	// default 0.95).
	ConfidenceLevel float64 `json:"confidence_level"`
	// MinAccuracyDelta is the least absolute gain of the shadow's precision,
	// as a share (0.01 = one percentage point)
	// (params.model_evaluation.min_accuracy_delta; default 0).
	MinAccuracyDelta float64 `json:"min_accuracy_delta"`
	// AutoPromote lets a node publish the shadow as the next live version
	// when every criterion is met (params.model_evaluation.auto_promote;
	// default false).
	AutoPromote bool `json:"auto_promote"`

	// The outcome yardstick (params.winner_detection of the live rule set):
	// a decision held when the ad's ROAS over the horizon is at or above
	// ROASThreshold or its CTR above CTRThreshold ("and" with RequireBoth).
	// Defaults 3.0, 0.03, false (DESIGN.md section 1).
	ROASThreshold float64 `json:"roas_threshold"`
	CTRThreshold  float64 `json:"ctr_threshold"`
	RequireBoth   bool    `json:"require_both"`

	// WinnerType is the decision type whose outcomes are judged:
	// params.rag_indexing.job_type when the live rule set has it, else
	// DefaultWinnerType.
	WinnerType string `json:"winner_type"`
	// Horizon is the event time after a decision that its outcome covers;
	// default DefaultHorizon.
	Horizon config.Duration `json:"horizon"`
}

// DefaultSettings returns the settings of a live rule set without
// model_evaluation or winner_detection params.
func DefaultSettings() Settings {
	return Settings{
		MinSamples: 1000, MinImprovementPct: 2.0, ConfidenceLevel: 0.95, MinAccuracyDelta: 0, AutoPromote: false,
		ROASThreshold: 3.0, CTRThreshold: 0.03, RequireBoth: false,
		WinnerType: DefaultWinnerType, Horizon: config.Duration(DefaultHorizon),
	}
}

// FromRuleSet is FromDocument of the rule set's document.
func FromRuleSet(rs *rules.RuleSet) (Settings, error) {
	if rs == nil || rs.Doc == nil {
		return Settings{}, fmt.Errorf("shadow settings: no rule set")
	}
	return FromDocument(rs.Doc)
}

var modelEvaluationKeys = []string{"auto_promote", "confidence_level", "min_accuracy_delta", "min_improvement_pct", "min_samples"}

// FromDocument reads the settings from the live document's params:
// model_evaluation (the predecessor's names), winner_detection and
// rag_indexing.job_type. Missing keys take their defaults. A key of
// model_evaluation that is unknown or of the wrong type, or a value out of
// range, is an error that names it.
func FromDocument(d *config.Document) (Settings, error) {
	s := DefaultSettings()
	if d == nil {
		return s, fmt.Errorf("shadow settings: no document")
	}
	var errs []string
	fail := func(key, format string, args ...any) {
		errs = append(errs, "params."+key+": "+fmt.Sprintf(format, args...))
	}
	section := func(name string) map[string]any {
		v, ok := d.Params[name]
		if !ok || v == nil {
			return nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			fail(name, "must be a section")
		}
		return m
	}
	number := func(m map[string]any, sec, key string, dst *float64) {
		v, ok := m[key]
		if !ok {
			return
		}
		f, ok := toFloat(v)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			fail(sec+"."+key, "must be a number, got %v", v)
			return
		}
		*dst = f
	}
	boolean := func(m map[string]any, sec, key string, dst *bool) {
		v, ok := m[key]
		if !ok {
			return
		}
		b, ok := v.(bool)
		if !ok {
			fail(sec+"."+key, "must be true or false, got %v", v)
			return
		}
		*dst = b
	}

	if me := section("model_evaluation"); me != nil {
		for _, k := range sortedKeys(me) {
			if !slices.Contains(modelEvaluationKeys, k) {
				fail("model_evaluation."+k, "unknown key; known: %s", strings.Join(modelEvaluationKeys, ", "))
			}
		}
		if v, ok := me["min_samples"]; ok {
			f, ok := toFloat(v)
			if !ok || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
				fail("model_evaluation.min_samples", "must be a whole number at least 0, got %v", v)
			} else {
				s.MinSamples = int(f)
			}
		}
		number(me, "model_evaluation", "min_improvement_pct", &s.MinImprovementPct)
		number(me, "model_evaluation", "confidence_level", &s.ConfidenceLevel)
		number(me, "model_evaluation", "min_accuracy_delta", &s.MinAccuracyDelta)
		boolean(me, "model_evaluation", "auto_promote", &s.AutoPromote)
		if s.MinImprovementPct < 0 {
			fail("model_evaluation.min_improvement_pct", "must be at least 0, got %v", s.MinImprovementPct)
		}
		if !(s.ConfidenceLevel > 0 && s.ConfidenceLevel < 1) {
			fail("model_evaluation.confidence_level", "must be a share between 0 and 1, such as 0.95, got %v", s.ConfidenceLevel)
		}
		if s.MinAccuracyDelta < 0 || s.MinAccuracyDelta >= 1 {
			fail("model_evaluation.min_accuracy_delta", "must be a share in [0, 1), such as 0.01, got %v", s.MinAccuracyDelta)
		}
	}
	if wd := section("winner_detection"); wd != nil {
		number(wd, "winner_detection", "roas_threshold", &s.ROASThreshold)
		number(wd, "winner_detection", "ctr_threshold", &s.CTRThreshold)
		boolean(wd, "winner_detection", "require_both", &s.RequireBoth)
	}
	if rag := section("rag_indexing"); rag != nil {
		if jt, ok := rag["job_type"].(string); ok && jt != "" {
			s.WinnerType = jt
		}
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("shadow settings of %s: %s", d.Name, strings.Join(errs, "; "))
	}
	return s, nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
