// Package backtest runs a rule set over a history: a JSON Lines file, or
// ranges of topics read by the caller (an engine.Source). Stage 1 runs over
// the metric events, then stage 2 (the guards) over the rules' own proposals
// and any external ones, writing decisions.jsonl, actions.jsonl and
// dlq.jsonl. An Emit filter keeps the output of the records in a range only:
// those before it warm the state up.
//
// # Sides
//
// A backtest runs one Side (a rule set and its output directory) or two, a
// candidate and a baseline, at once over exactly the same records, each
// with its own state: RunFiles over a file, or ResolveTopic (turning bounds
// and a warm-up into offsets of each partition, and reading the external
// proposals of the range) then TopicRun.Run over topic ranges, read as a
// plain consumer of assigned partitions (no group, nothing written to
// Kafka). Compare writes the diff and the reports of two sides
// (internal/report). Progress bars, summaries and exit codes are the
// caller's: a run reports progress through a ProgressFunc.
//
// # Determinism
//
// The output files are a function of the inputs and the rule set: the same
// inputs give byte-identical files. Stage 2 sees one log of proposals: the
// external ones (one log per file or partition) merged with the rules' (one
// log per input partition, in the order stage 1 made them), taking whichever
// head comes first in ts (the earlier log at equal ts, external ones first).
// Each log keeps its own order, out-of-order timestamps included.
//
// # What it never does
//
// It writes nothing but the output directory and its temporary state
// directory, and reads the wall clock only to report elapsed time.
package backtest
