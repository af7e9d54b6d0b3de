// Package backtest runs a rule set over a history: a JSON Lines file, or
// ranges of topics read by the caller (an engine.Source). Stage 1 runs over
// the metric events, then stage 2 (the guards) over the rules' own proposals
// and any external ones, writing decisions.jsonl, actions.jsonl and
// dlq.jsonl. An Emit filter keeps the output of the records in a range only:
// those before it warm the state up.
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
