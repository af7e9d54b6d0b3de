package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adrules/adrules/rules"
)

// Engine runs the rules over the records of a Source, one goroutine per
// partition, and writes what they produce to a Sink. Records of topics named
// by WithProposalTopics are action proposals for the guards (stage 2); all
// others are metric events (stage 1).
type Engine struct {
	cfg   cfg
	src   Source
	sink  Sink
	store Store
	rs    atomic.Pointer[rules.RuleSet]
	parts map[partKey]*partition
	out   Output
	// runCtx is Run's context: a rebuild stops when it ends, while a batch
	// that started always finishes.
	runCtx context.Context
}

type partKey struct {
	topic     string
	partition int32
}

// Opt configures New.
type Opt interface{ apply(*cfg) }

type cfg struct {
	clock          Clock
	obs            Observer
	log            *slog.Logger
	proposalTopics map[string]bool
	relayTopics    map[string]bool
	keys           KeyCheck
	switches       bool
	history        History
	partitioner    func(topic string, key []byte) int32
	parallel       int
	orderLag       time.Duration
}

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

type nopObserver struct{}

func (nopObserver) Observe(Stats) {}

func defaultCfg() cfg {
	return cfg{clock: systemClock{}, obs: nopObserver{}, log: slog.New(slog.DiscardHandler), keys: KeyIfPresent, parallel: 4, orderLag: DefaultOrderLag}
}

// WithClock sets the wall clock used for elapsed-time stats, overriding the
// default system clock. Decisions never read it.
func WithClock(c Clock) Opt { return optFunc(func(cf *cfg) { cf.clock = c }) }

// WithObserver sets who receives each batch's Stats, overriding the default
// of nobody.
func WithObserver(o Observer) Opt { return optFunc(func(cf *cfg) { cf.obs = o }) }

// WithLogger sets the logger, overriding the default that discards.
func WithLogger(l *slog.Logger) Opt { return optFunc(func(cf *cfg) { cf.log = l }) }

// WithProposalTopics names the topics whose records are action proposals
// (stage 2). Default: none.
func WithProposalTopics(topics ...string) Opt {
	return optFunc(func(cf *cfg) {
		for _, t := range topics {
			cf.proposalTopics[t] = true
		}
	})
}

// WithRelayTopics names the topics whose records are external proposals to
// validate and pass on as Output.Proposals, so that stage 2 reads one log
// per account. Default: none.
func WithRelayTopics(topics ...string) Opt {
	return optFunc(func(cf *cfg) {
		for _, t := range topics {
			cf.relayTopics[t] = true
		}
	})
}

// WithSwitchRecords makes the engine write a ConfigApplied record in
// Output.Applied whenever a partition starts using a rule set version
// (after a swap, and when the partition is opened). Default off.
func WithSwitchRecords() Opt { return optFunc(func(cf *cfg) { cf.switches = true }) }

// WithHistory makes rebuilds replay each record under the rule set version
// that processed it (History), so a rebuilt state equals the state the
// partition had. Default: none, rebuilds use the rule set in force (right
// for a pipeline that only ever ran one version, such as a shadow's).
func WithHistory(h History) Opt { return optFunc(func(cf *cfg) { cf.history = h }) }

// WithPartitioner names the partition a metric event's key belongs to (-1
// when it cannot tell): a record on another partition is not processed
// there but rerouted (Output.Reroutes), so one ad's state never lives in two
// partitions whatever partitioner a producer used. Default: none, every
// record is processed where it lies (files, and partitionings the engine
// cannot know).
func WithPartitioner(f func(topic string, key []byte) int32) Opt {
	return optFunc(func(cf *cfg) { cf.partitioner = f })
}

// DefaultOrderLag is how far in event time an idle source partition may
// lie behind the others and still hold stage 2 back (rules.Queue.Lag).
const DefaultOrderLag = 2 * time.Hour

// WithOrderLag sets rules.Queue.Lag, overriding DefaultOrderLag.
func WithOrderLag(d time.Duration) Opt { return optFunc(func(cf *cfg) { cf.orderLag = d }) }

// WithRestoreParallelism sets how many partitions are restored at once
// when they are assigned (Assigner), overriding the default 4.
func WithRestoreParallelism(n int) Opt { return optFunc(func(cf *cfg) { cf.parallel = n }) }

// KeyCheck says what the engine requires of a record's key: a metric event
// is keyed by its ad_id, a proposal by its account_id, so that an ad's (or
// account's) state lives in one partition.
type KeyCheck int

const (
	// KeyIfPresent refuses a record whose key is not its ad (or account);
	// a record without a key is accepted. The default.
	KeyIfPresent KeyCheck = iota
	// KeyRequired also refuses a record without a key: on a topic of several
	// partitions it may land anywhere and split an ad's state. Kafka nodes
	// use it.
	KeyRequired
	// KeyIgnored checks nothing: files have no keys.
	KeyIgnored
)

// WithKeyCheck sets what the engine requires of record keys, overriding the
// default KeyIfPresent.
func WithKeyCheck(k KeyCheck) Opt { return optFunc(func(cf *cfg) { cf.keys = k }) }

// checkKey returns why a record's key is refused, or "".
func (c *cfg) checkKey(key []byte, want, field string) string {
	switch {
	case c.keys == KeyIgnored:
	case len(key) == 0 && c.keys == KeyRequired:
		return fmt.Sprintf("record has no key: it must be keyed by its %s (%q), or it may land on any partition", field, want)
	case len(key) > 0 && string(key) != want:
		return fmt.Sprintf("record key %q is not the record's %s %q: records are keyed by %s", key, field, want, field)
	}
	return ""
}

// New returns an Engine that runs rs. None of src, sink or store may be nil.
func New(rs *rules.RuleSet, src Source, sink Sink, store Store, opts ...Opt) (*Engine, error) {
	c := defaultCfg()
	c.proposalTopics, c.relayTopics = map[string]bool{}, map[string]bool{}
	for _, o := range opts {
		o.apply(&c)
	}
	switch {
	case rs == nil:
		return nil, errors.New("engine: no rule set")
	case src == nil || sink == nil || store == nil:
		return nil, errors.New("engine: source, sink and store are required")
	case c.clock == nil || c.obs == nil || c.log == nil:
		return nil, errors.New("engine: clock, observer and logger must not be nil")
	case c.parallel < 1:
		return nil, errors.New("engine: restore parallelism must be at least 1")
	}
	e := &Engine{cfg: c, src: src, sink: sink, store: store, parts: map[partKey]*partition{}}
	e.rs.Store(rs)
	return e, nil
}

// Swap makes rs the rule set of every batch that starts after it returns.
// A batch never mixes two rule sets.
func (e *Engine) Swap(rs *rules.RuleSet) { e.rs.Store(rs) }

// RuleSet returns the rule set in force.
func (e *Engine) RuleSet() *rules.RuleSet { return e.rs.Load() }

// Run processes batches until the source is drained (it returns nil) or ctx
// ends or something fails.
func (e *Engine) Run(ctx context.Context) error {
	e.runCtx = ctx
	defer func() { e.runCtx = nil }()
	for {
		recs, err := e.src.Poll(ctx)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, ErrReset):
			e.Reset()
			if err := e.restore(ctx); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		// A batch that started finishes: output, commits and all, even
		// when ctx ends meanwhile (SIGTERM finishes the current batch).
		if err := e.Process(context.WithoutCancel(ctx), recs); err != nil {
			return err
		}
	}
}

// Reset forgets every partition's in-memory state; the next batch reloads
// it from the Store.
func (e *Engine) Reset() { clear(e.parts) }

// Process runs one batch: each partition's records in order, the partitions
// in parallel; then it writes the output (partitions in topic and partition
// order), commits the source, and then commits each partition's state with
// its next offset. The state is committed last so it never runs ahead of the
// output: after a crash between the two, the engine replays the gap (see
// Replayer).
func (e *Engine) Process(ctx context.Context, recs []Record) error {
	rs := e.rs.Load()
	var order []*partition
	for i := range recs {
		r := &recs[i]
		k := partKey{r.Topic, r.Partition}
		p, ok := e.parts[k]
		switch {
		case !ok:
			var err error
			if p, err = e.open(ctx, rs, k, r.Offset); err != nil {
				return err
			}
			e.parts[k] = p
		case p.restored:
			// Restored at its assignment, to where the group said it
			// resumes: its first records may still lie past that (an
			// offset read before another node's last commit landed, or
			// none at all), and then the gap is replayed now.
			p.restored = false
			if err := e.rebuild(ctx, rs, p, r.Offset); err != nil {
				return err
			}
		}
		if len(p.batch) == 0 {
			order = append(order, p)
		}
		p.batch = append(p.batch, r)
	}
	slices.SortFunc(order, func(a, b *partition) int {
		return cmp.Or(cmp.Compare(a.key.topic, b.key.topic), cmp.Compare(a.key.partition, b.key.partition))
	})
	var wg sync.WaitGroup
	for _, p := range order {
		wg.Go(func() { p.process(rs, e.cfg) })
	}
	wg.Wait()
	e.out.reset()
	for _, p := range order {
		if p.err != nil {
			return p.err
		}
		if e.cfg.switches && p.applied != rs && p.first >= 0 {
			// From the first record the version applied to: records of
			// the batch skipped as already applied ran under another.
			e.out.Applied = append(e.out.Applied, ConfigApplied{Type: TypeConfigApplied, RulesetVersion: rs.Version, RulesetSHA256: rs.SHA256,
				Input: rules.Input{Topic: p.key.topic, Partition: p.key.partition, Offset: p.first}})
			p.applied = rs
		}
		e.out.Decisions = append(e.out.Decisions, p.out.Decisions...)
		e.out.Proposals = append(e.out.Proposals, p.out.Proposals...)
		e.out.Verdicts = append(e.out.Verdicts, p.out.Verdicts...)
		e.out.DeadLetters = append(e.out.DeadLetters, p.out.DeadLetters...)
		e.out.Errors = append(e.out.Errors, p.out.Errors...)
		e.out.Reroutes = append(e.out.Reroutes, p.out.Reroutes...)
		if p.stage != 2 && p.evTime > p.marked {
			// The source's progress, after its proposals: stage 2 judges
			// what lies before the slowest source's.
			e.out.Progress = append(e.out.Progress, rules.Progress{Topic: p.key.topic, Partition: p.key.partition, At: p.evTime})
			p.marked = p.evTime
		}
	}
	if err := e.sink.Write(ctx, &e.out); err != nil {
		return fmt.Errorf("engine: write output: %w", err)
	}
	commitStart := e.cfg.clock.Now()
	if err := e.src.Commit(ctx); err != nil {
		if errors.Is(err, ErrReset) {
			e.Reset()
			return nil
		}
		return err
	}
	for _, p := range order {
		if err := p.st.Commit(p.next); err != nil {
			return fmt.Errorf("engine: commit %s/%d: %w", p.key.topic, p.key.partition, err)
		}
	}
	commit := e.cfg.clock.Now().Sub(commitStart)
	for _, p := range order {
		p.stats.Commit = commit
		e.cfg.obs.Observe(p.stats)
		p.batch = p.batch[:0]
	}
	return nil
}

// restore restores every partition the source says it holds, in parallel,
// before the engine processes anything (Assigner): each is brought up to
// where its consumption resumes. A source that cannot say restores lazily,
// when a partition's first records arrive.
func (e *Engine) restore(ctx context.Context) error {
	a, ok := e.src.(Assigner)
	if !ok {
		return nil
	}
	list, err := a.Assigned(ctx)
	if err != nil {
		return fmt.Errorf("engine: assigned partitions: %w", err)
	}
	rs := e.rs.Load()
	parts := make([]*partition, len(list))
	errs := make([]error, len(list))
	sem := make(chan struct{}, e.cfg.parallel)
	var wg sync.WaitGroup
	for i, r := range list {
		k := partKey{r.Topic, r.Partition}
		if _, ok := e.parts[k]; ok {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			parts[i], errs[i] = e.open(ctx, rs, k, r.Offset)
			if parts[i] != nil {
				parts[i].restored = true
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, p := range parts {
		if p != nil {
			e.parts[partKey{list[i].Topic, list[i].Partition}] = p
		}
	}
	return nil
}

// open loads a partition's state and, when its first record lies past the
// committed state and the source can replay, brings the state up to that
// record without writing output: each record under the rule set version
// that processed it (WithHistory), else under rs. first < 0: unknown, no
// replay. It may run for several partitions at once.
func (e *Engine) open(ctx context.Context, rs *rules.RuleSet, k partKey, first int64) (*partition, error) {
	st, err := e.store.Partition(k.topic, k.partition)
	if err != nil {
		return nil, fmt.Errorf("engine: partition %s/%d: %w", k.topic, k.partition, err)
	}
	p := &partition{key: k, st: st, stage: 1, next: st.Offset(), evTime: st.EventTime(), marked: math.MinInt64, lag: e.cfg.orderLag}
	switch {
	case e.cfg.proposalTopics[k.topic]:
		p.stage = 2
	case e.cfg.relayTopics[k.topic]:
		p.stage = 0
	}
	if err := e.rebuild(ctx, rs, p, first); err != nil {
		return nil, err
	}
	if ro, ok := e.cfg.obs.(RestoreObserver); ok {
		ro.Restored(k.topic, k.partition)
	}
	return p, nil
}

func (e *Engine) rebuild(ctx context.Context, rs *rules.RuleSet, p *partition, first int64) error {
	k := p.key
	rp, ok := e.src.(Replayer)
	if !ok || first <= max(p.next, 0) {
		return nil
	}
	rctx := ctx
	if e.runCtx != nil {
		rctx = e.runCtx
	}
	e.cfg.log.Info("rebuilding partition state", "topic", k.topic, "partition", k.partition, "from", p.next, "to", first)
	if ro, ok := e.cfg.obs.(RebuildObserver); ok {
		ro.Rebuilding(k.topic, k.partition, false)
		defer ro.Rebuilding(k.topic, k.partition, true)
	}
	replayed, from := 0, p.next
	// The rule set of the records being replayed, and the offset from which
	// another one processed them (-1: none known).
	var cur *rules.RuleSet
	until := int64(-2)
	var versions []int64
	err := rp.Replay(rctx, k.topic, k.partition, p.next, first, func(recs []Record) error {
		if replayed == 0 && from >= 0 && len(recs) > 0 && recs[0].Offset > from {
			e.cfg.log.Warn("the log no longer holds records the state needs (retention?): the rebuilt state misses them",
				"topic", k.topic, "partition", k.partition, "from", from, "first_available", recs[0].Offset)
		}
		for len(recs) > 0 {
			if e.cfg.history != nil && (until == -2 || until >= 0 && recs[0].Offset >= until) {
				h, next, err := e.cfg.history.RuleSetAt(rctx, k.topic, k.partition, recs[0].Offset)
				if err != nil {
					return fmt.Errorf("the rule set that processed offset %d: %w", recs[0].Offset, err)
				}
				if next >= 0 && next <= recs[0].Offset {
					next = -1 // a history that goes back: trust it no further
				}
				cur, until = h, next
				if cur != nil && (len(versions) == 0 || versions[len(versions)-1] != cur.Version) {
					versions = append(versions, cur.Version)
				}
			}
			use, n := rs, len(recs)
			if cur != nil {
				use = cur
			}
			if until >= 0 {
				n = 0
				for n < len(recs) && recs[n].Offset < until {
					n++
				}
				if n == 0 { // past the switch point: look again
					until = -2
					continue
				}
			}
			p.batch = p.batch[:0]
			for i := range recs[:n] {
				p.batch = append(p.batch, &recs[i])
			}
			p.process(use, e.cfg)
			replayed += n
			if p.err != nil {
				return p.err
			}
			recs = recs[n:]
		}
		// Keep the progress: a rebuild cut short goes on from here.
		return p.st.Commit(p.next)
	})
	if err != nil {
		return fmt.Errorf("engine: replay %s/%d [%d, %d): %w", k.topic, k.partition, from, first, err)
	}
	e.cfg.log.Info("rebuilt partition state", "topic", k.topic, "partition", k.partition, "records", replayed, "versions", versions)
	// Nothing of the replay is written: its output was committed before.
	p.batch = p.batch[:0]
	p.out.reset()
	p.next = max(p.next, first)
	return p.st.Commit(p.next)
}

// partition is the worker state of one input partition.
type partition struct {
	key   partKey
	st    PartitionState
	stage int
	next  int64 // offset of the next record to apply; -1 before the first
	// evTime is the largest event time read (stages 0 and 1), marked the
	// last one written as the partition's progress (Output.Progress).
	evTime, marked int64
	queue          *rules.Queue // stage 2, loaded on first use
	// restored: opened at its assignment and no record seen since.
	restored bool
	first    int64         // the first record the last process applied, -1: none
	lag      time.Duration // rules.Queue.Lag

	rs      *rules.RuleSet
	applied *rules.RuleSet // the version last recorded as applied
	eval    *rules.Evaluator
	dec     rules.Decoder
	ev      rules.Event
	res     rules.Result
	batch   []*Record
	out     Output
	stats   Stats
	err     error
}

func (p *partition) process(rs *rules.RuleSet, c cfg) {
	start := c.clock.Now()
	p.out.reset()
	p.err = nil
	p.stats = Stats{
		Topic: p.key.topic, Partition: p.key.partition, Stage: p.stage, Version: rs.Version,
		Decisions: map[string]int{}, Verdicts: map[string]int{}, RuleErrors: map[string]int{},
	}
	if p.rs != rs {
		p.rs, p.eval = rs, rs.NewEvaluator()
		if ev, ok := p.st.(Evicter); ok {
			ev.EvictAfter(rs.KeepMS(), rs.AccountKeepMS())
		}
	}
	evTime := p.evTime
	p.first = -1
	for _, r := range p.batch {
		if r.Offset < p.next {
			continue // already applied before a restart: effectively once
		}
		if p.first < 0 {
			p.first = r.Offset
		}
		p.stats.Records++
		in := rules.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
		if p.stage == 1 && c.partitioner != nil && len(r.Key) > 0 {
			if want := c.partitioner(r.Topic, r.Key); want >= 0 && want != r.Partition {
				// Produced with another partitioner: its ad belongs
				// elsewhere. It goes there, and changes nothing here.
				p.stats.Rerouted++
				p.out.Reroutes = append(p.out.Reroutes, Reroute{From: in, Key: r.Key, Value: r.Value})
				p.next = r.Offset + 1
				continue
			}
		}
		var err error
		switch p.stage {
		case 0:
			err = p.relay(r, in, c)
		case 1:
			err = p.event(r, in, c)
		default:
			err = p.proposal(r, in, c)
		}
		if err != nil {
			var bad *badRecord
			if !errors.As(err, &bad) {
				p.err = err
				return
			}
			p.stats.Rejected++
			p.out.DeadLetters = append(p.out.DeadLetters, DeadLetter{Input: in, Key: r.Key, Value: r.Value, Reason: bad.reason})
		}
		p.next = r.Offset + 1
	}
	if p.evTime != evTime {
		p.st.SetEventTime(p.evTime)
	}
	if p.queue != nil {
		p.stats.Queued = p.queue.Len()
	}
	p.stats.Offset = p.next
	p.stats.Elapsed = c.clock.Now().Sub(start)
}

// evalSampleEvery: one evaluation in this many is timed for Stats, so the
// latency histogram costs two clock reads per that many events.
const evalSampleEvery = 64

// badRecord is an input record that goes to the dead-letter output.
type badRecord struct{ reason string }

func (b *badRecord) Error() string { return b.reason }

func (p *partition) event(r *Record, in rules.Input, c cfg) error {
	ev := &p.ev
	if err := p.dec.Decode(r.Value, ev); err != nil {
		return &badRecord{err.Error()}
	}
	if why := c.checkKey(r.Key, ev.AdID, "ad_id"); why != "" {
		return &badRecord{why}
	}
	st, err := p.st.Ad(ev.AdID)
	if err != nil {
		return err
	}
	// Too late is decided before duplicate: whether an id that old is still
	// remembered depends on when expiry ran, and the result must not.
	if st.TooLate(ev, p.rs.HorizonMS()) {
		return &badRecord{fmt.Sprintf("too late: ts %s is more than the dedupe horizon (%s) behind the ad's newest event %s",
			rules.FormatTime(ev.TS), time.Duration(p.rs.HorizonMS())*time.Millisecond, rules.FormatTime(st.MaxTS))}
	}
	h := rules.IDHash(ev.EventID)
	if st.Duplicate(ev, h) {
		p.stats.Duplicates++
		return nil
	}
	st.Apply(ev, h, p.rs.KeepMS(), p.rs.HorizonMS())
	p.evTime = max(p.evTime, ev.TS)
	p.stats.MaxTS = max(p.stats.MaxTS, ev.TS)
	p.res.Reset()
	if p.stats.Records%evalSampleEvery == 1 {
		t0 := c.clock.Now()
		p.eval.Eval(st, ev, in, &p.res)
		p.stats.EvalSamples = append(p.stats.EvalSamples, c.clock.Now().Sub(t0))
	} else {
		p.eval.Eval(st, ev, in, &p.res)
	}
	for i := range p.res.Decisions {
		p.stats.Decisions[p.res.Decisions[i].RuleID]++
	}
	for i := range p.res.Errors {
		p.stats.RuleErrors[p.res.Errors[i].RuleID]++
	}
	for i := range p.res.Proposals {
		p.res.Proposals[i].Order = &rules.Order{At: p.evTime, Seq: i}
	}
	p.stats.Proposals += len(p.res.Proposals)
	p.out.Decisions = append(p.out.Decisions, p.res.Decisions...)
	p.out.Proposals = append(p.out.Proposals, p.res.Proposals...)
	p.out.Errors = append(p.out.Errors, p.res.Errors...)
	return nil
}

// proposal takes one record of stage 2's input: a source's progress, or a
// proposal, which waits in the partition's queue for its turn (or, late,
// is judged at once); then it judges every proposal whose turn has come.
func (p *partition) proposal(r *Record, in rules.Input, c cfg) error {
	q, err := p.loadQueue()
	if err != nil {
		return err
	}
	if rules.IsProgress(r.Value) {
		m, err := rules.DecodeProgress(r.Value)
		if err != nil {
			return &badRecord{err.Error()}
		}
		q.Progress(m)
		return p.release(q)
	}
	prop, err := rules.DecodeProposal(r.Value)
	if err != nil {
		return &badRecord{err.Error()}
	}
	if why := c.checkKey(r.Key, prop.AccountID, "account_id"); why != "" {
		return &badRecord{why}
	}
	if prop.Input == nil {
		prop.Input = &in
	}
	if q.Add(prop) {
		if prop.Order != nil {
			p.stats.Late++
		}
		if err := p.judge(&prop); err != nil {
			return err
		}
	}
	return p.release(q)
}

func (p *partition) loadQueue() (*rules.Queue, error) {
	if p.queue == nil {
		q, err := p.st.Queue()
		if err != nil {
			return nil, err
		}
		q.Lag = p.lag.Milliseconds()
		p.queue = q
	}
	return p.queue, nil
}

// release judges the proposals whose turn has come, in order.
func (p *partition) release(q *rules.Queue) error {
	for _, prop := range q.Ready() {
		if err := p.judge(&prop); err != nil {
			return err
		}
	}
	return nil
}

// judge applies the guards to one proposal.
func (p *partition) judge(prop *rules.Proposal) error {
	st, err := p.st.Account(prop.AccountID)
	if err != nil {
		return err
	}
	v := p.rs.Check(prop, st)
	p.stats.MaxTS = max(p.stats.MaxTS, int64(prop.TS))
	key := v.Status
	if v.Reason != "" {
		key += "/" + v.Reason
	}
	p.stats.Verdicts[key]++
	p.out.Verdicts = append(p.out.Verdicts, v)
	return nil
}

// relay validates an external proposal and passes it on to stage 2, placed
// in stage 2's order by the event time its partition has reached.
func (p *partition) relay(r *Record, in rules.Input, c cfg) error {
	prop, err := rules.DecodeProposal(r.Value)
	if err != nil {
		return &badRecord{err.Error()}
	}
	if why := c.checkKey(r.Key, prop.AccountID, "account_id"); why != "" {
		return &badRecord{why}
	}
	p.evTime = max(p.evTime, int64(prop.TS))
	prop.Input = &in
	prop.Order = &rules.Order{At: p.evTime, Ext: true}
	p.stats.Proposals++
	p.out.Proposals = append(p.out.Proposals, prop)
	return nil
}

// StoreFunc adapts a function to Store.
type StoreFunc func(topic string, partition int32) (PartitionState, error)

// Partition calls f.
func (f StoreFunc) Partition(topic string, partition int32) (PartitionState, error) {
	return f(topic, partition)
}
