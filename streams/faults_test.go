package streams_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The tests of this file drive the commit protocol of streams/doc.go through
// its failure paths on Kafka: a node crashes at each step of a batch in
// turn, a transaction cannot end, a produce fails inside one, a rebalance
// lands in the middle of one, and the group's offsets go back behind the
// state. Each time, the read_committed output (decisions, proposals,
// verdicts, dead letters) must equal the file backtest's over the same
// input: nothing lost, nothing doubled.
//
// Faults are injected by wrapping the engine's ports (faultSource,
// faultSink, faultStore), so that a crash lands exactly at one step of one
// batch; faults of the broker itself (kfake.Fault) only where the protocol
// reacts to Kafka's answers.

// errCrash is what a node dies of at the step its plan names.
var errCrash = errors.New("injected crash")

// step is where in a batch's commit protocol a node crashes.
type step int

const (
	noCrash step = iota
	// beforeProduce: Sink.Write fails before producing anything; the
	// batch's transaction is begun and holds nothing.
	beforeProduce
	// afterProduce: the batch's output is produced (and flushed: it lies
	// on the broker, in the open transaction), then Source.Commit fails
	// before it ends the transaction.
	afterProduce
	// afterKafkaCommit: the transaction, with the consumer offsets,
	// committed; the Pebble state did not.
	afterKafkaCommit
	// duringPebbleCommit: the transaction and the first partition's state
	// committed, the other partitions' state did not.
	duringPebbleCommit
)

func (s step) String() string {
	return [...]string{"none", "before-produce", "after-produce", "after-kafka-commit", "during-pebble-commit"}[s]
}

// plan is the faults of one node's run, shared by its wrapped ports: the
// batch it picks (at), and what happens there (step, onWrite).
type plan struct {
	step step
	// at picks the batch, by its number (from 1) and records, or atWrite
	// by its number and output; once one is picked, no other is. Nil picks
	// none.
	at      func(n int, recs []engine.Record) bool
	atWrite func(n int, out *engine.Output) bool
	// onWrite runs at the picked batch before the Sink writes; an error
	// fails the Write.
	onWrite func(ctx context.Context) error
	// onReset runs when Source.Commit returns engine.ErrReset.
	onReset func()

	mu      sync.Mutex
	batches int
	picked  bool // the current batch is the picked one
	done    bool // a batch was picked
	pebble  int  // state commits to let through before failing; -1 none armed
	crashed step
	resets  int            // Source.Commit returned engine.ErrReset
	reset   bool           // ... for the picked batch
	polled  map[string]int // records polled, by topic
	// lastDecisions are the decision ids of the last batch written, and
	// failed those of a batch whose Source.Commit failed (not ErrReset).
	lastDecisions, failed []string
}

func newPlan(s step, at func(int, []engine.Record) bool) *plan {
	return &plan{step: s, at: at, pebble: -1, polled: map[string]int{}}
}

func (p *plan) crash(s step) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashed = s
	return fmt.Errorf("%s: %w", s, errCrash)
}

// Crashed returns the step the node crashed at, noCrash if none.
func (p *plan) Crashed() step {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashed
}

// Resets returns how many batches Source.Commit reset, and whether the
// picked one was among them.
func (p *plan) Resets() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resets, p.reset
}

func (p *plan) current() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.picked
}

// faultSource is the node as the engine's Source, with the plan's faults.
// It forwards the optional capabilities the engine looks for by type
// assertion (engine.Replayer, engine.Assigner): a wrapper that hid them
// would change what it tests.
type faultSource struct {
	n *streams.Node
	p *plan
}

var (
	_ engine.Source   = (*faultSource)(nil)
	_ engine.Replayer = (*faultSource)(nil)
	_ engine.Assigner = (*faultSource)(nil)
	_ engine.Sink     = (*faultSink)(nil)
)

func (s *faultSource) Poll(ctx context.Context) ([]engine.Record, error) {
	recs, err := s.n.Poll(ctx)
	if err != nil {
		return recs, err
	}
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.batches++
	p.picked = !p.done && p.at != nil && p.at(p.batches, recs)
	p.done = p.done || p.picked
	for _, r := range recs {
		p.polled[r.Topic]++
	}
	return recs, nil
}

func (s *faultSource) Commit(ctx context.Context) error {
	p := s.p
	if p.current() && p.step == afterProduce {
		// What the batch produced reaches the broker, in the transaction
		// the crash leaves open for the next session to fence.
		if err := s.n.Client().Flush(ctx); err != nil {
			return err
		}
		return p.crash(afterProduce)
	}
	err := s.n.Commit(ctx)
	switch {
	case errors.Is(err, engine.ErrReset):
		p.mu.Lock()
		p.resets++
		p.reset = p.reset || p.picked
		f := p.onReset
		p.mu.Unlock()
		if f != nil {
			f()
		}
		return err
	case err != nil:
		p.mu.Lock()
		p.failed = p.lastDecisions
		p.mu.Unlock()
		return err
	}
	if p.current() {
		switch p.step {
		case afterKafkaCommit:
			return p.crash(afterKafkaCommit)
		case duringPebbleCommit:
			p.mu.Lock()
			p.pebble = 1
			p.mu.Unlock()
		}
	}
	return nil
}

func (s *faultSource) Replay(ctx context.Context, topic string, partition int32, from, to int64, fn func([]engine.Record) error) error {
	return s.n.Replay(ctx, topic, partition, from, to, fn)
}

func (s *faultSource) Assigned(ctx context.Context) ([]engine.Resume, error) {
	return s.n.Assigned(ctx)
}

// faultSink is the node as the engine's Sink, with the plan's faults.
type faultSink struct {
	n *streams.Node
	p *plan
}

func (s *faultSink) Write(ctx context.Context, out *engine.Output) error {
	p := s.p
	ids := make([]string, 0, len(out.Decisions))
	for _, d := range out.Decisions {
		ids = append(ids, d.DecisionID)
	}
	p.mu.Lock()
	p.lastDecisions = ids
	if !p.done && p.atWrite != nil && p.atWrite(p.batches, out) {
		p.picked, p.done = true, true
	}
	p.mu.Unlock()
	if p.current() {
		if p.onWrite != nil {
			if err := p.onWrite(ctx); err != nil {
				return err
			}
		}
		if p.step == beforeProduce {
			return p.crash(beforeProduce)
		}
	}
	return s.n.Write(ctx, out)
}

// faultStore is the Pebble state with the plan's faults: once armed, a
// partition's Commit fails after the armed number of them went through.
type faultStore struct {
	db *state.DB
	p  *plan
}

func (s *faultStore) Partition(topic string, partition int32) (engine.PartitionState, error) {
	st, err := s.db.Partition(topic, partition)
	if err != nil {
		return nil, err
	}
	return faultState{st, s.p}, nil
}

type faultState struct {
	engine.PartitionState
	p *plan
}

func (s faultState) Commit(next int64) error {
	p := s.p
	p.mu.Lock()
	fail := false
	switch {
	case p.pebble > 0:
		p.pebble--
	case p.pebble == 0:
		p.pebble, fail = -1, true
	}
	p.mu.Unlock()
	if fail {
		return p.crash(duringPebbleCommit)
	}
	return s.PartitionState.Commit(next)
}

// watcher observes a node's engine: the rebuilds it ran and what it
// processed.
type watcher struct {
	mu       sync.Mutex
	rebuilds map[string]int // rebuilds begun, by topic
	records  map[int]int    // records processed (not skipped), by stage
}

func newWatcher() *watcher { return &watcher{rebuilds: map[string]int{}, records: map[int]int{}} }

var _ engine.RebuildObserver = (*watcher)(nil)

func (w *watcher) Observe(s engine.Stats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.records[s.Stage] += s.Records
}

func (w *watcher) Rebuilding(topic string, _ int32, done bool) {
	if done {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rebuilds[topic]++
}

func (w *watcher) Rebuilds(topic string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rebuilds[topic]
}

func (w *watcher) Records(stage int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.records[stage]
}

// cluster is where a test's nodes run.
type cluster struct {
	addrs  []string
	topics streams.Topics
	group  string
	rs     *rules.RuleSet
}

func newCluster(t *testing.T, addrs []string, topics streams.Topics) *cluster {
	t.Helper()
	kafkatest.Setup(t, addrs, topics)
	// The topics' prefix keeps the group (and the transactional ids) of a
	// test on a shared cluster ($KAFKA_BROKERS) its own.
	return &cluster{addrs: addrs, topics: topics, group: "faults-" + topics.Metrics, rs: faultRules(t)}
}

// faultRules are the default rules with thresholds low enough that a short
// history makes many decisions and proposals of the rules' own.
func faultRules(t *testing.T) *rules.RuleSet {
	t.Helper()
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("examples/rules.yaml", data, config.Options{Vars: map[string]string{
		"ADRULES__PARAMS__WINNER_DETECTION__MIN_IMPRESSIONS": "100",
		"ADRULES__PARAMS__WINNER_DETECTION__MIN_HOURS_LIVE":  "4",
		"ADRULES__PARAMS__WINNER_DETECTION__CTR_THRESHOLD":   "0.02",
		"ADRULES__PARAMS__SCALING__MIN_ROAS_24H":             "1.5",
		"ADRULES__PARAMS__SCALING__MIN_SPEND_6H":             "5",
	}})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// faultNode is one run of a node: Pebble, streams.Node and engine, with a
// plan's faults on its ports.
type faultNode struct {
	sn     *streams.Node
	db     *state.DB
	p      *plan
	w      *watcher
	cancel context.CancelFunc
	done   chan error
	exited bool // the engine returned (died took its error)
	down   bool // torn down
}

const (
	commitTimeout = 2 * time.Second
	waitLong      = 2 * time.Minute
)

// start runs a node until it fails or is stopped. onAssigned, when set, hears
// of its assignments.
func (c *cluster) start(t *testing.T, id, dir string, p *plan, onAssigned func(map[string][]int32)) *faultNode {
	t.Helper()
	if p == nil {
		p = newPlan(noCrash, nil)
	}
	db, err := state.Open(dir, state.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := streams.NewNode(streams.Options{Brokers: c.addrs, Group: c.group, NodeID: id, Topics: c.topics,
		CommitTimeout: commitTimeout, SessionTimeout: 6 * time.Second, IdleAfter: time.Second, OnAssigned: onAssigned,
		ClientOpts: []kgo.Opt{kgo.HeartbeatInterval(500 * time.Millisecond),
			// Small fetches of each partition make many small batches that
			// mix partitions. The fetch as a whole is never cut short:
			// kfake leaves out the aborted transactions of a partition
			// whose records a fetch's MaxBytes cuts off (01_fetch.go,
			// `break full` skips the AbortedTransactions lookup), and a
			// read_committed consumer then reads aborted records.
			kgo.FetchMaxPartitionBytes(4 << 10), kgo.FetchMaxBytes(16 << 20)}})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	w := newWatcher()
	eng, err := engine.New(c.rs, &faultSource{sn, p}, &faultSink{sn, p}, &faultStore{db, p},
		engine.WithProposalTopics(c.topics.Proposals), engine.WithRelayTopics(c.topics.Actions),
		engine.WithKeyCheck(engine.KeyRequired), engine.WithSwitchRecords(), engine.WithPartitioner(sn.PartitionOf),
		engine.WithObserver(w))
	if err != nil {
		sn.Close()
		db.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &faultNode{sn: sn, db: db, p: p, w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- eng.Run(ctx) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// died waits for the node's engine to fail and returns why; it fails the
// test if it runs on past the deadline.
func (n *faultNode) died(t *testing.T) error {
	t.Helper()
	select {
	case err := <-n.done:
		n.exited = true
		if err == nil {
			t.Fatal("the engine stopped without an error")
		}
		return err
	case <-time.After(waitLong):
		t.Fatalf("the node did not fail within %s", waitLong)
		return nil
	}
}

// kill tears a dead node down as a crash would: no group leave, the
// transaction left open for the next session of its transactional id to
// fence, the state closed with only what was committed.
func (n *faultNode) kill() {
	n.sn.Kill()
	n.db.Close()
	n.down = true
}

// stop stops a running node cleanly (its engine must not have failed).
func (n *faultNode) stop(t *testing.T) {
	if n.down {
		return
	}
	n.down = true
	n.cancel()
	if !n.exited {
		select {
		case err := <-n.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("node: %v", err)
			}
		case <-time.After(waitLong):
			t.Errorf("the node did not stop within %s", waitLong)
		}
	}
	n.sn.Close()
	n.db.Close()
}

// input is what a test produces before any node starts, and what the file
// backtest of the same lines wrote.
type input struct {
	events   [][]byte // metric events, keyed by ad_id: a few malformed, some duplicates
	actions  [][]byte // external proposals, keyed by account_id: a few malformed
	wrongKey []byte   // a good event, produced keyed by another ad: refused
	want     kafkatest.Outputs
}

const wrongKey = "not-its-ad"

func newInput(t *testing.T, rs *rules.RuleSet, seed uint64) *input {
	t.Helper()
	t.Logf("seed %d", seed)
	const accounts, ads = 4, 15
	span := 72 * time.Hour
	in := &input{events: kafkatest.History(t, seed, gen.Options{Accounts: accounts, AdsPerAccount: ads, Duration: span, BadPct: 1, DupPct: 2})}
	var b bytesBuffer
	if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: seed, Accounts: accounts, AdsPerAccount: ads, Duration: span, Count: 400}); err != nil {
		t.Fatal(err)
	}
	in.actions = b.lines()
	var first struct {
		AccountID string `json:"account_id"`
	}
	if err := json.Unmarshal(in.actions[0], &first); err != nil {
		t.Fatal(err)
	}
	acct := first.AccountID
	in.actions = append(in.actions,
		[]byte(`{"action_id":"ext-broken","ts":"2026-11-01T05:00:00Z","account_id":`),
		fmt.Appendf(nil, `{"action_id":"ext-no-ts","account_id":%q,"ad_id":"x","type":"pause"}`, acct),
		fmt.Appendf(nil, `{"action_id":"ext-neg","ts":"2026-11-01T09:00:00Z","account_id":%q,"ad_id":"x","type":"budget_change","old_budget":10,"new_budget":-5}`, acct),
	)
	// A good event from the middle of the history, keyed by another ad.
	var dec rules.Decoder
	var ev rules.Event
	for _, l := range in.events[len(in.events)/2:] {
		if dec.Decode(l, &ev) == nil {
			in.wrongKey = l
			break
		}
	}
	if in.wrongKey == nil {
		t.Fatal("no good event in the second half of the history")
	}
	// The node refuses the wrong-key event (its key is not its ad) and it
	// changes nothing there; a file has no keys, so the backtest must not
	// see it.
	in.want = kafkatest.BacktestAll(t, rs, in.events, in.actions)
	s := in.want.Summary
	t.Logf("%d events, %d actions: %d decisions, %d rule proposals, %d external, %d verdicts, %d dead letters (%d bad actions)",
		len(in.events), len(in.actions), len(in.want.Decisions), s.Proposals, s.External, len(in.want.Verdicts), len(in.want.DLQ), s.BadActions)
	if len(in.want.Decisions) == 0 || s.Proposals == 0 || s.External == 0 || s.Rejected == 0 || s.BadActions == 0 || s.Duplicates == 0 {
		t.Fatalf("the input exercises too little: %+v", s)
	}
	return in
}

// produce writes the input in small producer batches, so that the nodes'
// fetches (and so their batches) are small too and mix partitions of both
// source topics.
func (in *input) produce(t *testing.T, c *cluster) {
	t.Helper()
	cl := kafkatest.Client(t, c.addrs, kgo.ProducerBatchMaxBytes(2<<10))
	kafkatest.Produce(t, cl, c.topics.Metrics, "ad_id", in.events)
	kafkatest.Produce(t, cl, c.topics.Actions, "account_id", in.actions)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: c.topics.Metrics, Key: []byte(wrongKey), Value: in.wrongKey}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// mixed picks a batch numbered from or later that holds records of both
// source topics (a relay partition and a metrics one) and of at least parts
// partitions.
func (c *cluster) mixed(from, parts int) func(int, []engine.Record) bool {
	return func(n int, recs []engine.Record) bool {
		if n < from {
			return false
		}
		type tp struct {
			topic string
			p     int32
		}
		seen := map[tp]bool{}
		topics := map[string]bool{}
		for _, r := range recs {
			seen[tp{r.Topic, r.Partition}] = true
			topics[r.Topic] = true
		}
		return topics[c.topics.Metrics] && topics[c.topics.Actions] && len(seen) >= parts
	}
}

// read reads topic from its start as a read_committed consumer until it
// holds want records that keep says count (nil: all), or timeout passes
// (an error, and what came is returned); then for a moment longer, so that
// a record written twice late shows too. It returns the records keep
// counts.
func read(t *testing.T, addrs []string, topic string, want int, keep func(*kgo.Record) bool, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl := kafkatest.Client(t, addrs, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	add := func(r *kgo.Record) {
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Errorf("%s: %d records after %s, want %d", topic, len(out), timeout, want)
			return out
		}
		fs.EachRecord(add)
	}
	more, cancelMore := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelMore()
	cl.PollFetches(more).EachRecord(add)
	return out
}

// aborted returns how many records of topic lie in aborted transactions:
// those a read_uncommitted reader sees and a read_committed one does not.
func aborted(t *testing.T, addrs []string, topic string) int {
	t.Helper()
	ends, err := kadm.NewClient(kafkatest.Client(t, addrs)).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	count := func(iso kgo.IsolationLevel) int {
		// Transaction markers are kept, so that the read reaches the end
		// of every partition whatever it holds.
		cl := kafkatest.Client(t, addrs, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		left := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				left[o.Partition] = o.Offset
			}
		})
		n := 0
		for len(left) > 0 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("%s: could not read to the end", topic)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if !r.Attrs.IsControl() {
					n++
				}
				if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
					delete(left, r.Partition)
				}
			})
		}
		return n
	}
	return count(kgo.ReadUncommitted()) - count(kgo.ReadCommitted())
}

func values(recs []*kgo.Record) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

// check waits for the whole output and compares it with the backtest's:
// the exact multiset of decisions, one verdict per proposal saying what the
// backtest's says, the proposals stage 2 read (one per verdict), and the
// dead letters (the backtest's and the wrong-key event), each once.
func (in *input) check(t *testing.T, c *cluster) {
	t.Helper()
	want, topics := in.want, c.topics
	kafkatest.CaughtUp(t, c.addrs, c.group, topics, waitLong)
	// Stage 2 judges the last proposals once every source is idle: the
	// verdicts are the last output to come.
	verdicts := values(read(t, c.addrs, topics.Verdicts, len(want.Verdicts), nil, waitLong))
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, verdicts, "action_id")); len(dup) > 0 {
		t.Errorf("%d of %d verdicts written twice, e.g. %v", len(dup), len(verdicts), dup[:min(len(dup), 5)])
	} else if d := kafkatest.DiffVerdicts(kafkatest.Verdicts(t, verdicts), kafkatest.Verdicts(t, want.Verdicts), 10); d != "" {
		t.Errorf("verdicts differ from the backtest's: %s", d)
	}

	isDecision := func(r *kgo.Record) bool { return !bytes.Contains(r.Value, []byte(`"type":"config_applied"`)) }
	decisions := values(read(t, c.addrs, topics.Decisions, len(want.Decisions), isDecision, time.Minute))
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, decisions, "decision_id")); len(dup) > 0 {
		t.Errorf("%d of %d decisions written twice, e.g. %v", len(dup), len(decisions), dup[:min(len(dup), 5)])
	}
	if g, w := kafkatest.Normalize(t, decisions), kafkatest.Normalize(t, want.Decisions); !slices.Equal(g, w) {
		t.Errorf("decisions differ from the backtest's: %s", diffMultisets(g, w, 5))
	}

	var progress []*kgo.Record
	isProposal := func(r *kgo.Record) bool {
		if rules.IsProgress(r.Value) {
			progress = append(progress, r)
			return false
		}
		return true
	}
	props := values(read(t, c.addrs, topics.Proposals, want.Summary.Proposals+want.Summary.External, isProposal, time.Minute))
	if woke := idleTooSoon(t, progress); len(woke) > 0 {
		t.Errorf("sources declared idle while they had records to read: %v", woke)
	}
	ids := kafkatest.IDs(t, props, "action_id")
	wantIDs := kafkatest.IDs(t, want.Verdicts, "action_id")
	slices.Sort(ids)
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("the proposals stage 2 read are not one per verdict of the backtest: %s", diffMultisets(ids, wantIDs, 5))
	}

	dlq := read(t, c.addrs, topics.DLQ, len(want.DLQ)+1, nil, time.Minute)
	var got, exp []string
	wrong := 0
	for _, r := range dlq {
		reason := ""
		for _, h := range r.Headers {
			if h.Key == "adrules.reason" {
				reason = string(h.Value)
			}
		}
		if reason == "" {
			t.Errorf("dead letter %q has no adrules.reason", r.Value)
		}
		if string(r.Key) == wrongKey && bytes.Equal(r.Value, in.wrongKey) {
			wrong++
			if !strings.Contains(reason, "is not the record's ad_id") {
				t.Errorf("wrong-key event's reason: %q", reason)
			}
			continue
		}
		got = append(got, reason+"\n"+string(r.Value))
	}
	for _, l := range want.DLQ {
		var d struct{ Reason, Value string }
		if err := json.Unmarshal(l, &d); err != nil {
			t.Fatal(err)
		}
		exp = append(exp, d.Reason+"\n"+d.Value)
	}
	slices.Sort(got)
	slices.Sort(exp)
	if wrong != 1 || !slices.Equal(got, exp) {
		t.Errorf("dead letters: the wrong-key event %d times (want 1); the others: %s", wrong, diffMultisets(got, exp, 5))
	}
}

// idleTooSoon returns the sources that stage 2 was told were idle and
// that went on afterwards: all the input is there before a node starts,
// so a source is idle only once it is read to its end, and nothing of it
// may come after. (A progress record may repeat how far a source got,
// after a restart, say; one that goes further shows records that were
// still to read.)
func idleTooSoon(t *testing.T, progress []*kgo.Record) []string {
	t.Helper()
	type src struct {
		topic string
		p     int32
	}
	at, idle := map[src]int64{}, map[src]bool{}
	var woke []string
	for _, r := range progress {
		if r.Partition != 0 { // every partition of the topic gets the same progress
			continue
		}
		m, err := rules.DecodeProgress(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		s := src{m.Topic, m.Partition}
		switch last, ok := at[s]; {
		case m.Idle:
			idle[s] = true
		case ok && m.At <= last:
		default:
			if idle[s] {
				woke = append(woke, fmt.Sprintf("%s/%d (idle, then at %s)", s.topic, s.p, time.UnixMilli(m.At).UTC().Format(time.RFC3339)))
				idle[s] = false
			}
			at[s] = m.At
		}
	}
	return woke
}

// diffMultisets describes how two sorted string lists differ.
func diffMultisets(got, want []string, n int) string {
	count := map[string]int{}
	for _, s := range got {
		count[s]++
	}
	for _, s := range want {
		count[s]--
	}
	var extra, missing []string
	for s, c := range count {
		for ; c > 0; c-- {
			extra = append(extra, s)
		}
		for ; c < 0; c++ {
			missing = append(missing, s)
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	return fmt.Sprintf("%d vs %d; %d extra, e.g. %q; %d missing, e.g. %q",
		len(got), len(want), len(extra), extra[:min(len(extra), n)], len(missing), missing[:min(len(missing), n)])
}

// TestCrash: a node crashes at each step of a batch's commit protocol in
// turn (streams/doc.go), in a batch that mixes metric and relay
// partitions, and restarts with the same id and state directory: the
// output equals the file backtest's. After the crash between the Kafka
// commit and the Pebble commit, the restarted node replays the gap of the
// relay partition; after one within the Pebble commit, the gap of the
// partitions whose state did not commit.
func TestCrash(t *testing.T) {
	for i, s := range []step{beforeProduce, afterProduce, afterKafkaCommit, duringPebbleCommit} {
		t.Run(s.String(), func(t *testing.T) {
			addrs, topics := kafkatest.Brokers(t)
			c := newCluster(t, addrs, topics)
			in := newInput(t, c.rs, 100+uint64(i))
			in.produce(t, c)
			dir := t.TempDir()

			p := newPlan(s, c.mixed(2, 2))
			first := c.start(t, "n1", dir, p, nil)
			if err := first.died(t); !errors.Is(err, errCrash) || p.Crashed() != s {
				t.Fatalf("the node died of %v at step %s, want the injected crash at %s", err, p.Crashed(), s)
			}
			first.kill()

			again := c.start(t, "n1", dir, nil, nil)
			in.check(t, c)
			switch s {
			case afterProduce:
				// What the crash left in the open transaction was aborted
				// when the next session fenced it.
				if n := aborted(t, addrs, topics.Proposals); n == 0 {
					t.Error("no aborted record in the proposals topic: the crashed batch's output never reached the broker")
				} else {
					t.Logf("%d records of the proposals topic aborted", n)
				}
				fallthrough
			case beforeProduce:
				// Nothing of the batch committed: the state of the source
				// partitions matches the group's offsets, nothing to
				// rebuild. (The group's offset of a proposals partition
				// may lie past transaction markers the state never saw:
				// an empty "rebuild" there is harmless.)
				for _, topic := range []string{topics.Metrics, topics.Actions} {
					if n := again.w.Rebuilds(topic); n > 0 {
						t.Errorf("%d partitions of %s rebuilt after a crash before the transaction committed", n, topic)
					}
				}
			case afterKafkaCommit:
				if again.w.Rebuilds(topics.Actions) == 0 || again.w.Rebuilds(topics.Metrics) == 0 {
					t.Errorf("no gap replayed on the relay (%d) or the metrics (%d) after a crash before the Pebble commit",
						again.w.Rebuilds(topics.Actions), again.w.Rebuilds(topics.Metrics))
				}
			case duringPebbleCommit:
				// The partitions commit in topic order: the relay's
				// committed, a metrics partition's did not.
				if again.w.Rebuilds(topics.Metrics) == 0 {
					t.Error("no gap replayed after a crash within the Pebble commit")
				}
			}
		})
	}
}

// kfakeOnly skips a test that needs the in-process broker's faults.
func kfakeOnly(t *testing.T) {
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Skip("injects faults into the in-process broker")
	}
}

// newFake returns an in-process broker the test can inject faults into.
func newFake(t *testing.T) *kfake.Cluster {
	t.Helper()
	fc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	return fc
}

// TestFaultEndTxnRenews: the transaction of a batch cannot end (EndTxn
// answers CONCURRENT_TRANSACTIONS until the commit timeout): Node.Commit
// gives it up, starts a new session that fences it, and the engine
// processes the batch again. The node never stops; the output is exact.
func TestFaultEndTxnRenews(t *testing.T) {
	kfakeOnly(t)
	fc := newFake(t)
	c := newCluster(t, fc.ListenAddrs(), streams.DefaultTopics())
	in := newInput(t, c.rs, 201)
	in.produce(t, c)

	var h *kfake.FaultHandle
	var once sync.Once
	p := newPlan(noCrash, func(n int, _ []engine.Record) bool { return n >= 3 })
	p.onWrite = func(context.Context) error {
		h = fc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: c.group + "-n1", Err: kerr.ConcurrentTransactions, Count: -1})
		return nil
	}
	p.onReset = func() { once.Do(func() { h.Remove() }) }
	n := c.start(t, "n1", t.TempDir(), p, nil)
	in.check(t, c)
	n.stop(t)
	if _, reset := p.Resets(); h == nil || h.Hits() == 0 || !reset {
		t.Fatal("the batch whose transaction could not end was not given up (Commit did not return engine.ErrReset)")
	}
}

// TestFaultProduceFails: a produce inside a batch's transaction fails (the
// decisions topic answers INVALID_RECORD once): the batch's Commit aborts
// the transaction and fails, and so does the engine. The node restarts;
// the output is exact, and the decisions of the failed batch appear once.
func TestFaultProduceFails(t *testing.T) {
	kfakeOnly(t)
	fc := newFake(t)
	c := newCluster(t, fc.ListenAddrs(), streams.DefaultTopics())
	in := newInput(t, c.rs, 202)
	in.produce(t, c)
	dir := t.TempDir()

	var h *kfake.FaultHandle
	p := newPlan(noCrash, nil)
	p.atWrite = func(n int, out *engine.Output) bool { return n >= 3 && len(out.Decisions) > 0 }
	p.onWrite = func(context.Context) error {
		// The batch's produce to the decisions topic fails.
		h = fc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: c.topics.Decisions, Err: kerr.InvalidRecord, Count: 1})
		return nil
	}
	first := c.start(t, "n1", dir, p, nil)
	if err := first.died(t); !errors.Is(err, kerr.InvalidRecord) || h == nil || h.Hits() != 1 {
		t.Fatalf("the node died of %v, want the failed produce", err)
	}
	first.kill()
	p.mu.Lock()
	failed := p.failed
	p.mu.Unlock()
	if len(failed) == 0 {
		t.Fatal("the failed batch had no decisions")
	}

	c.start(t, "n1", dir, nil, nil)
	in.check(t, c)
	// What the failed batch produced besides its decisions was aborted.
	if n := aborted(t, c.addrs, c.topics.Proposals); n == 0 {
		t.Error("no aborted record in the proposals topic: the failed batch wrote nothing else")
	} else {
		t.Logf("%d records of the proposals topic aborted", n)
	}
	decisions := values(read(t, c.addrs, c.topics.Decisions, len(in.want.Decisions), nil, time.Minute))
	count := map[string]int{}
	for _, id := range kafkatest.IDs(t, decisions, "decision_id") {
		count[id]++
	}
	for _, id := range failed {
		if count[id] != 1 {
			t.Errorf("decision %s of the failed batch appears %d times", id, count[id])
		}
	}
}

// TestFaultRebalanceMidTransaction: node A is held inside a batch (in its
// Sink.Write) until node B has joined the group and been assigned
// partitions, then goes on: the rebalance revoked A's partitions in the
// middle of the transaction, which must end aborted (Commit returns
// engine.ErrReset), and the batch is processed again by whoever holds its
// partitions now. The output is exact.
func TestFaultRebalanceMidTransaction(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	c := newCluster(t, addrs, topics)
	in := newInput(t, c.rs, 203)
	in.produce(t, c)

	held := make(chan struct{})
	assigned := make(chan struct{})
	var heldOnce, assignedOnce sync.Once
	p := newPlan(noCrash, func(n int, _ []engine.Record) bool { return n >= 3 })
	p.onWrite = func(ctx context.Context) error {
		heldOnce.Do(func() { close(held) })
		select {
		case <-assigned:
			return nil
		case <-time.After(waitLong):
			return errors.New("node b was never assigned partitions")
		}
	}
	a := c.start(t, "a", t.TempDir(), p, nil)
	select {
	case <-held:
	case <-time.After(waitLong):
		t.Fatal("node a never reached the batch to hold")
	}
	b := c.start(t, "b", t.TempDir(), nil, func(m map[string][]int32) {
		for _, ps := range m {
			if len(ps) > 0 {
				assignedOnce.Do(func() { close(assigned) })
			}
		}
	})
	in.check(t, c)
	a.stop(t)
	b.stop(t)
	if _, reset := p.Resets(); !reset {
		t.Error("node a's transaction was not aborted by the rebalance in its middle (Commit did not return engine.ErrReset)")
	}
}

// TestFaultAlreadyApplied: after a full run, the group's committed offsets
// go back (an operator's reset, a lost commit) while no node is in the
// group; the node restarts, is handed records its state already holds,
// skips them, and writes nothing twice.
func TestFaultAlreadyApplied(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	c := newCluster(t, addrs, topics)
	in := newInput(t, c.rs, 204)
	in.produce(t, c)
	dir := t.TempDir()

	n := c.start(t, "n1", dir, nil, nil)
	in.check(t, c)
	n.stop(t)

	adm := kadm.NewClient(kafkatest.Client(t, c.addrs))
	ctx := context.Background()
	offs, err := adm.FetchOffsets(ctx, c.group)
	if err != nil {
		t.Fatal(err)
	}
	back := kadm.Offsets{}
	moved := 0
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil || o.At <= 0 {
			return
		}
		at := o.At / 2
		moved += int(o.At - at)
		back.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: at, LeaderEpoch: -1})
	})
	if moved == 0 {
		t.Fatal("the group had no offsets to move back")
	}
	resp, err := adm.CommitOffsets(ctx, c.group, back)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved the group back by %d records", moved)

	p := newPlan(noCrash, nil)
	again := c.start(t, "n1", dir, p, nil)
	// The proposals topic too is read again up to where it was (stage 2
	// would judge twice there): only then is everything in.
	deadline, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	for done := false; !done; {
		now, err := adm.FetchOffsets(deadline, c.group)
		if deadline.Err() != nil {
			t.Fatal("the restarted node did not get back to where the group was")
		}
		done = err == nil
		offs.Each(func(o kadm.OffsetResponse) {
			if at, ok := now.Lookup(o.Topic, o.Partition); o.Err == nil && (!ok || at.At < o.At) {
				done = false
			}
		})
		if !done {
			select {
			case <-deadline.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	in.check(t, c)
	p.mu.Lock()
	polled := p.polled[topics.Metrics] + p.polled[topics.Actions]
	p.mu.Unlock()
	if polled == 0 {
		t.Error("the restarted node was handed no source record again")
	}
	if r0, r1 := again.w.Records(0), again.w.Records(1); r0+r1 > 0 {
		t.Errorf("the restarted node processed %d relay and %d metric records its state already held", r0, r1)
	}
	again.stop(t)
}
