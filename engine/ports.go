package engine

import (
	"context"
	"errors"
	"time"

	"github.com/adrules/adrules/rules"
)

// Record is one input record: a metric event (stage 1) or an action
// proposal (stage 2), with where it came from. A Source may reuse the memory
// of Key and Value once the batch is committed; a Sink that keeps them past
// Write (a dead letter produced asynchronously, say) copies them.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
}

// Source yields input records. Within one partition, records come in offset
// order. A finite source returns io.EOF once it is drained.
type Source interface {
	// Poll returns the next records; it blocks until there are some, ctx
	// ends, or the source is drained (io.EOF). ErrReset says the source's
	// assignment or position changed: the engine forgets what it holds in
	// memory and polls again.
	Poll(ctx context.Context) ([]Record, error)
	// Commit tells the source that everything it returned so far has been
	// processed and its output written; the engine commits the state after
	// it. ErrReset says the batch was not committed (a transaction aborted
	// on a rebalance): the engine forgets the batch's state and polls again,
	// and the source delivers the records again.
	Commit(ctx context.Context) error
}

// ErrReset is returned by a Source's Poll or Commit when the engine must
// forget its in-memory state and reload it from the Store.
var ErrReset = errors.New("engine: source reset")

// Replayer is what a Source can do besides: read a partition's records in
// [from, to), from = -1 meaning the start of the log, handing them to fn in
// chunks. When a partition's first records lie past its committed state
// (the state is committed after the output, and the process died between
// the two; or the partition moved here from another node), the engine
// replays the gap into the state without writing any output.
type Replayer interface {
	Replay(ctx context.Context, topic string, partition int32, from, to int64, fn func([]Record) error) error
}

// Sink takes the output of one batch, in order, before the batch's state is
// committed.
type Sink interface {
	Write(ctx context.Context, out *Output) error
}

// Output is what one batch produced, in input order within each partition.
type Output struct {
	Decisions   []rules.Decision
	Proposals   []rules.Proposal
	Verdicts    []rules.Verdict
	DeadLetters []DeadLetter
	// Errors are rule run-time errors: counted and skipped, never fatal.
	Errors []rules.RuleError
	// Applied records where a partition started using a rule set version
	// (WithSwitchRecords).
	Applied []ConfigApplied
	// Progress is how far each source partition of stage 2 (metric events,
	// external proposals) has read, after the batch: a Sink writes it to
	// every partition of stage 2's input after the batch's proposals, with
	// Sources filled in (rules.Progress).
	Progress []rules.Progress
	// Reroutes are records that lie on a partition their key does not
	// belong to (WithPartitioner): a Sink produces them again, keyed as
	// they were, so they land where they belong. They changed nothing here.
	Reroutes []Reroute
}

// Reroute is a record to produce again on the partition its key belongs to.
type Reroute struct {
	From  rules.Input // where it lay
	Key   []byte
	Value []byte
}

// TypeConfigApplied is the type of a ConfigApplied record: what tells it
// from the decisions it is written among.
const TypeConfigApplied = "config_applied"

// ConfigApplied records that a partition switched rule set versions at an
// input offset: written with the decisions, so a replay of the same logs
// can reproduce production exactly.
type ConfigApplied struct {
	Type           string      `json:"type"` // TypeConfigApplied
	RulesetVersion int64       `json:"ruleset_version"`
	RulesetSHA256  string      `json:"ruleset_sha256"`
	Input          rules.Input `json:"input"` // the first record the version applied to
}

func (o *Output) reset() {
	o.Decisions, o.Proposals, o.Verdicts = o.Decisions[:0], o.Proposals[:0], o.Verdicts[:0]
	o.DeadLetters, o.Errors, o.Applied = o.DeadLetters[:0], o.Errors[:0], o.Applied[:0]
	o.Progress, o.Reroutes = o.Progress[:0], o.Reroutes[:0]
}

// DeadLetter is a record that could not be processed, with the reason. It
// carries the original bytes.
type DeadLetter struct {
	Input  rules.Input
	Key    []byte
	Value  []byte
	Reason string
}

// Store keeps per-partition state. The state package implements it on Pebble.
type Store interface {
	// Partition returns the state of one input partition, loading what was
	// committed before.
	Partition(topic string, partition int32) (PartitionState, error)
}

// PartitionState is the state of one input partition. It is used by one
// goroutine at a time.
type PartitionState interface {
	// Offset returns the offset of the next record to process: everything
	// before it is already in the state. -1 when nothing was committed.
	Offset() int64
	// Ad returns the state of an ad, loading it on first use; a new ad has
	// an empty state. Changes are written at the next Commit.
	Ad(adID string) (*rules.AdState, error)
	// Account returns the stage-2 state of an account, like Ad.
	Account(accountID string) (*rules.AccountState, error)
	// EventTime is the largest event time the partition has read (metric
	// events, or external proposals on the relay), math.MinInt64 before the
	// first; SetEventTime changes it at the next Commit. It orders stage 2
	// (rules.Order).
	EventTime() int64
	SetEventTime(ms int64)
	// Queue returns stage 2's queue of the partition (proposals waiting for
	// their turn, the progress of each source), loading it on first use;
	// changes are written at the next Commit.
	Queue() (*rules.Queue, error)
	// Commit writes every changed ad and account, the event time, the
	// queue and next (the offset of the next record to process) in one
	// atomic batch.
	Commit(next int64) error
}

// Evicter is what a PartitionState can do besides: forget, at its commits,
// the ads and accounts that have been silent for longer than the rule set
// looks back, and reload them from what it committed when they come back.
// The engine calls it whenever a partition starts using a rule set, so
// memory follows the active ads. Evicting must change no result.
type Evicter interface {
	// EvictAfter: an ad whose newest event lies more than adMS behind the
	// partition's event time, or an account whose newest approval lies
	// more than accountMS behind, may leave memory at the next Commit.
	EvictAfter(adMS, accountMS int64)
}

// History says which rule set version processed each record of a
// partition, as recorded by the switch points (ConfigApplied): a rebuild
// replays every record under the version that processed it, so the state
// it rebuilds is the state the partition had.
type History interface {
	// RuleSetAt returns the rule set that processed the record at offset
	// of the partition, and the offset of the next switch point after it
	// (-1 when none is known). A nil rule set means the history knows
	// nothing of the record: the rule set in force is used.
	RuleSetAt(ctx context.Context, topic string, partition int32, offset int64) (rs *rules.RuleSet, until int64, err error)
}

// Assigner is what a Source can do besides: say which partitions it holds
// now and the offset where each resumes (-1 when unknown), so the engine
// restores their state when they are assigned, all in parallel, before it
// processes anything. A Source that holds new partitions returns ErrReset
// from Poll, and the engine asks.
type Assigner interface {
	Assigned(ctx context.Context) ([]Resume, error)
}

// Resume is an assigned partition and where its consumption resumes.
type Resume struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Clock is the wall clock. It drives only metrics of elapsed time, never a
// decision: decisions read event time.
type Clock interface {
	Now() time.Time
}

// Observer receives the counts of each processed batch. Metrics are an
// adapter on it; the engine never imports a metrics library.
type Observer interface {
	Observe(Stats)
}

// RebuildObserver is what an Observer can do besides: hear when a
// partition's state is being rebuilt from its log (Replayer), so a node can
// report that it is not ready.
type RebuildObserver interface {
	Rebuilding(topic string, partition int32, done bool)
}

// RestoreObserver is what an Observer can do besides: hear when a
// partition's state is restored (rebuilt if it had to be) and the partition
// can be processed, so a node is ready only when all of its partitions
// are.
type RestoreObserver interface {
	Restored(topic string, partition int32)
}

// Stats counts what one partition's batch did.
type Stats struct {
	Topic      string
	Partition  int32
	Stage      int // 0 relay of external proposals, 1 metric events, 2 guards
	Records    int
	Rejected   int            // dead letters
	Rerouted   int            // records on a partition their key does not belong to, produced again
	Late       int            // stage 2: proposals judged at arrival, behind the order (rules.Queue)
	Queued     int            // stage 2: proposals waiting for their turn after the batch
	Duplicates int            // events already applied (S1)
	Decisions  map[string]int // by rule id
	Proposals  int
	Verdicts   map[string]int // by status/reason, e.g. "approved", "rejected/rate_limit_hour"
	RuleErrors map[string]int // by rule id
	Elapsed    time.Duration  // wall time spent processing, from the Clock
	Commit     time.Duration  // wall time of the batch's commits (source, then state), shared by its partitions
	// EvalSamples times the rule evaluation of one event in 64.
	EvalSamples []time.Duration
	Offset      int64 // next offset after the batch
	MaxTS       int64 // largest event time seen, epoch ms
	Version     int64 // rule set version used
}
