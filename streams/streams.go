package streams

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topics names the topics of adrules. Every name is configurable.
type Topics struct {
	Metrics       string // metric events, key ad_id (input of stage 1)
	Actions       string // external proposals, key account_id (relayed to Proposals)
	Proposals     string // every proposal, key account_id (input of stage 2)
	Decisions     string // decisions, key ad_id
	Verdicts      string // verdicts, key account_id
	DLQ           string // dead letters, key as the original record's; "" drops them and rerouted records (the shadow pipeline: the live one writes them)
	Config        string // rule set versions, compacted, key = rule set name
	ConfigHistory string // every rule set version, kept
	Status        string // node heartbeats, compacted, key = node id
	// Switches holds where each input partition started using a rule set
	// version (engine.ConfigApplied, key topic/partition), kept as long as
	// the inputs: a node that rebuilds a partition replays each record
	// under the version that processed it. "" writes none (the shadow).
	Switches string

	// The shadow rule set's outputs (champion/challenger): its decisions,
	// its proposals (input of its own stage 2) and its verdicts. Nothing of
	// the shadow is ever written to a live topic.
	ShadowDecisions string
	ShadowProposals string
	ShadowVerdicts  string
}

// DefaultTopics returns the topic names of DESIGN.md section 3.
func DefaultTopics() Topics {
	return Topics{
		Metrics: "ad-metrics", Actions: "ad-actions", Proposals: "adrules.proposals",
		Decisions: "adrules.decisions", Verdicts: "adrules.actions", DLQ: "adrules.dlq",
		Config: "adrules.config", ConfigHistory: "adrules.config.history", Status: "adrules.status", Switches: "adrules.switches",
		ShadowDecisions: "adrules.shadow.decisions", ShadowProposals: "adrules.shadow.proposals", ShadowVerdicts: "adrules.shadow.actions",
	}
}

// Inputs returns the topics a node consumes.
func (t Topics) Inputs() []string { return []string{t.Metrics, t.Actions, t.Proposals} }

// TopicSpec is how EnsureTopics creates one topic.
type TopicSpec struct {
	Name       string
	Partitions int32
	Configs    map[string]string
}

// Specs returns the topics to create with partitions partitions each: input
// topics keep everything (cleanup.policy=delete, retention.ms=-1) because a
// node that takes over a partition rebuilds its state from them; outputs
// keep retention days; the config topic is compacted; the switch points
// are kept like the inputs they describe.
func (t Topics) Specs(partitions int32, retentionDays int) []TopicSpec {
	keep := map[string]string{"cleanup.policy": "delete", "retention.ms": "-1"}
	out := map[string]string{"cleanup.policy": "delete", "retention.ms": fmt.Sprint(int64(retentionDays) * 24 * 3600 * 1000)}
	return []TopicSpec{
		{t.Metrics, partitions, keep},
		{t.Actions, partitions, keep},
		{t.Proposals, partitions, keep},
		{t.Decisions, partitions, out},
		{t.Verdicts, partitions, out},
		{t.DLQ, partitions, out},
		{t.Config, 1, map[string]string{"cleanup.policy": "compact"}},
		{t.ConfigHistory, 1, keep},
		{t.Status, 1, map[string]string{"cleanup.policy": "compact"}},
		{t.Switches, 1, keep},
		{t.ShadowDecisions, partitions, out},
		{t.ShadowProposals, partitions, keep},
		{t.ShadowVerdicts, partitions, out},
	}
}

// EnsureTopics creates the topics that do not exist yet; existing topics are
// left as they are.
func EnsureTopics(ctx context.Context, cl *kgo.Client, specs []TopicSpec, replication int16) error {
	adm := kadm.NewClient(cl)
	for _, s := range specs {
		if s.Name == "" {
			continue // a topic the caller does without
		}
		cfg := map[string]*string{}
		for k, v := range s.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopics(ctx, s.Partitions, replication, cfg, s.Name)
		if err != nil {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
		for _, r := range resp {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
			}
		}
	}
	return nil
}

// Options configure a Node.
type Options struct {
	// Brokers to bootstrap from; required.
	Brokers []string
	// Group is the consumer group; default "adrules".
	Group string
	// NodeID names this node; its transactional id is Group-NodeID and its
	// static group membership instance id is NodeID, so it must be unique
	// in the group and stable across restarts. Required.
	NodeID string
	// Topics; default DefaultTopics().
	Topics Topics
	// ClientOpts are added to every client: TLS, SASL, a dialer, a logger.
	ClientOpts []kgo.Opt
	// Logger; default discards.
	Logger *slog.Logger
	// CommitTimeout bounds ending a transaction; default 60s. A transaction
	// that cannot end in time (the broker restarted under it, say) is given
	// up: the node starts a new session, whose transactional id fences the
	// old transaction, and processes the batch again.
	CommitTimeout time.Duration
	// SessionTimeout is the group session timeout, default 45s (Kafka's).
	// The node is a static member of its group (its instance id is NodeID):
	// when it restarts within the session timeout it gets its partitions
	// back at once, with no rebalance; a node that dies and stays down
	// keeps them unprocessed until the timeout. A node that stops cleanly
	// (Close) leaves the group, so its partitions move at once.
	SessionTimeout time.Duration
	// IdleAfter is how long a source partition (of Topics.Metrics or
	// Topics.Actions) this node owns may go without records before the node
	// tells stage 2 it is idle (rules.Progress), so that stage 2 judges
	// what waits for it once every source is idle; default 1m. A partition
	// without any record is idle from its assignment. See docs/guards.md
	// for what idleness costs in determinism.
	IdleAfter time.Duration
	// OnAssigned and OnRevoked, when set, are told of assignment changes
	// (for readiness and lag metrics).
	OnAssigned func(map[string][]int32)
	OnRevoked  func(map[string][]int32)
	// Start says where a partition of a topic starts when the group has no
	// committed offset for it; default (and for topics it does not name):
	// the start of the log. The shadow pipeline starts its metric and
	// action partitions at the shadow's publish time.
	Start map[string]kgo.Offset
	// ProposalTag, when set, marks every record the node writes to
	// Topics.Proposals with the header adrules.tag = ProposalTag, and the
	// node (Poll and Replay) passes on only the records of Topics.Proposals
	// that carry it: pipelines that share one proposals topic one after
	// another (the shadow versions) each read back their own proposals.
	// Default "": no header, every record.
	ProposalTag string
}

// tagHeader is the header of ProposalTag.
const tagHeader = "adrules.tag"

// pollTick bounds one wait for records: the node looks at its assignment
// and its idle partitions at least this often.
const pollTick = 500 * time.Millisecond

// Node is the engine's Source and Sink on Kafka. Its methods are called from
// the engine's goroutine; Lag may be called from any.
type Node struct {
	o    Options
	opts []kgo.Opt
	sess *kgo.GroupTransactSession
	now  func() time.Time

	// reset: partitions were assigned, revoked or lost since the engine
	// last looked: it must forget what it holds and restore the assigned
	// ones (engine.Assigner).
	reset atomic.Bool
	// stash holds records fetched in the poll during which the assignment
	// changed: they are handed over after the engine has restored.
	stash []engine.Record
	// counts are the partition counts of the input topics, from metadata.
	counts atomic.Pointer[map[string]int32]
	// maxBytes are the max.message.bytes of the topics the node writes,
	// from the broker (loadCounts): a batch, and so a record, larger than
	// its topic's is refused. Nil until known.
	maxBytes atomic.Pointer[map[string]int32]
	// idleChecked is when Poll last looked for idle source partitions;
	// idleNext are those found idle, to say so in the next transaction.
	idleChecked time.Time
	idleNext    []tp

	mu      sync.Mutex
	hwm     map[tp]int64 // high watermark per input partition, from fetches
	pos     map[tp]int64 // next offset to consume, from fetches
	owned   map[tp]bool  // the partitions this node holds
	active  map[tp]time.Time
	idle    map[tp]bool // idle progress written for it, no record since
	fresh   map[tp]bool // assigned, not yet looked at for emptiness
	prodErr error
}

type tp struct {
	topic     string
	partition int32
}

// NewNode joins the group (lazily, on the first Poll).
func NewNode(o Options) (*Node, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("streams: no brokers")
	}
	if o.NodeID == "" {
		return nil, errors.New("streams: no node id")
	}
	if o.Group == "" {
		o.Group = "adrules"
	}
	if o.Topics == (Topics{}) {
		o.Topics = DefaultTopics()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 60 * time.Second
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 45 * time.Second
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = time.Minute
	}
	n := &Node{o: o, now: time.Now, hwm: map[tp]int64{}, pos: map[tp]int64{}, owned: map[tp]bool{},
		active: map[tp]time.Time{}, idle: map[tp]bool{}, fresh: map[tp]bool{}}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumerGroup(o.Group),
		kgo.InstanceID(o.NodeID),
		kgo.SessionTimeout(o.SessionTimeout),
		kgo.ConsumeTopics(o.Topics.Inputs()...),
		kgo.TransactionalID(o.Group + "-" + o.NodeID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(partitionFor)),
		kgo.ProducerBatchMaxBytesFn(n.batchMax),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			n.assign(m)
			if o.OnAssigned != nil {
				o.OnAssigned(m)
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			n.forget(m)
			if o.OnRevoked != nil {
				o.OnRevoked(m)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			n.forget(m)
			if o.OnRevoked != nil {
				o.OnRevoked(m)
			}
		}),
	}, o.ClientOpts...)
	if len(o.Start) > 0 {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(func(_ context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			for topic, ps := range m {
				start, ok := o.Start[topic]
				if !ok {
					continue
				}
				for p, off := range ps {
					// Committed offsets are >= 0; a partition without one
					// has the start offset, AtStart.
					if off.EpochOffset().Offset < 0 {
						ps[p] = start
					}
				}
			}
			return m, nil
		}))
	}
	n.opts = opts
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	n.sess = sess
	return n, nil
}

// partitionKey is the context key of a record produced to a partition
// chosen by the node (progress records go to every partition).
type partitionKey struct{}

// partitionFor partitions what a node produces: to the partition the
// record's context names, else by its key as the Java client does
// (murmur2), which is the partitioner adrules requires of producers.
func partitionFor(topic string) func(*kgo.Record, int) int {
	keyed := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	return func(r *kgo.Record, n int) int {
		if r.Context != nil {
			if p, ok := r.Context.Value(partitionKey{}).(int32); ok && int(p) < n {
				return int(p)
			}
		}
		return keyed.Partition(r, n)
	}
}

// KeyPartition returns the partition of a topic of n partitions that a key
// belongs to: murmur2, as the Java client, kgo's StickyKeyPartitioner(nil)
// and `adrules produce` partition (Utils.toPositive(murmur2(key)) % n); an
// absent key hashes as an empty one. It is called for every event: kgo's
// partitioner seeds a random source each time it is made (5 µs, 46% of a
// node's CPU when KeyPartition made one per call), and murmur2 itself takes
// nanoseconds, so it is written out here (TestKeyPartition pins it to
// Kafka's vectors and to kgo's partitioner).
func KeyPartition(key []byte, n int32) int32 {
	if n <= 0 {
		return 0
	}
	return int32(murmur2(key)&0x7fffffff) % n
}

// murmur2 is Kafka's Utils.murmur2.
func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		b = b[4:]
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// Partitioner is the engine's partitioner (engine.WithPartitioner) of a
// topic of n partitions as a backtest or replay of its ranges reads it:
// KeyPartition (murmur2, as the nodes reroute by), so a misplaced record's
// copy is processed where it belongs and the original skipped, as the node
// did; -1 (cannot tell) for other topics or when n <= 0.
func Partitioner(topic string, n int32) func(string, []byte) int32 {
	return func(t string, key []byte) int32 {
		if t != topic || n <= 0 {
			return -1
		}
		return KeyPartition(key, n)
	}
}

// PartitionOf returns the partition of topic that key belongs to, or -1
// when the node does not know the topic's partition count yet: the
// engine's partitioner (engine.WithPartitioner).
func (n *Node) PartitionOf(topic string, key []byte) int32 {
	c := n.counts.Load()
	if c == nil || (*c)[topic] <= 0 {
		return -1
	}
	return KeyPartition(key, (*c)[topic])
}

// loadCounts reads the partition counts of the topics the node reads and
// writes progress to.
func (n *Node) loadCounts(ctx context.Context) error {
	t := n.o.Topics
	names := []string{t.Metrics, t.Actions, t.Proposals}
	md, err := kadm.NewClient(n.sess.Client()).ListTopics(ctx, names...)
	if err != nil {
		return err
	}
	m := map[string]int32{}
	for _, name := range names {
		d, ok := md[name]
		if !ok || d.Err != nil {
			return fmt.Errorf("topic %s: %v", name, d.Err)
		}
		m[name] = int32(len(d.Partitions))
	}
	n.counts.Store(&m)
	if err := n.loadMaxBytes(ctx); err != nil {
		n.o.Logger.Warn("cannot read the max.message.bytes of the output topics: the producer's default batch limit applies", "err", err)
	}
	return nil
}

// defaultBatchMax is the producer's batch limit when a topic's
// max.message.bytes is not known: franz-go's default, Kafka's historical
// max.message.bytes.
const defaultBatchMax = 1_000_012

// batchMax is the producer's batch limit for a topic
// (kgo.ProducerBatchMaxBytesFn): the topic's max.message.bytes when known,
// so no batch is larger than the broker takes. The client asks once per
// partition, when it first produces to it: after the first Poll read the
// limits.
func (n *Node) batchMax(topic string) int32 {
	if m := n.maxBytes.Load(); m != nil {
		if v, ok := (*m)[topic]; ok {
			return min(max(v, 512), 1<<30)
		}
	}
	return defaultBatchMax
}

// loadMaxBytes reads the max.message.bytes of the topics the node writes.
func (n *Node) loadMaxBytes(ctx context.Context) error {
	t := n.o.Topics
	var names []string
	for _, name := range []string{t.Metrics, t.Proposals, t.Decisions, t.Verdicts, t.DLQ, t.Switches} {
		if name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	rcs, err := kadm.NewClient(n.sess.Client()).DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return err
	}
	m := map[string]int32{}
	for _, rc := range rcs {
		if rc.Err != nil {
			return fmt.Errorf("topic %s: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			v, err := strconv.ParseInt(*c.Value, 10, 32)
			if err != nil {
				return fmt.Errorf("topic %s: max.message.bytes %q: %w", rc.Name, *c.Value, err)
			}
			m[rc.Name] = int32(v)
		}
	}
	n.maxBytes.Store(&m)
	return nil
}

// renew replaces the session after a transaction could not end: the new
// session's transactional id fences the old transaction, and the group
// resumes at the committed offsets.
func (n *Node) renew() error {
	old := n.sess
	go old.Close() // it may hang on the transaction it could not end
	sess, err := kgo.NewGroupTransactSession(n.opts...)
	if err != nil {
		return fmt.Errorf("streams: new session: %w", err)
	}
	// Start the new session's producer now: its transactional id fences
	// the old transaction at once, so the offsets that transaction left
	// pending are settled before the group reads them (a consumer that
	// requires stable offsets waits for them).
	ctx, cancel := context.WithTimeout(context.Background(), n.o.CommitTimeout)
	defer cancel()
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("streams: new session: %w", err)
	}
	if _, err := sess.End(ctx, kgo.TryAbort); err != nil {
		n.o.Logger.Warn("the new session could not fence the old transaction yet", "err", err)
	}
	n.mu.Lock()
	clear(n.hwm)
	clear(n.pos)
	n.mu.Unlock()
	n.sess = sess
	n.reset.Store(true)
	return nil
}

func (n *Node) assign(m map[string][]int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	for t, ps := range m {
		for _, p := range ps {
			k := tp{t, p}
			n.owned[k] = true
			n.active[k] = now
			delete(n.idle, k)
			n.fresh[k] = true
		}
	}
	n.reset.Store(true)
}

func (n *Node) forget(m map[string][]int32) {
	n.reset.Store(true)
	n.mu.Lock()
	defer n.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			k := tp{t, p}
			delete(n.hwm, k)
			delete(n.pos, k)
			delete(n.owned, k)
			delete(n.active, k)
			delete(n.idle, k)
			delete(n.fresh, k)
		}
	}
}

// Client returns the node's client, for producing and admin requests beside
// the engine's (not for transactions).
func (n *Node) Client() *kgo.Client { return n.sess.Client() }

// Close closes the client and leaves the group, so the node's partitions
// move to other nodes at once.
func (n *Node) Close() {
	n.sess.Close() // a static member does not leave on close: leave explicitly
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := LeaveGroup(ctx, n.o.Brokers, n.o.ClientOpts, n.o.Group, n.o.NodeID); err != nil {
		n.o.Logger.Warn("could not leave the group; its partitions wait for the session timeout", "err", err)
	}
}

// Kill closes the client as a crash would: no leave, and the transaction in
// flight is left open, to be fenced by the next session of the same
// transactional id. For fault drills and tests, once the engine that polls
// the Node has stopped (it may replace the session: Kill does not lock).
func (n *Node) Kill() { n.sess.Close() }

// LeaveGroup makes the static member instance of group leave it, as `Close`
// does for a running node; operators use it for a node that is gone for
// good (adrules never needs it otherwise).
func LeaveGroup(ctx context.Context, brokers []string, opts []kgo.Opt, group, instance string) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	m := kmsg.NewLeaveGroupRequestMember()
	m.InstanceID = &instance
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	for _, m := range resp.Members {
		if err := kerr.ErrorForCode(m.ErrorCode); err != nil && !errors.Is(err, kerr.UnknownMemberID) {
			return err
		}
	}
	return nil
}

// Assigned returns the partitions the node holds and where each resumes:
// the group's committed offset, -1 when it has none (engine.Assigner).
func (n *Node) Assigned(ctx context.Context) ([]engine.Resume, error) {
	n.mu.Lock()
	var out []engine.Resume
	for k := range n.owned {
		out = append(out, engine.Resume{Topic: k.topic, Partition: k.partition, Offset: -1})
	}
	n.mu.Unlock()
	if len(out) == 0 {
		return nil, nil
	}
	offs, err := kadm.NewClient(n.sess.Client()).FetchOffsets(ctx, n.o.Group)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Unknown resume offsets: each partition is restored when its
		// first records arrive instead.
		n.o.Logger.Warn("cannot read the group's offsets: partitions are restored when their records arrive", "err", err)
		return out, nil
	}
	for i := range out {
		if o, ok := offs.Lookup(out[i].Topic, out[i].Partition); ok && o.Err == nil && o.At >= 0 {
			out[i].Offset = o.At
		}
	}
	return out, nil
}

// Poll waits for records and begins the batch's transaction. After the
// assignment changed it first returns engine.ErrReset, so the engine
// forgets what it holds and restores the partitions it holds now
// (Assigned) before it goes on; records fetched meanwhile wait for it.
// While no records come, it tells stage 2 which source partitions are
// idle (IdleAfter).
func (n *Node) Poll(ctx context.Context) ([]engine.Record, error) {
	for {
		if n.reset.Swap(false) {
			return nil, engine.ErrReset
		}
		if len(n.stash) > 0 {
			recs := n.owns(n.stash)
			n.stash = nil
			if len(recs) > 0 {
				if err := n.sess.Begin(); err != nil {
					return nil, fmt.Errorf("streams: begin transaction: %w", err)
				}
				return recs, nil
			}
		}
		if n.counts.Load() == nil {
			if err := n.loadCounts(ctx); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				n.o.Logger.Warn("cannot read the topics' partition counts yet", "err", err)
			}
		}
		pctx, cancel := context.WithTimeout(ctx, pollTick)
		fs := n.sess.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if fs.IsClientClosed() {
			return nil, kgo.ErrClientClosed
		}
		var fatal error
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if stopsNode(err) {
				fatal = err
				return
			}
			// The client retries, or rejoins the group by itself: a
			// membership it lost revoked the node's partitions first
			// (OnPartitionsLost), so the batch in flight aborts and is
			// processed again.
			n.o.Logger.Warn("fetch error; the client retries or rejoins", "topic", t, "partition", p, "err", err)
		})
		if fatal != nil {
			if errors.Is(fatal, kerr.FencedInstanceID) {
				return nil, fmt.Errorf("streams: another process runs as node %q in group %q: %w", n.o.NodeID, n.o.Group, fatal)
			}
			return nil, fmt.Errorf("streams: fetch: %w", fatal)
		}
		var recs []engine.Record
		now := n.now()
		n.mu.Lock()
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			k := tp{p.Topic, p.Partition}
			n.hwm[k] = p.HighWatermark
			if len(p.Records) == 0 && p.LastStableOffset > n.pos[k] {
				// Nothing more to read below the last stable offset: what
				// remains up to the high watermark is commit markers.
				n.pos[k] = p.LastStableOffset
			}
			for _, r := range p.Records {
				n.pos[k] = r.Offset + 1
				if n.foreign(r) {
					continue
				}
				n.active[k] = now
				delete(n.idle, k)
				recs = append(recs, engine.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value})
			}
		})
		n.mu.Unlock()
		if n.reset.Load() {
			// The assignment changed during this poll: the engine restores
			// first, then gets these records.
			n.stash = append(n.stash, recs...)
			continue
		}
		// Idle sources are looked for between batches, records or not:
		// other partitions' records must not hide an empty one. Their
		// progress goes out with the next transaction.
		if now.Sub(n.idleChecked) >= pollTick && len(n.idleNext) == 0 {
			n.idleChecked = now
			n.idleNext = n.findIdle(ctx)
		}
		if len(recs) == 0 {
			if len(n.idleNext) > 0 {
				if err := n.writeIdle(ctx); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := n.sess.Begin(); err != nil {
			return nil, fmt.Errorf("streams: begin transaction: %w", err)
		}
		return recs, nil
	}
}

// rejoin are the errors, not retriable by the client's own reckoning, that
// say the group went on without this member or wants it to join again: a
// broker that restarted without its members, a session that expired, a
// rebalance. The client rejoins the group by itself (after revoking the
// member's partitions); nothing is wrong with the node.
var rejoin = []*kerr.Error{
	kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.RebalanceInProgress, kerr.MemberIDRequired,
	kerr.FencedMemberEpoch, kerr.StaleMemberEpoch, kerr.UnreleasedInstanceID,
}

// stopsNode reports whether err, from a poll, stops a node: an error of Kafka
// that no retry or rejoin can mend (an authorization refused, another
// process with the node's instance id, a setting the broker rejects).
// Errors the client retries (retriable Kafka errors, a connection lost, a
// coordinator moving or loading) and those after which the client rejoins
// the group (rejoin) are not: the node carries on.
func stopsNode(err error) bool {
	var ke *kerr.Error
	if !errors.As(err, &ke) || ke.Retriable {
		return false
	}
	for _, r := range rejoin {
		if ke == r {
			return false
		}
	}
	return true
}

// owns keeps the records of partitions the node still holds.
func (n *Node) owns(recs []engine.Record) []engine.Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := recs[:0]
	for _, r := range recs {
		if n.owned[tp{r.Topic, r.Partition}] {
			out = append(out, r)
		}
	}
	return out
}

// findIdle returns the source partitions that became idle: a partition
// without records since its assignment (empty: at once), or whose last
// record is IdleAfter old and that is read to its end.
func (n *Node) findIdle(ctx context.Context) []tp {
	if n.counts.Load() == nil {
		return nil // not known yet: the next look
	}
	t := n.o.Topics
	now := n.now()
	var fresh []tp
	n.mu.Lock()
	for k := range n.fresh {
		if k.topic == t.Metrics || k.topic == t.Actions {
			fresh = append(fresh, k)
		}
	}
	clear(n.fresh)
	n.mu.Unlock()
	empty := map[tp]bool{}
	if len(fresh) > 0 {
		e, err := n.empty(ctx, fresh)
		if err != nil {
			n.o.Logger.Warn("cannot tell whether partitions are empty", "err", err)
		}
		empty = e
	}
	var idle, unknown []tp
	n.mu.Lock()
	for k := range n.owned {
		if k.topic != t.Metrics && k.topic != t.Actions || n.idle[k] {
			continue
		}
		switch h, known := n.hwm[k]; {
		case empty[k]:
			idle = append(idle, k)
		case now.Sub(n.active[k]) < n.o.IdleAfter:
		case !known:
			unknown = append(unknown, k) // quiet, but is it read to its end?
		case n.pos[k] >= h:
			idle = append(idle, k)
		}
	}
	n.mu.Unlock()
	if len(unknown) > 0 {
		// No fetch said where these end (a new session has read nothing
		// yet): idle only if the group has committed them to their end.
		done, err := n.readToEnd(ctx, unknown)
		if err != nil {
			n.o.Logger.Warn("cannot tell whether quiet partitions are read to their end", "err", err)
		}
		idle = append(idle, done...)
	}
	slices.SortFunc(idle, func(a, b tp) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	return idle
}

// writeIdle says in a transaction of its own that the partitions in
// n.idleNext are idle. Only when a poll returned no record: a transaction
// commits the offsets of every record polled, so one that ended between a
// poll and the processing of its records would commit them unprocessed
// (with records, the next batch's transaction carries the progress).
func (n *Node) writeIdle(ctx context.Context) error {
	if err := n.sess.Begin(); err != nil {
		return fmt.Errorf("streams: begin transaction: %w", err)
	}
	if err := n.Write(ctx, &engine.Output{}); err != nil {
		return err
	}
	if err := n.Commit(ctx); err != nil && !errors.Is(err, engine.ErrReset) {
		return err // ErrReset: the assignment changed; the engine looks again
	}
	return nil
}

// readToEnd returns those of ps whose committed offset in the group leaves
// no record unread (transaction markers aside).
func (n *Node) readToEnd(ctx context.Context, ps []tp) ([]tp, error) {
	adm := kadm.NewClient(n.sess.Client())
	offs, err := adm.FetchOffsets(ctx, n.o.Group)
	if err != nil {
		return nil, err
	}
	var topics []string
	for _, k := range ps {
		if !slices.Contains(topics, k.topic) {
			topics = append(topics, k.topic)
		}
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(n.o.Brokers...)}, n.o.ClientOpts...)
	var out []tp
	for _, k := range ps {
		c, ok1 := offs.Lookup(k.topic, k.partition)
		e, ok2 := ends.Lookup(k.topic, k.partition)
		if !ok1 || !ok2 || c.Err != nil || e.Err != nil || c.At < 0 {
			continue
		}
		if c.At < e.Offset {
			if more, err := HoldsRecords(ctx, opts, k.topic, k.partition, c.At, e.Offset); err != nil || more {
				continue
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// empty reports which of ps hold no record at all.
func (n *Node) empty(ctx context.Context, ps []tp) (map[tp]bool, error) {
	adm := kadm.NewClient(n.sess.Client())
	var topics []string
	for _, k := range ps {
		if !slices.Contains(topics, k.topic) {
			topics = append(topics, k.topic)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[tp]bool{}
	for _, k := range ps {
		s, ok1 := starts.Lookup(k.topic, k.partition)
		e, ok2 := ends.Lookup(k.topic, k.partition)
		if ok1 && ok2 && s.Err == nil && e.Err == nil && e.Offset <= s.Offset {
			out[k] = true
		}
	}
	return out, nil
}

// foreign reports whether r is a proposal of another pipeline (ProposalTag).
func (n *Node) foreign(r *kgo.Record) bool {
	if n.o.ProposalTag == "" || r.Topic != n.o.Topics.Proposals {
		return false
	}
	for _, h := range r.Headers {
		if h.Key == tagHeader {
			return string(h.Value) != n.o.ProposalTag
		}
	}
	return true
}

// Write produces the batch's output into its transaction: switch points
// (to the decisions and the switches topics), decisions, proposals, then
// the sources' progress to every partition of the proposals topic,
// verdicts, rerouted records and dead letters.
func (n *Node) Write(ctx context.Context, out *engine.Output) error {
	t := n.o.Topics
	for i := range out.Applied {
		a := &out.Applied[i]
		key := fmt.Sprintf("%s/%d", a.Input.Topic, a.Input.Partition)
		if err := n.produce(ctx, t.Decisions, key, a); err != nil {
			return err
		}
		if t.Switches != "" {
			if err := n.produce(ctx, t.Switches, key, a); err != nil {
				return err
			}
		}
	}
	for i := range out.Decisions {
		d := &out.Decisions[i]
		if err := n.produce(ctx, t.Decisions, d.AdID, d); err != nil {
			return err
		}
	}
	var tag []kgo.RecordHeader
	if n.o.ProposalTag != "" {
		tag = []kgo.RecordHeader{{Key: tagHeader, Value: []byte(n.o.ProposalTag)}}
	}
	for i := range out.Proposals {
		p := &out.Proposals[i]
		if err := n.produce(ctx, t.Proposals, p.AccountID, p, tag...); err != nil {
			return err
		}
	}
	progress := out.Progress
	for _, k := range n.idleNext {
		progress = append(progress, rules.Progress{Topic: k.topic, Partition: k.partition, At: math.MinInt64, Idle: true})
	}
	if len(progress) > 0 {
		c := n.counts.Load()
		if c == nil {
			return errors.New("streams: the partition counts are not known: cannot write the sources' progress")
		}
		sources := int((*c)[t.Metrics] + (*c)[t.Actions])
		for _, m := range progress {
			m.Sources = sources
			v := rules.EncodeProgress(m)
			for q := int32(0); q < (*c)[t.Proposals]; q++ {
				r := &kgo.Record{Topic: t.Proposals, Value: v, Headers: tag,
					Context: context.WithValue(context.Background(), partitionKey{}, q)}
				n.send(ctx, r)
			}
		}
	}
	for i := range out.Verdicts {
		v := &out.Verdicts[i]
		if err := n.produce(ctx, t.Verdicts, v.AccountID, v); err != nil {
			return err
		}
	}
	for i := range out.Reroutes {
		if t.DLQ == "" {
			break // the shadow: the live pipeline reroutes the very same records
		}
		rr := &out.Reroutes[i]
		// The same key and bytes: the partitioner puts it where its key
		// belongs. Where it came from in a header.
		n.send(ctx, &kgo.Record{Topic: rr.From.Topic, Key: append([]byte(nil), rr.Key...), Value: append([]byte(nil), rr.Value...), Headers: []kgo.RecordHeader{
			{Key: "adrules.rerouted_from", Value: fmt.Appendf(nil, "%s/%d@%d", rr.From.Topic, rr.From.Partition, rr.From.Offset)},
		}})
	}
	if len(out.DeadLetters) > 0 && t.DLQ != "" { // "": dropped, another pipeline dead-letters the same records
		limit := n.deadLetterMax()
		for i := range out.DeadLetters {
			n.send(ctx, deadLetter(&out.DeadLetters[i], t.DLQ, limit))
		}
	}
	return nil
}

// deadLetterMax is the largest dead letter the node can write, as a
// record alone in its batch: the producer's batch limit for the
// dead-letter topic, which is the topic's max.message.bytes (batchMax)
// unless the client options set another, and never above the topic's.
func (n *Node) deadLetterMax() int {
	t := n.o.Topics.DLQ
	limit := int(defaultBatchMax)
	if fn, ok := n.sess.Client().OptValue(kgo.ProducerBatchMaxBytesFn).(func(string) int32); ok && fn != nil {
		limit = int(fn(t))
	}
	if m := n.maxBytes.Load(); m != nil {
		if v, ok := (*m)[t]; ok {
			limit = min(limit, int(v))
		}
	}
	return limit
}

// maxReason caps the reason header of a dead letter (a reason may quote
// the record's key).
const maxReason = 1 << 10

// deadLetter returns the record of a dead letter on topic: the original
// key and value, with the reason and where it came from in headers. When
// that would be larger than limit (the record took the broker's limit of
// its own topic, and the headers do not fit beside it, or the dead-letter
// topic's limit is lower), it keeps a prefix of the value (and of the key,
// if that is large too) that fits, and says so: adrules.truncated=true,
// adrules.size and adrules.sha256 of the original value (adrules.key_size
// and adrules.key_sha256 when the key was cut), so that the original can
// be found on its topic and checked. A dead letter is never refused as too
// large.
func deadLetter(d *engine.DeadLetter, topic string, limit int) *kgo.Record {
	reason := d.Reason
	if len(reason) > maxReason {
		cut := maxReason - len("…")
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "…"
	}
	headers := []kgo.RecordHeader{
		{Key: "adrules.reason", Value: []byte(reason)},
		{Key: "adrules.topic", Value: []byte(d.Input.Topic)},
		{Key: "adrules.partition", Value: strconv.AppendInt(nil, int64(d.Input.Partition), 10)},
		{Key: "adrules.offset", Value: strconv.AppendInt(nil, d.Input.Offset, 10)},
	}
	r := &kgo.Record{Topic: topic, Key: d.Key, Value: d.Value, Headers: headers}
	if recordBytes(r) <= limit {
		r.Key, r.Value = append([]byte(nil), d.Key...), append([]byte(nil), d.Value...)
		return r
	}
	sum := sha256.Sum256(d.Value)
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: "adrules.truncated", Value: []byte("true")},
		kgo.RecordHeader{Key: "adrules.size", Value: strconv.AppendInt(nil, int64(len(d.Value)), 10)},
		kgo.RecordHeader{Key: "adrules.sha256", Value: hex.AppendEncode(nil, sum[:])},
	)
	r.Key, r.Value = nil, nil
	room := max(limit-recordBytes(r), 0)
	key := d.Key
	if len(key) > room/2 {
		ksum := sha256.Sum256(d.Key)
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: "adrules.key_size", Value: strconv.AppendInt(nil, int64(len(d.Key)), 10)},
			kgo.RecordHeader{Key: "adrules.key_sha256", Value: hex.AppendEncode(nil, ksum[:])},
		)
		room = max(limit-recordBytes(r), 0)
		key = key[:room/2]
	}
	r.Key = append([]byte(nil), key...)
	r.Value = append([]byte(nil), d.Value[:min(len(d.Value), room-len(key))]...)
	return r
}

// recordBytes bounds the size of r alone in a record batch, as the broker
// and the producer count it against their limits: the batch's header, and
// the record with every length at its widest varint.
func recordBytes(r *kgo.Record) int {
	const batchHeader = 61
	const varint = 5
	n := batchHeader + varint + 1 + 2*varint + 10 // length, attributes, timestamp and offset deltas (a generous margin)
	n += varint + len(r.Key) + varint + len(r.Value) + varint
	for _, h := range r.Headers {
		n += varint + len(h.Key) + varint + len(h.Value)
	}
	return n
}

func (n *Node) produce(ctx context.Context, topic, key string, v any, headers ...kgo.RecordHeader) error {
	b, err := engine.Encode(v)
	if err != nil {
		return err
	}
	n.send(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b, Headers: headers})
	return nil
}

func (n *Node) send(ctx context.Context, r *kgo.Record) {
	n.sess.Produce(ctx, r, func(_ *kgo.Record, err error) {
		if err != nil {
			n.mu.Lock()
			if n.prodErr == nil {
				n.prodErr = err
			}
			n.mu.Unlock()
		}
	})
}

// Commit ends the batch's transaction, with the consumer offsets. When the
// transaction aborted (a rebalance), it returns engine.ErrReset.
func (n *Node) Commit(ctx context.Context) error {
	// Every record of the batch is acknowledged, or has failed, before the
	// transaction may commit.
	fctx, cancel := context.WithTimeout(ctx, n.o.CommitTimeout)
	ferr := n.sess.Client().Flush(fctx)
	cancel()
	n.mu.Lock()
	perr := n.prodErr
	if perr == nil {
		perr = ferr
	}
	n.prodErr = nil
	n.mu.Unlock()
	if perr != nil {
		actx, cancel := context.WithTimeout(ctx, n.o.CommitTimeout)
		_, aerr := n.sess.End(actx, kgo.TryAbort)
		cancel()
		if aerr != nil || errors.Is(perr, context.DeadlineExceeded) {
			// The broker did not take the batch in time (it restarted,
			// say), or the abort itself could not end: a new session
			// fences whatever this one left, and the batch is processed
			// again.
			n.o.Logger.Warn("the batch could not be written in time; starting a new session, the batch is processed again", "err", errors.Join(perr, aerr))
			if rerr := n.renew(); rerr != nil {
				return errors.Join(perr, aerr, rerr)
			}
			return engine.ErrReset
		}
		return fmt.Errorf("streams: produce: %w", perr)
	}
	ectx, cancel := context.WithTimeout(ctx, n.o.CommitTimeout)
	committed, err := n.sess.End(ectx, kgo.TryCommit)
	cancel()
	if err != nil {
		n.o.Logger.Warn("transaction could not end; starting a new session, the batch is processed again", "err", err)
		if rerr := n.renew(); rerr != nil {
			return errors.Join(err, rerr)
		}
		return engine.ErrReset
	}
	if !committed {
		n.o.Logger.Info("transaction aborted (rebalance); the batch is processed again")
		n.idleNext = nil // looked for again
		return engine.ErrReset
	}
	n.idled()
	return nil
}

// idled records that the idle progress of n.idleNext is committed: those
// partitions are idle until their next record.
func (n *Node) idled() {
	if len(n.idleNext) == 0 {
		return
	}
	n.mu.Lock()
	for _, k := range n.idleNext {
		if n.owned[k] {
			n.idle[k] = true
		}
	}
	n.mu.Unlock()
	n.o.Logger.Debug("source partitions idle", "partitions", len(n.idleNext))
	n.idleNext = nil
}

// Replay reads one partition's committed records in [from, to) with a
// client of its own, outside the group.
func (n *Node) Replay(ctx context.Context, topic string, partition int32, from, to int64, fn func([]engine.Record) error) error {
	opts := append([]kgo.Opt{kgo.SeedBrokers(n.o.Brokers...)}, n.o.ClientOpts...)
	return ReadRange(ctx, opts, PartRange{Topic: topic, Partition: partition, Warm: from, From: from, To: to},
		func(recs []engine.Record, _ []time.Time) error { return fn(recs) })
}

// Lag returns, for each input partition this node consumes, the records
// between its position and the high watermark, as of the last fetch.
func (n *Node) Lag() map[string]map[int32]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]map[int32]int64{}
	for k, h := range n.hwm {
		if out[k.topic] == nil {
			out[k.topic] = map[int32]int64{}
		}
		out[k.topic][k.partition] = max(h-n.pos[k], 0)
	}
	return out
}

// KeyOf picks the record key a JSON line is produced with: account_id for
// proposals, ad_id otherwise.
func KeyOf(topic string, t Topics) string {
	if topic == t.Actions || topic == t.Proposals {
		return "account_id"
	}
	return "ad_id"
}
