package nodeprom

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/shadow"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// The pipelines of a node, the values of the pipeline label.
const (
	Live   = "live"
	Shadow = "shadow"
)

// Metrics adapts one pipeline's observers (engine.Observer,
// engine.RebuildObserver and node.Observer) to Prometheus collectors on a
// registry the caller owns. The live pipeline's instance also carries the
// node's own metrics: refused versions, rebuilding partitions, the state's
// size, consumer lag and the shadow judgement.
type Metrics struct {
	node.NopObserver

	events, rejected, duplicates *prometheus.CounterVec
	decisions, verdicts          *prometheus.CounterVec
	ruleErrors                   *prometheus.CounterVec
	proposals                    prometheus.Counter
	batch, eval, commit          prometheus.Histogram
	version                      prometheus.Gauge
	rerouted, late               prometheus.Counter
	queued                       *prometheus.GaugeVec

	// The live instance's only.
	refused    prometheus.Counter
	rebuilding prometheus.Gauge
	judge      *judgeGauges
	restore    *restoreMetrics
	src        atomic.Pointer[Source]

	mu        sync.Mutex
	ruleTypes map[string]string // rule id -> decision type, of the rule set running
}

// Source is what the live instance reads at scrape time: a node.Node.
type Source interface {
	Lag() map[string]map[int32]int64
	StateBytes() int64
}

var (
	_ engine.Observer        = (*Metrics)(nil)
	_ engine.RebuildObserver = (*Metrics)(nil)
	_ node.Observer          = (*Metrics)(nil)
)

// New registers the metrics of pipeline (Live or Shadow) on reg: the
// engine's families, each with the label pipeline=PIPELINE, and for Live
// the node's own. Register at most one instance of each pipeline on a
// registry.
func New(reg prometheus.Registerer, pipeline string) *Metrics {
	l := prometheus.Labels{"pipeline": pipeline}
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_records_in_total", Help: "Records processed, by stage (0 relay, 1 metric events, 2 guards)."}, []string{"stage"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_records_rejected_total", Help: "Records sent to the dead-letter topic, by stage."}, []string{"stage"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_events_duplicate_total", Help: "Metric events already applied (same ad_id and event_id)."}, []string{"stage"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_decisions_total", Help: "Decisions written, by rule and type."}, []string{"rule", "type"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_verdicts_total", Help: "Guard verdicts, by status and reason."}, []string{"status", "reason"}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_rule_errors_total", Help: "Rule run-time errors, counted and skipped, by rule."}, []string{"rule"}),
		proposals: prometheus.NewCounter(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_proposals_total", Help: "Proposals made by rules or relayed from the actions topic."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{ConstLabels: l,
			Name: "adrules_batch_seconds", Help: "Wall time to process one partition's batch (before the commits).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		eval: prometheus.NewHistogram(prometheus.HistogramOpts{ConstLabels: l,
			Name: "adrules_eval_seconds", Help: "Wall time of evaluating the rules for one event (one event in 64 is timed).",
			Buckets: prometheus.ExponentialBuckets(1e-7, 2, 18)}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{ConstLabels: l,
			Name: "adrules_commit_seconds", Help: "Wall time of a batch's commits: the Kafka transaction, then the Pebble batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{ConstLabels: l,
			Name: "adrules_config_version", Help: "The version of the rule set the pipeline runs; 0 when none (no shadow)."}),
		rerouted: prometheus.NewCounter(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_records_rerouted_total", Help: "Metric events found on a partition their key does not belong to (another partitioner than murmur2), produced again to the right one."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{ConstLabels: l,
			Name: "adrules_proposals_late_total", Help: "Proposals stage 2 judged at arrival, behind its order, because their source had been idle."}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{ConstLabels: l,
			Name: "adrules_proposals_queued", Help: "Proposals waiting in stage 2 for every source partition to pass them, by partition of the proposals topic."}, []string{"partition"}),
		ruleTypes: map[string]string{},
	}
	reg.MustRegister(m.events, m.rejected, m.duplicates, m.decisions, m.verdicts, m.ruleErrors, m.proposals,
		m.batch, m.eval, m.commit, m.version, m.rerouted, m.late, m.queued)
	if pipeline != Live {
		return m
	}
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "adrules_config_refused_total", Help: "Published rule set versions this node refused: invalid, out of range, unsigned or not signed by a trusted key; the last good one stays."})
	m.rebuilding = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "adrules_partitions_rebuilding", Help: "Partitions whose state is being rebuilt from their log."})
	stateSize := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "adrules_state_bytes", Help: "Approximate size of the Pebble state on disk."}, func() float64 {
		if s := m.src.Load(); s != nil {
			return float64((*s).StateBytes())
		}
		return 0
	})
	m.judge = newJudgeGauges()
	m.restore = newRestoreMetrics(reg)
	reg.MustRegister(m.refused, m.rebuilding, stateSize, &lagCollector{m: m, desc: prometheus.NewDesc("adrules_consumer_lag",
		"Records between the node's position and the high watermark, per input partition.", []string{"topic", "partition"}, nil)},
		m.judge.agreement, m.judge.decisions, m.judge.resolved, m.judge.precision)
	return m
}

// Attach makes the live instance read the consumer lag and the state's
// size from src (the node, once started) at scrape time.
func (m *Metrics) Attach(src Source) { m.src.Store(&src) }

// Observe counts one partition's batch.
func (m *Metrics) Observe(s engine.Stats) {
	stage := strconv.Itoa(s.Stage)
	m.events.WithLabelValues(stage).Add(float64(s.Records))
	m.rejected.WithLabelValues(stage).Add(float64(s.Rejected))
	if s.Duplicates > 0 {
		m.duplicates.WithLabelValues(stage).Add(float64(s.Duplicates))
	}
	m.mu.Lock()
	for rule, n := range s.Decisions {
		m.decisions.WithLabelValues(rule, m.ruleTypes[rule]).Add(float64(n))
	}
	m.mu.Unlock()
	for k, n := range s.Verdicts {
		status, reason, _ := strings.Cut(k, "/")
		m.verdicts.WithLabelValues(status, reason).Add(float64(n))
	}
	for rule, n := range s.RuleErrors {
		m.ruleErrors.WithLabelValues(rule).Add(float64(n))
	}
	m.proposals.Add(float64(s.Proposals))
	m.rerouted.Add(float64(s.Rerouted))
	m.late.Add(float64(s.Late))
	if s.Stage == 2 {
		m.queued.WithLabelValues(strconv.Itoa(int(s.Partition))).Set(float64(s.Queued))
	}
	m.batch.Observe(s.Elapsed.Seconds())
	m.commit.Observe(s.Commit.Seconds())
	for _, d := range s.EvalSamples {
		m.eval.Observe(d.Seconds())
	}
	m.observeEventTime(s)
}

// Rebuilding tracks partitions being rebuilt.
func (m *Metrics) Rebuilding(_ string, _ int32, done bool) {
	if m.rebuilding == nil {
		return
	}
	if done {
		m.rebuilding.Dec()
		return
	}
	m.rebuilding.Inc()
}

// RuleSet sets the version gauge and the decision type of each rule (the
// type label of adrules_decisions_total), at start and on every swap.
func (m *Metrics) RuleSet(rs *rules.RuleSet) {
	types := map[string]string{}
	var v int64
	if rs != nil {
		v = rs.Version
		for _, r := range rs.Doc.Rules {
			if r.Emit != nil {
				types[r.ID] = r.Emit.Type
			}
		}
	}
	m.mu.Lock()
	m.ruleTypes = types
	m.mu.Unlock()
	m.version.Set(float64(v))
}

// ConfigRefused counts a refused record or version.
func (m *Metrics) ConfigRefused(string) {
	if m.refused != nil {
		m.refused.Inc()
	}
}

// ShadowJudged sets the judgement gauges.
func (m *Metrics) ShadowJudged(j *node.Judgement) {
	if m.judge != nil {
		m.judge.set(j)
	}
}

// lagCollector reports consumer lag per input partition, read from the
// node's last fetches at scrape time.
type lagCollector struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.src.Load()
	if s == nil {
		return
	}
	for t, ps := range (*s).Lag() {
		for p, n := range ps {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), t, strconv.Itoa(int(p)))
		}
	}
}

// judgeGauges are the metrics of the shadow judgement.
type judgeGauges struct {
	agreement, decisions, resolved, precision *prometheus.GaugeVec
}

func newJudgeGauges() *judgeGauges {
	return &judgeGauges{
		agreement: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_agreement",
			Help: "Ads decided by a rule since the shadow was published: by both rule sets, the live only, the shadow only."}, []string{"rule", "agreement"}),
		decisions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_winner_decisions",
			Help: "Winner decisions since the shadow was published, by side (live, shadow)."}, []string{"side"}),
		resolved: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_resolved",
			Help: "Winner decisions whose 24 hours of outcome have passed, by side."}, []string{"side"}),
		precision: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_precision",
			Help: "Share of resolved winner decisions that held, by side."}, []string{"side"}),
	}
}

func (g *judgeGauges) set(j *node.Judgement) {
	for _, v := range []*prometheus.GaugeVec{g.agreement, g.decisions, g.resolved, g.precision} {
		v.Reset()
	}
	if j == nil || j.Shadow == nil {
		return
	}
	r := j.Report
	for _, a := range r.Agreement {
		g.agreement.WithLabelValues(a.Rule, "both").Set(float64(a.Both))
		g.agreement.WithLabelValues(a.Rule, "live_only").Set(float64(a.LiveOnly))
		g.agreement.WithLabelValues(a.Rule, "shadow_only").Set(float64(a.ShadowOnly))
	}
	for _, sd := range []struct {
		name string
		r    shadow.SideReport
	}{{"live", r.Live}, {"shadow", r.Shadow}} {
		g.decisions.WithLabelValues(sd.name).Set(float64(sd.r.Decisions))
		g.resolved.WithLabelValues(sd.name).Set(float64(sd.r.Resolved))
		g.precision.WithLabelValues(sd.name).Set(sd.r.Precision)
	}
}
