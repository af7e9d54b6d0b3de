// Package rules compiles rule sets and evaluates them: the pure core of
// adrules.
//
// It owns the event contract (Event, Decoder), the per-ad state of stage 1
// (AdState: lifetime totals, minute buckets of the rolling windows, the
// event-id memory, once and cooldown marks), compiling a config.Document to
// expr programs (Compile, RuleSet), evaluating them with explain traces
// (Evaluator), and the guards of stage 2 (RuleSet.Check over an
// AccountState).
//
// # Rules are pure
//
// Nothing here does I/O, reads a clock, logs, counts metrics or draws a
// random number. Evaluation is a function of the rule set, the ad's state and
// the event: time is the event's ts, and fuzz and jitter come from a hash of
// the action id and the rule set's hash. The `now()` builtin of expr is
// disabled.
//
// # Compile once, evaluate many times
//
// Compile type-checks every expression against a typed environment built
// for the rule set (ad, event, params, flags and one field per declared
// window), so a typo is an error at load time with its file position, never
// at event time. Parameters and flags are folded into constants. A RuleSet is
// immutable and safe for concurrent use; each goroutine evaluates through its
// own Evaluator, which owns an expr VM with a memory budget.
//
// # Limits
//
// Every input is checked against a documented limit before the expensive
// work. An expression's source is capped at MaxSource bytes and MaxDepth
// nested brackets before expr parses it, and at MaxNodes nodes; each
// evaluation at MemoryBudget, and at StringBudget bytes of strings, which
// the builtins that build strings (and + on strings) check before they
// allocate; each rule's evaluation of an event at StepBudget steps, which
// every loop, and every walk of an array or a string, charges before it
// runs. Events and proposals carry ids of at most MaxIDLen bytes of
// valid UTF-8, counts up to MaxCount and money up to MaxMoney; sums of
// counts saturate instead of wrapping. So no rule file or record can hang
// or crash a node.
package rules
