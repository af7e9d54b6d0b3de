// Package snapshot keeps the snapshots of partitions' state (state.Export)
// in a blob store through gocloud.dev/blob: a directory (fileblob) in dev
// mode and tests, memory (memblob) where handy, S3, GCS or Azure in
// production, opened by URL.
//
// # Names
//
// A snapshot of a partition at an offset is the object
//
//	PREFIX TOPIC "/" PARTITION "/" OFFSET(20 digits) ".snap"
//
// so a partition's snapshots list with one prefix and sort by name. PREFIX
// (Options.Prefix) keeps apart what would differ for the same topic: a node
// uses its consumer group, since two groups may run other rule sets over
// the same input.
//
// # Never a half-written snapshot
//
// Save writes a snapshot to a temporary object beside its final name
// (OFFSET "." NONCE ".tmp"), closes it, copies it to the final name and
// deletes the temporary one. A writer killed at any step leaves either no
// final object or a complete one: the blob store makes an object visible
// only once its writer closed it, and nothing ever chooses a ".tmp". A
// temporary object left by a killed writer is deleted by the next Save of
// the partition at the same or a later offset. Should a store show a final
// object that is not whole anyway, Restore refuses it (its checksum and
// digest do not check, state.ErrCorruptSnapshot) and takes the next older
// one.
//
// # Retention
//
// Save keeps the newest Options.Keep snapshots of the partition (default
// 3) and deletes the older ones.
//
// # What it never does
//
// It reads no clock and makes no decision; it knows nothing of Kafka or of
// the engine. Which snapshot to take and when is the node's business.
package snapshot
