package nodeprom_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/node/nodeprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRestoreMetrics: a partition's restore progress and seconds by
// source, the snapshots written and failed, their size, and each
// partition's snapshot age (its event time less its newest snapshot's),
// on the live instance only; a revoked partition's series go.
func TestRestoreMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	live, shad := nodeprom.New(reg, nodeprom.Live), nodeprom.New(reg, nodeprom.Shadow)
	const sec = int64(1000)
	t0 := int64(1_700_000_000) * sec

	// Partition 0 imports a snapshot and replays a tail of 300 records;
	// partition 1 replays its whole log; partition 2 had nothing to do.
	live.RestoreProgress("ad-metrics", 0, 100, 300)
	live.RestoreProgress("ad-metrics", 0, 300, 300)
	live.RestoreDone(node.Restore{Topic: "ad-metrics", Partition: 0, Source: node.RestoreSnapshot, Elapsed: 1500 * time.Millisecond,
		Replayed: 300, Snapshot: &node.SnapshotInfo{Topic: "ad-metrics", Partition: 0, Offset: 1000, EventTime: t0, Bytes: 5 << 20},
		EventTime: t0 + 60*sec})
	live.RestoreProgress("ad-metrics", 1, 2000, -1) // the log's start, before its first record
	live.RestoreProgress("ad-metrics", 1, 4000, 5000)
	live.RestoreProgress("ad-metrics", 1, 5000, 5000)
	live.RestoreDone(node.Restore{Topic: "ad-metrics", Partition: 1, Source: node.RestoreLog, Elapsed: 12 * time.Second,
		Replayed: 5000, EventTime: t0})
	live.RestoreDone(node.Restore{Topic: "ad-metrics", Partition: 2, Source: node.RestoreLocal, Elapsed: time.Millisecond, EventTime: t0})
	shad.RestoreDone(node.Restore{Topic: "ad-metrics", Partition: 3, Source: node.RestoreLog, Elapsed: time.Second}) // not the shadow's

	// Partition 0 goes on: its event time passes its snapshot's by 90 s,
	// then a newer snapshot is written; partition 1's first snapshot
	// fails, its second is written.
	live.Observe(engine.Stats{Topic: "ad-metrics", Partition: 0, Stage: 1, MaxTS: t0 + 90*sec})
	live.SnapshotWritten(node.SnapshotInfo{Topic: "ad-metrics", Partition: 1, Offset: 5100}, errors.New("store down"))
	live.SnapshotWritten(node.SnapshotInfo{Topic: "ad-metrics", Partition: 1, Offset: 5200, EventTime: t0 - 30*sec, Bytes: 7 << 20}, nil)
	live.Observe(engine.Stats{Topic: "ad-metrics", Partition: 1, Stage: 1, MaxTS: t0 + 10*sec})
	live.Observe(engine.Stats{Topic: "ad-metrics", Partition: 1, Stage: 1, MaxTS: t0 + 5*sec}) // older: the age does not go back

	want := `
# HELP adrules_restore_records_replayed Records replayed from the log into the partition's state, in its current or last restore.
# TYPE adrules_restore_records_replayed gauge
adrules_restore_records_replayed{partition="0",topic="ad-metrics"} 300
adrules_restore_records_replayed{partition="1",topic="ad-metrics"} 5000
adrules_restore_records_replayed{partition="2",topic="ad-metrics"} 0
# HELP adrules_restore_records_to_replay Records the partition's current or last restore replays from the log, once known.
# TYPE adrules_restore_records_to_replay gauge
adrules_restore_records_to_replay{partition="0",topic="ad-metrics"} 300
adrules_restore_records_to_replay{partition="1",topic="ad-metrics"} 5000
adrules_restore_records_to_replay{partition="2",topic="ad-metrics"} 0
# HELP adrules_restore_seconds Wall time of a partition's restore, from the engine asking for its state to its being ready, by source (snapshot: imported, then the tail replayed; log: replayed from the log; local: nothing to do).
# TYPE adrules_restore_seconds histogram
adrules_restore_seconds_bucket{source="local",le="0.1"} 1
adrules_restore_seconds_bucket{source="local",le="0.25"} 1
adrules_restore_seconds_bucket{source="local",le="0.5"} 1
adrules_restore_seconds_bucket{source="local",le="1"} 1
adrules_restore_seconds_bucket{source="local",le="2.5"} 1
adrules_restore_seconds_bucket{source="local",le="5"} 1
adrules_restore_seconds_bucket{source="local",le="10"} 1
adrules_restore_seconds_bucket{source="local",le="20"} 1
adrules_restore_seconds_bucket{source="local",le="30"} 1
adrules_restore_seconds_bucket{source="local",le="60"} 1
adrules_restore_seconds_bucket{source="local",le="120"} 1
adrules_restore_seconds_bucket{source="local",le="300"} 1
adrules_restore_seconds_bucket{source="local",le="600"} 1
adrules_restore_seconds_bucket{source="local",le="1800"} 1
adrules_restore_seconds_bucket{source="local",le="+Inf"} 1
adrules_restore_seconds_sum{source="local"} 0.001
adrules_restore_seconds_count{source="local"} 1
adrules_restore_seconds_bucket{source="log",le="0.1"} 0
adrules_restore_seconds_bucket{source="log",le="0.25"} 0
adrules_restore_seconds_bucket{source="log",le="0.5"} 0
adrules_restore_seconds_bucket{source="log",le="1"} 0
adrules_restore_seconds_bucket{source="log",le="2.5"} 0
adrules_restore_seconds_bucket{source="log",le="5"} 0
adrules_restore_seconds_bucket{source="log",le="10"} 0
adrules_restore_seconds_bucket{source="log",le="20"} 1
adrules_restore_seconds_bucket{source="log",le="30"} 1
adrules_restore_seconds_bucket{source="log",le="60"} 1
adrules_restore_seconds_bucket{source="log",le="120"} 1
adrules_restore_seconds_bucket{source="log",le="300"} 1
adrules_restore_seconds_bucket{source="log",le="600"} 1
adrules_restore_seconds_bucket{source="log",le="1800"} 1
adrules_restore_seconds_bucket{source="log",le="+Inf"} 1
adrules_restore_seconds_sum{source="log"} 12
adrules_restore_seconds_count{source="log"} 1
adrules_restore_seconds_bucket{source="snapshot",le="0.1"} 0
adrules_restore_seconds_bucket{source="snapshot",le="0.25"} 0
adrules_restore_seconds_bucket{source="snapshot",le="0.5"} 0
adrules_restore_seconds_bucket{source="snapshot",le="1"} 0
adrules_restore_seconds_bucket{source="snapshot",le="2.5"} 1
adrules_restore_seconds_bucket{source="snapshot",le="5"} 1
adrules_restore_seconds_bucket{source="snapshot",le="10"} 1
adrules_restore_seconds_bucket{source="snapshot",le="20"} 1
adrules_restore_seconds_bucket{source="snapshot",le="30"} 1
adrules_restore_seconds_bucket{source="snapshot",le="60"} 1
adrules_restore_seconds_bucket{source="snapshot",le="120"} 1
adrules_restore_seconds_bucket{source="snapshot",le="300"} 1
adrules_restore_seconds_bucket{source="snapshot",le="600"} 1
adrules_restore_seconds_bucket{source="snapshot",le="1800"} 1
adrules_restore_seconds_bucket{source="snapshot",le="+Inf"} 1
adrules_restore_seconds_sum{source="snapshot"} 1.5
adrules_restore_seconds_count{source="snapshot"} 1
# HELP adrules_snapshots_written_total Snapshots of partitions this node wrote to the snapshot store.
# TYPE adrules_snapshots_written_total counter
adrules_snapshots_written_total 1
# HELP adrules_snapshots_failed_total Snapshots of partitions this node took and could not write (or whose older snapshots it could not delete).
# TYPE adrules_snapshots_failed_total counter
adrules_snapshots_failed_total 1
# HELP adrules_snapshot_bytes Bytes of the key-value pairs of the partition's newest snapshot written or imported: the size of its state.
# TYPE adrules_snapshot_bytes gauge
adrules_snapshot_bytes{partition="0",topic="ad-metrics"} 5.24288e+06
adrules_snapshot_bytes{partition="1",topic="ad-metrics"} 7.340032e+06
# HELP adrules_snapshot_age_seconds Event time of the partition less that of its newest snapshot written or imported, in seconds.
# TYPE adrules_snapshot_age_seconds gauge
adrules_snapshot_age_seconds{partition="0",topic="ad-metrics"} 90
adrules_snapshot_age_seconds{partition="1",topic="ad-metrics"} 40
`
	names := []string{"adrules_restore_records_replayed", "adrules_restore_records_to_replay", "adrules_restore_seconds",
		"adrules_snapshots_written_total", "adrules_snapshots_failed_total", "adrules_snapshot_bytes", "adrules_snapshot_age_seconds"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// A newer snapshot of partition 0 brings its age down; partition 1
	// is revoked: its series go.
	live.SnapshotWritten(node.SnapshotInfo{Topic: "ad-metrics", Partition: 0, Offset: 1400, EventTime: t0 + 80*sec, Bytes: 6 << 20}, nil)
	live.Assigned(map[string][]int32{"ad-metrics": {1, 2}}, false)
	want = `
# HELP adrules_snapshot_age_seconds Event time of the partition less that of its newest snapshot written or imported, in seconds.
# TYPE adrules_snapshot_age_seconds gauge
adrules_snapshot_age_seconds{partition="0",topic="ad-metrics"} 10
# HELP adrules_restore_records_replayed Records replayed from the log into the partition's state, in its current or last restore.
# TYPE adrules_restore_records_replayed gauge
adrules_restore_records_replayed{partition="0",topic="ad-metrics"} 300
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "adrules_snapshot_age_seconds", "adrules_restore_records_replayed"); err != nil {
		t.Error(err)
	}
}
