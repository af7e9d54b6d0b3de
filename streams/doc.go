// Package streams connects the engine to Kafka with franz-go: a Node that is
// the engine's Source and Sink on a consumer group in a transactional
// session, topic creation, and the Cluster every command and node talks
// through.
//
// # One client per cluster
//
// A Cluster owns the long-lived client of a Connection (brokers, Security,
// Topics): metadata, admin requests and produce go through it, and what
// needs a client of its own (a group member, a consumer of given
// partitions) gets one from Cluster.NewClient with the same brokers and
// security. Commands build one Cluster from their flags and hand it to the
// code that talks to Kafka; no other code dials.
//
// # Exactly once, as a read_committed consumer sees it
//
// A Node consumes the input topics in a kgo.GroupTransactSession. Each batch
// is one transaction: Poll begins it, Write produces the batch's switch
// points, decisions, proposals, progress records, verdicts, rerouted records
// and dead letters into it, and Commit ends it, committing the consumer
// offsets in the same transaction. Only then does the engine commit its
// Pebble state with the next offsets. So:
//
//   - a crash before the transaction commits aborts it: nothing of the batch
//     is visible, the group resumes at the last committed offsets, and the
//     Pebble state, committed after the previous transaction, matches them;
//   - a crash after the transaction commits and before Pebble commits (or
//     between two partitions' Pebble commits) leaves those partitions' state
//     behind the group's offsets: when the engine next restores them it
//     replays the gap from Kafka into the state without producing anything
//     (Replay), since its output is already committed;
//   - a rebalance during a batch aborts its transaction (the session sees
//     the revocation); Commit returns engine.ErrReset and the engine forgets
//     its in-memory state, to reload it from Pebble; an assignment change
//     between batches makes the next Poll return engine.ErrReset for the
//     same end, and the engine restores what the node holds (Assigned);
//   - a transaction that cannot end within CommitTimeout is given up: a new
//     session fences it and the batch is processed again;
//   - a produce that fails fails the batch: Commit flushes before it looks
//     for produce errors, so no transaction commits without its records.
//
// In no interleaving is a committed output written twice or lost, and the
// state always equals the effect of exactly the committed input. The tests
// in faults_test.go crash a node at each of these steps.
//
// # Membership
//
// A node is a static member of its group (instance id = NodeID): a node that
// restarts within the session timeout gets its partitions back without a
// rebalance. Close leaves the group explicitly, so a node that stops cleanly
// hands its partitions over at once; Kill does not (a crash, for drills).
//
// A membership lost is not an error of the node: when a broker restarts
// without the group's members, or the group moved on without this one
// (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS), or its
// coordinator moves or is loading, the client revokes the node's partitions
// (the batch in flight aborts) and rejoins by itself, and Poll goes on: the
// partitions it gets back are restored as after any rebalance. Poll stops
// the node only on an error that no rejoin or retry mends: an
// authorization refused, another process holding the node's instance id
// (FENCED_INSTANCE_ID: two nodes share a node id), a setting the broker
// rejects.
//
// # Dead letters
//
// A dead letter is the original record's key and value, with the reason
// and where it came from in headers. It always fits: the producer's batch
// limit of each topic the node writes is the topic's max.message.bytes
// (read at the first Poll; franz-go's 1,000,012 bytes while unknown), and a
// dead letter that would be larger than the dead-letter topic's (a record
// within a few bytes of its own topic's limit, or a dead-letter topic with
// a lower limit) keeps a prefix of its value, and of its key if that is
// large too, with adrules.truncated=true, adrules.size and adrules.sha256
// of the original value (adrules.key_size and adrules.key_sha256 when the
// key was cut). The reason is cut to 1 KiB. A dead letter is never refused
// as too large, so bad input never stops a node.
//
// # Partitions, progress and idleness
//
// The Node partitions what it produces by key with murmur2, as the Java
// client does, which is the partitioner adrules requires of producers
// (KeyPartition); PartitionOf tells the engine where a metric event's key
// belongs, and a record found elsewhere is produced again (Output.Reroutes).
// The sources' progress (rules.Progress) goes to every partition of the
// proposals topic, with the number of sources (the partitions of the
// metrics and actions topics). Between batches, Poll tells stage 2 which
// source partitions it owns are idle: empty at their assignment, or without
// records for IdleAfter.
//
// # Moving partitions
//
// A node that is assigned a partition whose state it does not hold (or holds
// only an old copy of) restores it before it processes anything: it replays
// the partition from its state's offset, or from the start of the log, up
// to where the group resumes, each record under the rule set version that
// processed it (History, from the switch points on Topics.Switches). This
// costs a read of the partition's history: at the engine's single-partition
// speed (BENCHMARKS.md) about 3 seconds per million events. Input topics are
// created with unlimited retention so the history is there; see
// docs/operations.md.
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
//
// # Locks
//
// Node.mu (the partitions owned, their positions and high watermarks,
// the first produce error) and
// History.mu (what it has read) are leaves: each is held for a few field
// reads and writes, never while another lock is taken, never across a call
// to Kafka. A Cluster has no lock of its own: franz-go's client is safe for
// concurrent use.
package streams
