// Package report compares the outputs of a two-sided backtest, a baseline
// and a candidate rule set run over the same records, and writes what
// differs: diff.jsonl for programs, report.html and report.md for people,
// and a short summary for the terminal.
//
// It owns reading each side's decisions.jsonl and actions.jsonl (and
// counting dlq.jsonl), the counts per side, the differences between the
// sides, and the three files. Running the rules is the caller's job
// (internal/backtest); this package only reads what they wrote.
//
// # Matching across sides
//
// Decision and action ids are derived from the rule set's hash
// (rules.ID("decision", sha256, ...)), so the same proposal has different
// ids on two sides that ran different rule sets. A proposal is matched by
// what does not depend on the rule set: its source (the rule id, or the
// external producer's), its type, its entity (ad_id, adset_id) and the input
// record it came from (topic, partition, offset). For a rule's proposal
// that record is the metric event that fired the rule; for an external one
// it is its own line of the actions input, which both sides read alike.
//
// # Determinism
//
// Compare is a function of the files it reads and the Side and Meta values
// it is given: the same inputs give byte-identical diff.jsonl, report.html,
// report.md and summary. Every list is sorted, every map is written with
// sorted keys, and sums are taken in file order.
//
// # What it never does
//
// No Kafka, no rule evaluation, no network: report.html is one file that
// fetches nothing. No wall clock: nothing written depends on when it ran
// or where the side directories are.
package report
