package main

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/adrules/adrules/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics adapts the engine's Observer to Prometheus collectors on a
// registry that main owns: the engine never imports Prometheus.
type metrics struct {
	events, rejected, duplicates *prometheus.CounterVec
	decisions, verdicts          *prometheus.CounterVec
	ruleErrors                   *prometheus.CounterVec
	proposals                    prometheus.Counter
	batch, eval, commit          prometheus.Histogram
	version                      prometheus.Gauge
	stateSize                    prometheus.GaugeFunc
	rebuilding                   prometheus.Gauge
	refused                      prometheus.Counter
	rerouted, late               prometheus.Counter
	queued                       *prometheus.GaugeVec

	// For the status line and readiness.
	nEvents, nDecisions atomic.Int64
	nRebuilding         atomic.Int64
	mu                  sync.Mutex
	ruleTypes           map[string]string // rule id -> decision type
}

func newMetrics(reg prometheus.Registerer, stateSize func() float64) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adrules_records_in_total", Help: "Records processed, by stage (0 relay, 1 metric events, 2 guards)."}, []string{"stage"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adrules_records_rejected_total", Help: "Records sent to the dead-letter topic, by stage."}, []string{"stage"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adrules_events_duplicate_total", Help: "Metric events already applied (same ad_id and event_id)."}, []string{"stage"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adrules_decisions_total", Help: "Decisions written, by rule and type."}, []string{"rule", "type"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adrules_verdicts_total", Help: "Guard verdicts, by status and reason."}, []string{"status", "reason"}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adrules_rule_errors_total", Help: "Rule run-time errors, counted and skipped, by rule."}, []string{"rule"}),
		proposals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adrules_proposals_total", Help: "Proposals made by rules or relayed from the actions topic."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "adrules_batch_seconds", Help: "Wall time to process one partition's batch (before the commits).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		eval: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "adrules_eval_seconds", Help: "Wall time of evaluating the rules for one event (one event in 64 is timed).",
			Buckets: prometheus.ExponentialBuckets(1e-7, 2, 18)}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "adrules_commit_seconds", Help: "Wall time of a batch's commits: the Kafka transaction, then the Pebble batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "adrules_config_version", Help: "The version of the rule set this node runs."}),
		stateSize: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "adrules_state_bytes", Help: "Approximate size of the Pebble state on disk."}, stateSize),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adrules_config_refused_total", Help: "Published rule set versions this node refused: invalid, out of range, unsigned or not signed by a trusted key; the last good one stays."}),
		rebuilding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "adrules_partitions_rebuilding", Help: "Partitions whose state is being rebuilt from their log."}),
		rerouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adrules_records_rerouted_total", Help: "Metric events found on a partition their key does not belong to (another partitioner than murmur2), produced again to the right one."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adrules_proposals_late_total", Help: "Proposals stage 2 judged at arrival, behind its order, because their source had been idle."}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adrules_proposals_queued", Help: "Proposals waiting in stage 2 for every source partition to pass them, by partition of the proposals topic."}, []string{"partition"}),
		ruleTypes: map[string]string{},
	}
	reg.MustRegister(m.events, m.rejected, m.duplicates, m.decisions, m.verdicts, m.ruleErrors, m.proposals,
		m.batch, m.eval, m.commit, m.version, m.stateSize, m.rebuilding, m.refused, m.rerouted, m.late, m.queued)
	return m
}

var _ engine.Observer = (*metrics)(nil)
var _ engine.RebuildObserver = (*metrics)(nil)

// Observe counts one partition's batch.
func (m *metrics) Observe(s engine.Stats) {
	stage := strconv.Itoa(s.Stage)
	m.events.WithLabelValues(stage).Add(float64(s.Records))
	m.rejected.WithLabelValues(stage).Add(float64(s.Rejected))
	if s.Duplicates > 0 {
		m.duplicates.WithLabelValues(stage).Add(float64(s.Duplicates))
	}
	m.mu.Lock()
	for rule, n := range s.Decisions {
		m.decisions.WithLabelValues(rule, m.ruleTypes[rule]).Add(float64(n))
		m.nDecisions.Add(int64(n))
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
	if s.Stage == 1 {
		m.nEvents.Add(int64(s.Records))
	}
}

// Rebuilding tracks partitions being rebuilt, for /readyz.
func (m *metrics) Rebuilding(_ string, _ int32, done bool) {
	if done {
		m.rebuilding.Dec()
		m.nRebuilding.Add(-1)
		return
	}
	m.rebuilding.Inc()
	m.nRebuilding.Add(1)
}

// setRuleTypes records the decision type of each rule, for labels.
func (m *metrics) setRuleTypes(types map[string]string) {
	m.mu.Lock()
	m.ruleTypes = types
	m.mu.Unlock()
}

// lagCollector reports consumer lag per input partition, read from the
// node's last fetches at scrape time.
type lagCollector struct {
	lag  func() map[string]map[int32]int64
	desc *prometheus.Desc
}

func newLagCollector(lag func() map[string]map[int32]int64) *lagCollector {
	return &lagCollector{lag: lag, desc: prometheus.NewDesc("adrules_consumer_lag",
		"Records between the node's position and the high watermark, per input partition.", []string{"topic", "partition"}, nil)}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for t, ps := range c.lag() {
		for p, n := range ps {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), t, strconv.Itoa(int(p)))
		}
	}
}

// totalLag sums lag over partitions.
func totalLag(lag map[string]map[int32]int64) int64 {
	var total int64
	for _, ps := range lag {
		for _, n := range ps {
			total += n
		}
	}
	return total
}
