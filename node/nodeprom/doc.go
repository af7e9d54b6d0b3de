// Package nodeprom is the one Prometheus adapter of a node: Metrics
// implements engine.Observer, engine.RebuildObserver and node.Observer and
// turns what it is told into collectors on a registry its caller owns
// (cmd/adrules). A node's live and shadow pipelines are two instances, New(reg,
// Live) and New(reg, Shadow), whose engine families (adrules_records_in_total,
// adrules_decisions_total, adrules_config_version, ...) carry the label
// pipeline="live" or "shadow"; the live instance also carries the node's
// own metrics (refused versions, rebuilding partitions, state size,
// consumer lag, the shadow judgement gauges, the partitions' restores and
// snapshots). docs/operations.md lists
// them.
//
// # What it never does
//
// It is only told: the node never reads a metric back (readiness and the
// status line are the node's own state). It registers nothing on the
// default registry and has no package-level collectors.
//
// # Locks
//
// Metrics.mu guards the rule types, restoreMetrics.mu the partitions'
// event times and snapshot times; both are leaves (nothing else is taken
// while one is held).
package nodeprom
