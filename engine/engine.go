package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
}

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

type nopObserver struct{}

func (nopObserver) Observe(Stats) {}

func defaultCfg() cfg {
	return cfg{clock: systemClock{}, obs: nopObserver{}, log: slog.New(slog.DiscardHandler), keys: KeyIfPresent}
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
		if !ok {
			var err error
			if p, err = e.open(ctx, rs, k, r.Offset); err != nil {
				return err
			}
			e.parts[k] = p
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
		if e.cfg.switches && p.applied != rs && len(p.batch) > 0 {
			e.out.Applied = append(e.out.Applied, ConfigApplied{Type: "config_applied", RulesetVersion: rs.Version, RulesetSHA256: rs.SHA256,
				Input: rules.Input{Topic: p.key.topic, Partition: p.key.partition, Offset: p.batch[0].Offset}})
			p.applied = rs
		}
		e.out.Decisions = append(e.out.Decisions, p.out.Decisions...)
		e.out.Proposals = append(e.out.Proposals, p.out.Proposals...)
		e.out.Verdicts = append(e.out.Verdicts, p.out.Verdicts...)
		e.out.DeadLetters = append(e.out.DeadLetters, p.out.DeadLetters...)
		e.out.Errors = append(e.out.Errors, p.out.Errors...)
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

// open loads a partition's state and, when its first record lies past the
// committed state and the source can replay, brings the state up to that
// record without writing output.
func (e *Engine) open(ctx context.Context, rs *rules.RuleSet, k partKey, first int64) (*partition, error) {
	st, err := e.store.Partition(k.topic, k.partition)
	if err != nil {
		return nil, fmt.Errorf("engine: partition %s/%d: %w", k.topic, k.partition, err)
	}
	p := &partition{key: k, st: st, stage: 1, next: st.Offset()}
	switch {
	case e.cfg.proposalTopics[k.topic]:
		p.stage = 2
	case e.cfg.relayTopics[k.topic]:
		p.stage = 0
	}
	rp, ok := e.src.(Replayer)
	if !ok || first <= max(p.next, 0) {
		return p, nil
	}
	if p.stage == 0 {
		// A relay keeps no state: nothing to rebuild.
		p.next = first
		return p, p.st.Commit(p.next)
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
	err = rp.Replay(rctx, k.topic, k.partition, p.next, first, func(recs []Record) error {
		if replayed == 0 && from >= 0 && len(recs) > 0 && recs[0].Offset > from {
			e.cfg.log.Warn("the log no longer holds records the state needs (retention?): the rebuilt state misses them",
				"topic", k.topic, "partition", k.partition, "from", from, "first_available", recs[0].Offset)
		}
		p.batch = p.batch[:0]
		for i := range recs {
			p.batch = append(p.batch, &recs[i])
		}
		p.process(rs, e.cfg)
		replayed += len(recs)
		if p.err != nil {
			return p.err
		}
		// Keep the progress: a rebuild cut short goes on from here.
		return p.st.Commit(p.next)
	})
	if err != nil {
		return nil, fmt.Errorf("engine: replay %s/%d [%d, %d): %w", k.topic, k.partition, from, first, err)
	}
	e.cfg.log.Info("rebuilt partition state", "topic", k.topic, "partition", k.partition, "records", replayed)
	// Nothing of the replay is written: its output was committed before.
	p.batch = p.batch[:0]
	p.next = max(p.next, first)
	if err := p.st.Commit(p.next); err != nil {
		return nil, err
	}
	return p, nil
}

// partition is the worker state of one input partition.
type partition struct {
	key   partKey
	st    PartitionState
	stage int
	next  int64 // offset of the next record to apply; -1 before the first

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
	}
	for _, r := range p.batch {
		if r.Offset < p.next {
			continue // already applied before a restart: effectively once
		}
		p.stats.Records++
		in := rules.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
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
	p.stats.Proposals += len(p.res.Proposals)
	p.out.Decisions = append(p.out.Decisions, p.res.Decisions...)
	p.out.Proposals = append(p.out.Proposals, p.res.Proposals...)
	p.out.Errors = append(p.out.Errors, p.res.Errors...)
	return nil
}

func (p *partition) proposal(r *Record, in rules.Input, c cfg) error {
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
	st, err := p.st.Account(prop.AccountID)
	if err != nil {
		return err
	}
	v := p.rs.Check(&prop, st)
	p.stats.MaxTS = max(p.stats.MaxTS, int64(prop.TS))
	key := v.Status
	if v.Reason != "" {
		key += "/" + v.Reason
	}
	p.stats.Verdicts[key]++
	p.out.Verdicts = append(p.out.Verdicts, v)
	return nil
}

// relay validates an external proposal and passes it on to stage 2.
func (p *partition) relay(r *Record, in rules.Input, c cfg) error {
	prop, err := rules.DecodeProposal(r.Value)
	if err != nil {
		return &badRecord{err.Error()}
	}
	if why := c.checkKey(r.Key, prop.AccountID, "account_id"); why != "" {
		return &badRecord{why}
	}
	prop.Input = &in
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
