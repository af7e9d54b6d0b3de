package nodeprom

import (
	"math"
	"strconv"
	"sync"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/node"
	"github.com/prometheus/client_golang/prometheus"
)

// restoreMetrics are the live instance's metrics of restores and
// snapshots (docs/operations.md, Metrics).
type restoreMetrics struct {
	replayed, toReplay *prometheus.GaugeVec // per partition, the current or last restore
	seconds            *prometheus.HistogramVec
	written, failed    prometheus.Counter
	snapBytes          *prometheus.GaugeVec

	mu sync.Mutex
	// evTime is each partition's event time (epoch ms), snapTime that of
	// its newest snapshot written or imported: the age is their
	// difference, at scrape time.
	evTime, snapTime map[partKey]int64
	ageDesc          *prometheus.Desc
}

type partKey struct {
	topic     string
	partition int32
}

func newRestoreMetrics(reg prometheus.Registerer) *restoreMetrics {
	tp := []string{"topic", "partition"}
	r := &restoreMetrics{
		replayed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_restore_records_replayed",
			Help: "Records replayed from the log into the partition's state, in its current or last restore."}, tp),
		toReplay: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_restore_records_to_replay",
			Help: "Records the partition's current or last restore replays from the log, once known."}, tp),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "adrules_restore_seconds",
			Help:    "Wall time of a partition's restore, from the engine asking for its state to its being ready, by source (snapshot: imported, then the tail replayed; log: replayed from the log; local: nothing to do).",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800}}, []string{"source"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "adrules_snapshots_written_total",
			Help: "Snapshots of partitions this node wrote to the snapshot store."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "adrules_snapshots_failed_total",
			Help: "Snapshots of partitions this node took and could not write (or whose older snapshots it could not delete)."}),
		snapBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_snapshot_bytes",
			Help: "Bytes of the key-value pairs of the partition's newest snapshot written or imported: the size of its state."}, tp),
		evTime: map[partKey]int64{}, snapTime: map[partKey]int64{},
		ageDesc: prometheus.NewDesc("adrules_snapshot_age_seconds",
			"Event time of the partition less that of its newest snapshot written or imported, in seconds.", tp, nil),
	}
	reg.MustRegister(r.replayed, r.toReplay, r.seconds, r.written, r.failed, r.snapBytes, r)
	return r
}

func labels(topic string, partition int32) []string {
	return []string{topic, strconv.Itoa(int(partition))}
}

func (r *restoreMetrics) progress(topic string, partition int32, replayed, total int64) {
	l := labels(topic, partition)
	r.replayed.WithLabelValues(l...).Set(float64(replayed))
	if total >= 0 {
		r.toReplay.WithLabelValues(l...).Set(float64(total))
	}
}

func (r *restoreMetrics) done(x node.Restore) {
	l := labels(x.Topic, x.Partition)
	if x.Replayed == 0 { // nothing replayed: no progress was told
		r.replayed.WithLabelValues(l...).Set(0)
		r.toReplay.WithLabelValues(l...).Set(0)
	}
	r.seconds.WithLabelValues(x.Source).Observe(x.Elapsed.Seconds())
	if x.Snapshot != nil {
		r.snapshot(*x.Snapshot)
	}
	r.eventTime(x.Topic, x.Partition, x.EventTime)
}

func (r *restoreMetrics) snapshot(s node.SnapshotInfo) {
	r.snapBytes.WithLabelValues(labels(s.Topic, s.Partition)...).Set(float64(s.Bytes))
	k := partKey{s.Topic, s.Partition}
	r.mu.Lock()
	if t, ok := r.snapTime[k]; !ok || s.EventTime > t {
		r.snapTime[k] = s.EventTime
	}
	r.mu.Unlock()
}

func (r *restoreMetrics) recordWrite(s node.SnapshotInfo, err error) {
	if err != nil {
		r.failed.Inc()
		return
	}
	r.written.Inc()
	r.snapshot(s)
}

func (r *restoreMetrics) eventTime(topic string, partition int32, ms int64) {
	if ms == math.MinInt64 || ms == 0 {
		return
	}
	k := partKey{topic, partition}
	r.mu.Lock()
	if t, ok := r.evTime[k]; !ok || ms > t {
		r.evTime[k] = ms
	}
	r.mu.Unlock()
}

// forget drops the series of partitions this node no longer owns.
func (r *restoreMetrics) forget(m map[string][]int32) {
	for t, ps := range m {
		for _, p := range ps {
			l := labels(t, p)
			r.replayed.DeleteLabelValues(l...)
			r.toReplay.DeleteLabelValues(l...)
			r.snapBytes.DeleteLabelValues(l...)
			r.mu.Lock()
			delete(r.evTime, partKey{t, p})
			delete(r.snapTime, partKey{t, p})
			r.mu.Unlock()
		}
	}
}

// Describe and Collect report the snapshot ages.
func (r *restoreMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- r.ageDesc }

func (r *restoreMetrics) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, snap := range r.snapTime {
		ev, ok := r.evTime[k]
		if !ok || snap == math.MinInt64 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(r.ageDesc, prometheus.GaugeValue, float64(max(ev-snap, 0))/1000, labels(k.topic, k.partition)...)
	}
}

// RestoreProgress sets a partition's restore progress (live instance).
func (m *Metrics) RestoreProgress(topic string, partition int32, replayed, total int64) {
	if m.restore != nil {
		m.restore.progress(topic, partition, replayed, total)
	}
}

// RestoreDone observes a partition's restore (live instance).
func (m *Metrics) RestoreDone(r node.Restore) {
	if m.restore != nil {
		m.restore.done(r)
	}
}

// SnapshotWritten counts a snapshot written or failed (live instance).
func (m *Metrics) SnapshotWritten(s node.SnapshotInfo, err error) {
	if m.restore != nil {
		m.restore.recordWrite(s, err)
	}
}

// Assigned drops the series of the partitions revoked (live instance).
func (m *Metrics) Assigned(parts map[string][]int32, on bool) {
	if m.restore != nil && !on {
		m.restore.forget(parts)
	}
}

// observeEventTime keeps a partition's event time, for its snapshot's
// age.
func (m *Metrics) observeEventTime(s engine.Stats) {
	if m.restore != nil && s.MaxTS > 0 {
		m.restore.eventTime(s.Topic, s.Partition, s.MaxTS)
	}
}
