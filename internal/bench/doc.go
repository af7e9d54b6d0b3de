// Package bench measures a node end to end and its restore, beside the
// simplest programs that read the same topic (issue 13): `make bench-e2e`.
//
// # What a run does
//
// Run starts an in-process kfake broker, creates the topics as a node does,
// publishes examples/rules.yaml with its winner rule only, and produces a
// synthetic history (internal/gen: by default 1,000,000 metric events of
// 20,000 ads over 6 partitions, keyed by ad_id and partitioned by murmur2,
// as `adrules produce` writes them). Then, one after another, over the same
// topic:
//
//   - noop: a franz-go consumer that reads every record and does nothing;
//   - plain: a franz-go loop that decodes each record with encoding/json
//     into a struct and adds it to a Go map of per-ad sums, no durable
//     state;
//   - pipeline: a node as `adrules run` wires it (streams.Node on a
//     consumer group in transactions, the engine with the node's options,
//     Pebble with synced commits in a directory on disk), exactly-once
//     output to the output topics, until every event's batch is committed.
//
// Then the restore benchmark: at each history length (by default the
// workload's and three times it, the events past the first processed by
// the first node), a fresh node (an empty directory) takes over every
// partition, and the time until it is ready (every partition it holds
// restored, engine.RestoreObserver, what /readyz says) and the records it
// replayed are measured: once replaying every partition's whole log, once
// from snapshots. The first node writes a snapshot of each partition every
// Options.SnapshotEvery records (node.Snapshots on a fileblob directory,
// as node.Options.Snapshots does in a node), so the second fresh node
// imports each partition's newest and replays only the tail past it.
//
// # How each is measured
//
// Each part runs in a process of its own (Spawn: the test binary run
// again, Child in its TestMain), so its peak RSS (getrusage maxrss, which
// only grows in a process) and its allocations are its own, and the
// broker's CPU, in the parent, is apart. A part's window runs from before
// it makes its first client to its last event handled (the pipeline: the
// commit of its last batch); the CPU is getrusage's user and system time
// of the part's process over it, the allocations runtime.MemStats's, the
// heap peak sampled every 100 ms. Timing is never asserted: the smoke test
// checks counts and the pipeline's decisions only.
//
// # What it never does
//
// It imports nothing of cmd/adrules and runs no binary: the node is built
// from the library packages, as a program that embeds adrules would.
package bench
