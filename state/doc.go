// Package state keeps the per-partition state of adrules in Pebble: each
// ad's lifetime totals, window buckets, remembered event ids and once and
// cooldown marks; each account's approved actions and budget changes; and
// each partition's next offset.
//
// # Write-behind, one batch per commit
//
// Besides ads and accounts, a partition keeps the largest event time it
// has read and, for stage 2, its queue (rules.Queue): the proposals waiting
// for their turn, one key each, and the sources' progress.
//
// State is held in memory while a partition is owned; an ad or account is
// loaded on first use with one iterator over its key range. Commit writes
// only what changed since the last commit (new buckets, new event ids, range
// deletions of what expired, the ad's meta record) together with the
// partition's next offset in one Pebble batch, so the state and the offset
// can never disagree.
//
// # Keys are grouped by partition
//
// Every key of a partition shares its prefix, and every key of an ad shares
// the ad's prefix within it, so a partition can be dropped (Drop) or shipped
// on its own, and an ad loads with one seek. The layout is written down at
// partitionPrefix.
//
// # What it never does
//
// It reads no clock, makes no decision and knows nothing of Kafka or
// metrics. It satisfies engine.PartitionState structurally; the wiring in
// cmd adapts it with engine.StoreFunc.
package state
