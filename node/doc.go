// Package node is one running adrules node: Start opens its Pebble state,
// checks the brokers, chooses the version it runs (publishing its bootstrap
// document when none was ever published), serves HTTP (/healthz, /readyz,
// the admin API, the caller's /metrics), joins its consumer group and runs
// both stages of the live pipeline (engine) for the partitions it owns.
// Beside them it follows the config topic (swapping in newer accepted
// versions between batches), runs the shadow pipeline of the shadow in
// force, judges the shadow every Options.ShadowJudgeEvery and promotes it
// by first claim when auto_promote says so, and writes heartbeats. Wait
// returns when all of it stopped.
//
// The package also holds what a command needs of the same concepts, so
// that what a tool shows is what nodes do: ReadLive and ReadShadow (the
// config topics as every node reads them), Publish (numbering, signing and
// checking a version before it is written), Judge (the shadow's judgement,
// which `adrules shadow status` prints) and Keys (a trust policy and a
// signer).
//
// # Invariants
//
//   - A node never outlives its engine: when the engine stops, for
//     whatever reason, the node stops everything it started (the config
//     follower, the shadow pipeline and its judge, the heartbeats, the
//     HTTP server) and Wait returns: nil when the node's context ended and
//     the current batch was committed, the fatal error otherwise.
//   - Every goroutine Start starts has ended when Wait returns, unless the
//     shutdown took longer than Options.StopTimeout (then Wait returns
//     anyway, as a process would exit).
//   - A node takes its rule set from the config topic only, and runs only
//     versions its Keys accept.
//   - Wall-clock time enters only through Options.Clock: heartbeats, judging
//     rounds, shadow retries, the stop timeout and the times heartbeats and
//     claims carry. There are no package-level knobs.
//   - One streams.Cluster per node (Options.Cluster, or one the node dials
//     from Options.Connection and closes); group members and consumers are
//     its NewClient clients.
//
// # What it never does
//
// It never imports Prometheus and never reads metrics back: readiness and
// Status are the node's own state; an Observer (node/nodeprom adapts it to
// Prometheus) is only told. It parses no flags and prints nothing but its
// log (Options.Logger).
//
// # Locks
//
// Node.swapMu orders rule set swaps (the follower and the reload
// endpoint); Node.mu guards the assigned partitions; shadowRunner.mu orders
// the shadow's start, follow and stop. None is held while another is
// taken, except that the config follower takes shadowRunner.mu after it
// released Node.swapMu: the order, when both are needed, is swapMu, then
// shadowRunner.mu. Node.mu is a leaf.
package node
