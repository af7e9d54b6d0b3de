// Package replay verifies what production wrote: it re-runs the live rules
// over a range of the input topics exactly as the nodes ran them and
// compares the result, byte for byte, with the decisions, proposals and
// verdicts the output topics hold (`adrules replay --verify`). Run it with
// a new build to check an upgrade: the same logs must give the same
// outputs.
//
// # What it owns
//
//   - The switch points: which rule set version processed each record,
//     read from the config_applied records on the decisions topic (and the
//     switches topic) and the versions' documents on the config history,
//     through a streams.History, the same one a node rebuilds with.
//     Versions are told apart by their number, so a record processed under
//     a rollback (an old document under a new number) replays under that
//     number.
//   - The recorded outputs of the range: the decisions of its metric
//     events, and the proposals and verdicts whose proposal came from a
//     record in it (a metric event, or an external proposal on the actions
//     topic).
//   - The version-switching source: it cuts the input's batches where the
//     version changes and swaps the engine to each batch's version, so
//     every record runs under the version recorded for it.
//   - The first difference: outputs are compared input record by input
//     record, in input order; the first record whose outputs differ is
//     named with the records only one side holds.
//
// # How it runs
//
// State is rebuilt from the start of each input log, with no output kept
// before the range: stages 0 and 1 over the actions and metrics topics,
// then stage 2 over the proposals log as recorded. The replay reads each
// partition directly, in offset order: it joins no group and commits no
// offsets.
//
// # What it never does
//
// It writes nothing to Kafka. It does not open state itself (the store comes in Options.Store), compile
// config records its own way (versions.Compile does, as on every node), or print: warnings go to
// Options.Log, progress to Options.Progress, and the verdict is returned.
// It may import engine, streams, versions and rules; never state, internal
// packages or Prometheus (internal/lint checks).
package replay
