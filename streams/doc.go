// Package streams connects the engine to Kafka with franz-go: a Node that is
// the engine's Source and Sink on a consumer group in a transactional
// session, topic creation, and the security options of a client.
//
// # Exactly once, as a read_committed consumer sees it
//
// A Node consumes the input topics in a kgo.GroupTransactSession. Each batch
// is one transaction: Poll begins it, Write produces the batch's decisions,
// proposals, verdicts and dead letters into it, and Commit ends it,
// committing the consumer offsets in the same transaction. Only then does
// the engine commit its Pebble state with the next offsets. So:
//
//   - a crash before the transaction commits aborts it: nothing of the batch
//     is visible, the group resumes at the last committed offsets, and the
//     Pebble state, committed after the previous transaction, matches them;
//   - a crash after the transaction commits and before Pebble commits leaves
//     the state behind the group's offsets: on restart the engine finds the
//     partition's first record past its state and replays the gap from Kafka
//     into the state without producing anything (Replay), since its output
//     is already committed;
//   - a rebalance during a batch aborts its transaction (the session sees
//     the revocation); Commit returns engine.ErrReset and the engine forgets
//     its in-memory state, to reload it from Pebble; a revocation between
//     batches makes the next Poll return engine.ErrReset for the same end;
//   - a produce that fails fails the batch: Commit flushes before it looks
//     for produce errors, so no transaction commits without its records.
//
// In no interleaving is a committed output written twice or lost, and the
// state always equals the effect of exactly the committed input.
//
// # Moving partitions
//
// A node that is assigned a partition whose state it does not hold (or holds
// only an old copy of) rebuilds it the same way: it replays the partition
// from its state's offset, or from the start of the log, up to where the
// group resumes. This costs a read of the partition's history: at the
// engine's single-partition speed (BENCHMARKS.md) about 3 seconds per
// million events. Input topics are created with unlimited retention so the
// history is there; see docs/operations.md.
//
// # Ranges
//
// ResolveRange turns --from and --to (times or partition:offset pairs) into
// offsets of each partition, and ReadRange and RangeSource read them as a
// plain consumer of assigned partitions: no group, no committed offsets.
// They read transaction markers too (and skip them), so a range that ends
// in one ends; backtests and replays read that way.
//
// # What it never does
//
// It makes no decision and keeps no state of its own: everything it reads
// goes to the engine, everything the engine writes goes to Kafka.
package streams
