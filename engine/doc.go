// Package engine runs rule sets over partitions of records: decode, dedupe,
// apply to the ad's state, evaluate, emit; and for proposal topics, the
// guards of stage 2.
//
// It declares the ports it needs, Source, Sink, Store, Clock and Observer,
// and knows nothing of what implements them: it imports neither Kafka nor
// Pebble nor Prometheus. The streams, state and jsonl packages provide them.
// Every sink writes an output's bytes with Encode, so a topic, a backtest's
// file and a replay hold the same bytes for the same output.
//
// # One partition, one goroutine
//
// Records of one partition are processed in offset order by one goroutine;
// partitions of a batch run in parallel. Output is written partition by
// partition in topic and partition order, so it does not depend on
// scheduling.
//
// # Batches and commits
//
// Each batch is processed, its output written to the Sink, the Source
// committed (with Kafka: the transaction holding the output and the consumer
// offsets), and only then each partition's state committed together with the
// offset of its next record. The state never runs ahead of the output. A
// record whose offset is below the committed state is skipped; when a
// partition's first records lie past its committed state (the process died
// between the two commits, or the partition moved here from another node),
// the engine replays the gap from the Source into the state without writing
// output (Replayer). A Source that aborts a batch returns ErrReset and the
// engine forgets its in-memory state, to reload it from the Store.
//
// # Rule set swaps
//
// The rule set is held in an atomic pointer and loaded once per batch: a
// batch never mixes two versions. There is no global state.
//
// # Bad input
//
// A record that does not decode, whose key is not its ad (or account), or
// that arrives later than the dedupe horizon goes to the dead-letter output
// with the reason and changes no state. A rule that fails at run time is
// counted in Output.Errors and skipped.
package engine
