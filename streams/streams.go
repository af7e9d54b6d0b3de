package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/jsonl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics names the topics of adrules. Every name is configurable.
type Topics struct {
	Metrics       string // metric events, key ad_id (input of stage 1)
	Actions       string // external proposals, key account_id (relayed to Proposals)
	Proposals     string // every proposal, key account_id (input of stage 2)
	Decisions     string // decisions, key ad_id
	Verdicts      string // verdicts, key account_id
	DLQ           string // dead letters, key as the original record's; "" drops them (the shadow pipeline)
	Config        string // rule set versions, compacted, key = rule set name
	ConfigHistory string // every rule set version, kept
	Status        string // node heartbeats, compacted, key = node id

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
		Config: "adrules.config", ConfigHistory: "adrules.config.history", Status: "adrules.status",
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
// keep retention days; the config topic is compacted.
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
	// NodeID names this node; its transactional id is Group-NodeID, so it
	// must be unique in the group and stable across restarts. Required.
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

// Node is the engine's Source and Sink on Kafka. Its methods are called from
// the engine's goroutine; Lag may be called from any.
type Node struct {
	o    Options
	opts []kgo.Opt
	sess *kgo.GroupTransactSession

	reset atomic.Bool // partitions were revoked or lost: the engine must forget them

	mu      sync.Mutex
	hwm     map[tp]int64 // high watermark per input partition, from fetches
	pos     map[tp]int64 // next offset to consume, from fetches
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
	n := &Node{o: o, hwm: map[tp]int64{}, pos: map[tp]int64{}}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topics.Inputs()...),
		kgo.TransactionalID(o.Group + "-" + o.NodeID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
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
	n.mu.Lock()
	clear(n.hwm)
	clear(n.pos)
	n.mu.Unlock()
	n.sess = sess
	return nil
}

func (n *Node) forget(m map[string][]int32) {
	n.reset.Store(true)
	n.mu.Lock()
	defer n.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(n.hwm, tp{t, p})
			delete(n.pos, tp{t, p})
		}
	}
}

// Client returns the node's client, for producing and admin requests beside
// the engine's (not for transactions).
func (n *Node) Client() *kgo.Client { return n.sess.Client() }

// Close leaves the group and closes the client.
func (n *Node) Close() { n.sess.Close() }

// Poll waits for records and begins the batch's transaction. After a
// revocation it first returns engine.ErrReset, so the engine reloads what it
// holds from Pebble (and replays what it missed) before it goes on.
func (n *Node) Poll(ctx context.Context) ([]engine.Record, error) {
	for {
		// Partitions left this node since the engine last looked: whatever
		// it holds for them may be stale when they come back.
		if n.reset.Swap(false) {
			return nil, engine.ErrReset
		}
		fs := n.sess.PollFetches(ctx)
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
			n.o.Logger.Warn("fetch error", "topic", t, "partition", p, "err", err)
			var ke *kerr.Error
			if errors.As(err, &ke) && !ke.Retriable && !errors.Is(err, kerr.UnknownTopicOrPartition) {
				fatal = err
			}
		})
		if fatal != nil {
			return nil, fmt.Errorf("streams: fetch: %w", fatal)
		}
		var recs []engine.Record
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
				recs = append(recs, engine.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value})
			}
		})
		n.mu.Unlock()
		if len(recs) == 0 {
			continue
		}
		if err := n.sess.Begin(); err != nil {
			return nil, fmt.Errorf("streams: begin transaction: %w", err)
		}
		return recs, nil
	}
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

// Write produces the batch's output into its transaction.
func (n *Node) Write(ctx context.Context, out *engine.Output) error {
	t := n.o.Topics
	for i := range out.Applied {
		a := &out.Applied[i]
		key := fmt.Sprintf("%s/%d", a.Input.Topic, a.Input.Partition)
		if err := n.produce(ctx, t.Decisions, key, a); err != nil {
			return err
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
	for i := range out.Verdicts {
		v := &out.Verdicts[i]
		if err := n.produce(ctx, t.Verdicts, v.AccountID, v); err != nil {
			return err
		}
	}
	for i := range out.DeadLetters {
		if t.DLQ == "" {
			break // dropped: another pipeline dead-letters the same records
		}
		d := &out.DeadLetters[i]
		// The original bytes exactly, so a dead letter is never larger than
		// the record the broker already took; what and where in headers.
		n.send(ctx, &kgo.Record{Topic: t.DLQ, Key: append([]byte(nil), d.Key...), Value: append([]byte(nil), d.Value...), Headers: []kgo.RecordHeader{
			{Key: "adrules.reason", Value: []byte(d.Reason)},
			{Key: "adrules.topic", Value: []byte(d.Input.Topic)},
			{Key: "adrules.partition", Value: strconv.AppendInt(nil, int64(d.Input.Partition), 10)},
			{Key: "adrules.offset", Value: strconv.AppendInt(nil, d.Input.Offset, 10)},
		}})
	}
	return nil
}

func (n *Node) produce(ctx context.Context, topic, key string, v any, headers ...kgo.RecordHeader) error {
	b, err := jsonl.Marshal(v)
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
		if _, err := n.sess.End(ctx, kgo.TryAbort); err != nil {
			return fmt.Errorf("streams: abort after produce error %v: %w", perr, err)
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
		return engine.ErrReset
	}
	return nil
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
