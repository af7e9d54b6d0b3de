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
// # Memory follows the active ads
//
// With EvictAfter, each Commit sweeps a slice of the ads and accounts held
// in memory (a few hundred, twice as many as it wrote, and one in 128 of
// those held when it last went round, so it goes round within 128
// commits) and drops those whose newest event lies further behind the
// partition's event time than the rule set looks back; the next use of one
// reloads it. Evicting happens only right after a commit, when nothing is
// dirty, so it changes no state and no result, only memory.
//
// It deletes nothing from Pebble. An ad's meta record holds its lifetime
// totals and its once marks, needed for as long as the ad may report. Its
// buckets within the longest window plus the dedupe horizon of its own
// newest event, and its ids within the horizon, are what a late event of
// that ad reads, and such an event is accepted however far behind the
// partition's event time it arrives. What lies behind those (the few that
// expiry, which deletes in batches of 16, has not reached) is deleted at
// the ad's next event, as before; deleting it at eviction would make what
// a later rule set with longer windows sees depend on when batches were
// cut. An account's record likewise stays.
//
// # Keys are grouped by partition
//
// Every key of a partition shares its prefix, and every key of an ad shares
// the ad's prefix within it, so a partition can be dropped (Drop) or shipped
// on its own, and an ad loads with one seek. The layout is written down at
// partitionPrefix.
//
// # Snapshots
//
// Snapshot takes a consistent view of one partition's committed keys (a
// Pebble snapshot, so the partition goes on committing meanwhile), and
// Export writes it to an io.Writer: the pairs in key order, then a JSON
// Manifest (topic, partition, next offset, event time, the rule set
// versions the caller says it was built under, a sha256 digest of the
// pairs), then a sha256 of the whole file. The digest covers the keys and
// values only, so two nodes that applied the same records to the same
// offset, in whatever batches, have the same digest (Digest computes it
// without a file). Import checks a snapshot whole (format, checksum,
// digest, the manifest against the keys) before it replaces the
// partition's keys in one batch: a truncated or corrupt snapshot is
// refused with ErrCorruptSnapshot and changes nothing. Where snapshots are
// kept is the snapshot package's business.
//
// # What it never does
//
// It reads no clock, makes no decision and knows nothing of Kafka or
// metrics. It satisfies engine.PartitionState and engine.Evicter
// structurally; the wiring in cmd adapts it with engine.StoreFunc.
package state
