package nodeprom_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/shadow"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/node/nodeprom"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/versions"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ruleSet is the shipped rules file as version v, its winner rule's
// decision type set to typ.
func ruleSet(t *testing.T, v int64, typ string) *rules.RuleSet {
	t.Helper()
	data, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(data), "emit: {type: rag_index_winner,", "emit: {type: "+typ+",", 1)
	doc, err := config.Load("rules.yaml", []byte(src), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, v)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// source is a node's lag and state size, as the live instance reads them
// at scrape time.
type source struct{}

func (source) Lag() map[string]map[int32]int64 {
	return map[string]map[int32]int64{"ad-metrics": {0: 5, 1: 0}}
}
func (source) StateBytes() int64 { return 4096 }

// TestMetrics: the live and shadow instances on one registry are told
// apart by the pipeline label; each counts its own batches, with the
// decision type of the rule set running (refreshed by a swap); the live
// instance alone carries the node's families (refusals, rebuilding
// partitions, the state's size and lag read from the node at scrape time,
// the shadow judgement).
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	live, shad := nodeprom.New(reg, nodeprom.Live), nodeprom.New(reg, nodeprom.Shadow)
	var _ node.Observer = live

	live.RuleSet(ruleSet(t, 1, "rag_index_winner"))
	shad.RuleSet(ruleSet(t, 2, "rag_index_winner"))
	live.Observe(engine.Stats{Stage: 1, Records: 10, Rejected: 1, Decisions: map[string]int{"winner": 2}, Elapsed: time.Millisecond})
	shad.Observe(engine.Stats{Stage: 1, Records: 10, Decisions: map[string]int{"winner": 3}})
	// A swap changes the type the winner rule emits: its next decisions
	// carry the new type.
	live.RuleSet(ruleSet(t, 3, "best_ad"))
	live.Observe(engine.Stats{Stage: 1, Records: 4, Decisions: map[string]int{"winner": 1}})
	shad.RuleSet(nil) // retired
	live.ConfigRefused("unsigned")
	shad.ConfigRefused("unsigned") // the shadow's instance has no such family
	live.Rebuilding("ad-metrics", 0, false)
	live.Rebuilding("ad-metrics", 1, false)
	live.Rebuilding("ad-metrics", 0, true)
	live.Attach(source{})
	live.ShadowJudged(&node.Judgement{Shadow: &versions.Record{Version: 2}, Report: shadow.Report{
		Agreement: []shadow.Agreement{{Rule: "winner", Both: 400, LiveOnly: 1, ShadowOnly: 2}},
		Live:      shadow.SideReport{Decisions: 400, Resolved: 400, Held: 220, Precision: 0.55},
		Shadow:    shadow.SideReport{Decisions: 340, Resolved: 340, Held: 220, Precision: 0.5},
	}})

	want := `
# HELP adrules_records_in_total Records processed, by stage (0 relay, 1 metric events, 2 guards).
# TYPE adrules_records_in_total counter
adrules_records_in_total{pipeline="live",stage="1"} 14
adrules_records_in_total{pipeline="shadow",stage="1"} 10
# HELP adrules_records_rejected_total Records sent to the dead-letter topic, by stage.
# TYPE adrules_records_rejected_total counter
adrules_records_rejected_total{pipeline="live",stage="1"} 1
adrules_records_rejected_total{pipeline="shadow",stage="1"} 0
# HELP adrules_decisions_total Decisions written, by rule and type.
# TYPE adrules_decisions_total counter
adrules_decisions_total{pipeline="live",rule="winner",type="best_ad"} 1
adrules_decisions_total{pipeline="live",rule="winner",type="rag_index_winner"} 2
adrules_decisions_total{pipeline="shadow",rule="winner",type="rag_index_winner"} 3
# HELP adrules_config_version The version of the rule set the pipeline runs; 0 when none (no shadow).
# TYPE adrules_config_version gauge
adrules_config_version{pipeline="live"} 3
adrules_config_version{pipeline="shadow"} 0
# HELP adrules_config_refused_total Published rule set versions this node refused: invalid, out of range, unsigned or not signed by a trusted key; the last good one stays.
# TYPE adrules_config_refused_total counter
adrules_config_refused_total 1
# HELP adrules_partitions_rebuilding Partitions whose state is being rebuilt from their log.
# TYPE adrules_partitions_rebuilding gauge
adrules_partitions_rebuilding 1
# HELP adrules_state_bytes Approximate size of the Pebble state on disk.
# TYPE adrules_state_bytes gauge
adrules_state_bytes 4096
# HELP adrules_consumer_lag Records between the node's position and the high watermark, per input partition.
# TYPE adrules_consumer_lag gauge
adrules_consumer_lag{partition="0",topic="ad-metrics"} 5
adrules_consumer_lag{partition="1",topic="ad-metrics"} 0
# HELP adrules_shadow_agreement Ads decided by a rule since the shadow was published: by both rule sets, the live only, the shadow only.
# TYPE adrules_shadow_agreement gauge
adrules_shadow_agreement{agreement="both",rule="winner"} 400
adrules_shadow_agreement{agreement="live_only",rule="winner"} 1
adrules_shadow_agreement{agreement="shadow_only",rule="winner"} 2
# HELP adrules_shadow_precision Share of resolved winner decisions that held, by side.
# TYPE adrules_shadow_precision gauge
adrules_shadow_precision{side="live"} 0.55
adrules_shadow_precision{side="shadow"} 0.5
# HELP adrules_shadow_resolved Winner decisions whose 24 hours of outcome have passed, by side.
# TYPE adrules_shadow_resolved gauge
adrules_shadow_resolved{side="live"} 400
adrules_shadow_resolved{side="shadow"} 340
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"adrules_records_in_total", "adrules_records_rejected_total", "adrules_decisions_total", "adrules_config_version",
		"adrules_config_refused_total", "adrules_partitions_rebuilding", "adrules_state_bytes", "adrules_consumer_lag",
		"adrules_shadow_agreement", "adrules_shadow_precision", "adrules_shadow_resolved"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "adrules_batch_seconds"); n != 2 {
		t.Errorf("adrules_batch_seconds: %d series, want one per pipeline", n)
	}

	// No shadow published: the judgement's gauges are gone.
	live.ShadowJudged(&node.Judgement{})
	if n := testutil.CollectAndCount(reg, "adrules_shadow_precision", "adrules_shadow_agreement"); n != 0 {
		t.Errorf("%d judgement series without a shadow, want none", n)
	}
}
