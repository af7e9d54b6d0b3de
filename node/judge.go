package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/shadow"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Judgement is the comparison of a rule set's shadow with its live
// version, as read from Kafka.
type Judgement struct {
	Name     string
	Live     versions.Record
	LiveRS   *rules.RuleSet
	Shadow   *versions.Record // nil: no shadow is published
	ShadowRS *rules.RuleSet   // nil when Shadow is
	Invalid  error            // newer shadow versions every node refused
	Since    int64            // the shadow's publish time, epoch ms: where nodes start it
	Report   shadow.Report
}

// Judge reads the live and shadow versions of rule set name that accept
// takes (as nodes do) from the config topic and, when there is a shadow,
// judges it: the metric events, the live decisions and the shadow's
// decisions from the shadow's start to the current end of each topic. st
// carries the judging from one call to the next (the zero value starts
// afresh): a round reads only what came since the last one.
func Judge(ctx context.Context, cl *streams.Cluster, accept versions.Accept, name string, st *JudgeState) (*Judgement, error) {
	live, err := streams.ReadLive(ctx, cl, name, nil)
	if err != nil {
		return nil, err
	}
	j := &Judgement{Name: name}
	// The live version the nodes run.
	var ok bool
	if j.Live, j.LiveRS, ok = versions.Newest(live, accept, nil); !ok {
		return nil, fmt.Errorf("rule set %q: %w", name, streams.ErrNoConfig)
	}
	// The shadow the nodes run: the same fold over the same records (the
	// history when compaction left only a refused version on the topic).
	refused := map[string][]string{}
	sh, err := streams.ReadShadow(ctx, cl, name, accept, func(topic string, version int64, reason string) {
		refused[topic] = append(refused[topic], fmt.Sprintf("v%d: %s", version, reason))
	})
	if err != nil {
		return nil, err
	}
	t := cl.Topics()
	cur, last, why := sh.Cur, sh.Last, refused[t.Config]
	if sh.FromHistory {
		why = refused[t.ConfigHistory]
	}
	if len(why) > 0 && (cur == nil || last == nil || last.SHA256 != cur.Record.SHA256) {
		j.Invalid = fmt.Errorf("refused by every node: %s", strings.Join(why, "; "))
	}
	if cur == nil {
		return j, nil
	}
	c := cur.Record
	j.Shadow, j.ShadowRS = &c, cur.RuleSet
	// The shadow starts where the nodes start it: its publish time.
	if j.Since, err = c.PublishedMilli(); err != nil {
		return nil, err
	}

	key := fmt.Sprintf("%s@%d/%s", c.SHA256, j.Since, j.LiveRS.SHA256)
	if st.key != key {
		// A new shadow, or a new live version to judge it against: from
		// the start.
		settings, err := shadow.FromRuleSet(j.LiveRS)
		if err != nil {
			return nil, err
		}
		*st = JudgeState{key: key, tracker: shadow.New(settings), next: map[string]map[int32]int64{}}
	}
	if err := st.read(ctx, cl, j.Since, c.SHA256); err != nil {
		return nil, err
	}
	j.Report = st.tracker.Report()
	return j, nil
}

// JudgeState carries the judging of one shadow from round to round: the
// tracker, and how far each topic was read. Its zero value starts afresh.
type JudgeState struct {
	key     string // the shadow, its start and the live version judged against
	tracker *shadow.Tracker
	start   map[int32]int64            // the metrics topic's offsets at the shadow's start
	next    map[string]map[int32]int64 // per topic and partition, the next offset to read
}

// read feeds the tracker what the decision topics and the metrics topic
// hold past where the last round stopped: the decisions first, then the
// events in event-time order, so that every decision is pending before
// the watermark passes its horizon and the outcomes do not depend on how
// partitions interleave. (Unless a pipeline lags more than the horizon
// behind the metrics: its late decisions then find their ads' events
// pruned.) A decision counts, on either side, when the metric event it
// came from lies at or after the shadow's start in its partition: the
// records both sides ran over.
func (st *JudgeState) read(ctx context.Context, cl *streams.Cluster, since int64, sha string) error {
	t := cl.Topics()
	if st.start == nil {
		rs, err := streams.ResolveRange(ctx, cl.Client(), t.Metrics, streams.Bound{Time: time.UnixMilli(since)}, streams.Bound{}, streams.Warm{})
		if err != nil {
			return fmt.Errorf("read %s: %w", t.Metrics, err)
		}
		st.start = map[int32]int64{}
		for _, r := range rs {
			st.start[r.Partition] = r.From
		}
		st.next[t.Metrics] = maps.Clone(st.start)
	}
	// Decisions are written after the records they come from: a day before
	// the start is a generous margin to find every decision of a record
	// at or after it (the input offset decides which count).
	decFrom := streams.Bound{Time: time.UnixMilli(since).Add(-24 * time.Hour)}
	counted := func(d *rules.Decision) bool {
		s, ok := st.start[d.Input.Partition]
		return d.Type != engine.TypeConfigApplied && d.Input.Topic == t.Metrics && ok && d.Input.Offset >= s
	}
	type side struct {
		s     shadow.Side
		topic string
		keep  func(*rules.Decision) bool
	}
	for _, sd := range []side{
		{shadow.Live, t.Decisions, counted},
		// Only the shadow version's own decisions: not an earlier shadow's.
		{shadow.Shadow, t.ShadowDecisions, func(d *rules.Decision) bool { return d.RulesetSHA256 == sha && counted(d) }},
	} {
		err := st.each(ctx, cl, sd.topic, decFrom, func(v []byte) {
			var d rules.Decision
			if json.Unmarshal(v, &d) == nil && sd.keep(&d) {
				st.tracker.Decision(sd.s, d)
			}
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", sd.topic, err)
		}
	}
	var events []shadow.Metric
	var dec rules.Decoder
	var ev rules.Event
	err := st.each(ctx, cl, t.Metrics, streams.Bound{}, func(v []byte) {
		if dec.Decode(v, &ev) == nil {
			events = append(events, shadow.MetricOf(&ev))
		}
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", t.Metrics, err)
	}
	slices.SortStableFunc(events, func(a, b shadow.Metric) int {
		return cmp.Or(cmp.Compare(a.TS, b.TS), strings.Compare(a.AdID, b.AdID), strings.Compare(a.EventID, b.EventID))
	})
	for _, m := range events {
		st.tracker.Event(m)
	}
	return nil
}

// each hands fn the value of every committed record of topic from where
// the last round stopped (from first, the first time) to its end now.
func (st *JudgeState) each(ctx context.Context, cl *streams.Cluster, topic string, first streams.Bound, fn func([]byte)) error {
	from := first
	if next, ok := st.next[topic]; ok {
		from = streams.Bound{Offsets: next}
	}
	ranges, err := streams.ResolveRange(ctx, cl.Client(), topic, from, streams.Bound{}, streams.Warm{})
	if err != nil {
		return err
	}
	next := map[int32]int64{}
	for _, r := range ranges {
		err := streams.ReadRange(ctx, cl.Opts(), r, func(recs []engine.Record, _ []time.Time) error {
			for _, rec := range recs {
				fn(rec.Value)
			}
			return nil
		})
		if err != nil {
			return err
		}
		next[r.Partition] = r.To
	}
	st.next[topic] = next
	return nil
}

// watchShadow judges the shadow rule set against the live one for as long
// as ctx lasts, tells the observer, and promotes the shadow when it should
// (auto_promote). It judges at once, then every Options.ShadowJudgeEvery.
func (n *Node) watchShadow(ctx context.Context) {
	w := &shadowWatcher{n: n, claims: map[string]*promotion{}}
	t := n.o.Clock.NewTicker(n.o.ShadowJudgeEvery)
	defer t.Stop()
	for {
		w.once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

type shadowWatcher struct {
	n       *Node
	claims  map[string]*promotion // by claim id: what this node did about a shadow
	lastErr string
	state   JudgeState // the judging so far, read on from round to round
}

// promotion is this node's part in promoting one shadow.
type promotion struct {
	won       bool // this node's claim came first
	failed    bool // the shadow did not validate: nothing more to try
	published bool
	retired   bool
}

func (w *shadowWatcher) once(ctx context.Context) {
	o, log := w.n.o, w.n.o.Logger
	j, err := Judge(ctx, w.n.cluster, o.Keys.Accept, o.Ruleset, &w.state)
	if err != nil {
		if ctx.Err() == nil && err.Error() != w.lastErr {
			log.Warn("shadow not judged", "err", err)
		}
		w.lastErr = err.Error()
		return
	}
	w.lastErr = ""
	o.Observer.ShadowJudged(j)
	log.Debug("shadow judged", "ruleset", j.Name, "shadow", j.Shadow != nil, "promote", j.Report.Promote)
	if j.Shadow == nil || !j.Report.Promote || !j.Report.Settings.AutoPromote {
		return
	}
	if j.Invalid != nil {
		log.Warn("shadow not promoted: a newer shadow version was refused", "err", j.Invalid)
		return
	}
	w.promote(ctx, j)
}

// promote publishes the shadow as the next live version, once across all
// nodes: each node that sees the criteria met appends a claim to the
// config history topic (one partition, kept), reads it back, and only the
// node whose claim for this shadow comes first publishes.
func (w *shadowWatcher) promote(ctx context.Context, j *Judgement) {
	o, log := w.n.o, w.n.o.Logger
	c := *j.Shadow
	id := fmt.Sprintf("%s@%d", c.SHA256, j.Since)
	p := w.claims[id]
	if p == nil {
		won, first, err := w.n.claimPromotion(ctx, j.Name, c.SHA256, j.Since)
		if err != nil {
			log.Warn("shadow promotion not claimed; trying again", "err", err)
			return
		}
		p = &promotion{won: won}
		w.claims[id] = p
		if !won {
			log.Info("shadow promotion claimed by another node", "ruleset", j.Name, "shadow", c.Version, "sha256", short(c.SHA256), "by", first)
			return
		}
		log.Info("shadow promotion claimed", "ruleset", j.Name, "shadow", c.Version, "sha256", short(c.SHA256),
			"live_precision", j.Report.Live.Precision, "shadow_precision", j.Report.Shadow.Precision, "p", j.Report.PValue)
	}
	if !p.won || p.failed {
		return
	}
	if !p.published && j.Live.SHA256 == c.SHA256 {
		// Published already (by this node before a restart, say): the
		// live version is the shadow's document.
		p.published = true
	}
	if !p.published {
		if j.ShadowRS.Doc.Name != j.Name {
			p.failed = true
			log.Error("shadow not promoted: its document names rule set " + j.ShadowRS.Doc.Name + ", not " + j.Name)
			return
		}
		// Signed with the node's key: the shadow's signature covers the
		// shadow, never a live version.
		pub, err := streams.PublishDocument(ctx, w.n.cluster, o.Keys, j.ShadowRS.Doc, "auto_promote:"+o.NodeID, false)
		if err != nil {
			log.Error("shadow not promoted: publish failed; trying again", "err", err)
			return
		}
		p.published = true
		o.Observer.Promoted(c.Version, pub.Version)
		log.Info("shadow promoted: published as the next live version", "ruleset", pub.Name, "version", pub.Version, "sha256", short(pub.SHA256))
	}
	if !p.retired {
		err := streams.RetireShadow(ctx, w.n.cluster.Client(), w.n.cluster.Topics(), j.Name, c.Version, "auto_promote:"+o.NodeID)
		if err != nil {
			log.Error("promoted shadow not retired; trying again", "err", err)
			return
		}
		p.retired = true
		log.Info("shadow retired after its promotion", "ruleset", j.Name, "shadow", c.Version)
	}
}

// promoteClaim is the value of a claim record on the config history
// topic, under the key versions.ShadowKey(name)+"/promote".
// versions.Live and versions.Shadows read only their own keys, so claims
// disturb no config reader.
type promoteClaim struct {
	SHA256 string `json:"sha256"`
	Since  int64  `json:"shadow_since_ms"` // the shadow's publish time: tells a re-published shadow apart
	Node   string `json:"node"`
	At     string `json:"at"` // wall clock, RFC 3339, for people
}

// claimPromotion appends this node's claim to promote the shadow (sha,
// since) and reads the history back: won is true when the first claim for
// that shadow is this node's; first names the node whose claim is first.
func (n *Node) claimPromotion(ctx context.Context, name, sha string, since int64) (won bool, first string, err error) {
	key := versions.ShadowKey(name) + "/promote"
	topic := n.cluster.Topics().ConfigHistory
	b, _ := json.Marshal(promoteClaim{SHA256: sha, Since: since, Node: n.o.NodeID, At: n.o.Clock.Now().UTC().Format(time.RFC3339)})
	err = n.cluster.Client().ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr()
	if err != nil {
		return false, "", fmt.Errorf("claim on %s: %w", topic, err)
	}
	recs, err := n.cluster.ReadAll(ctx, topic)
	if err != nil {
		return false, "", err
	}
	for _, r := range recs {
		var pc promoteClaim
		if string(r.Key) != key || json.Unmarshal(r.Value, &pc) != nil || pc.SHA256 != sha || pc.Since != since {
			continue
		}
		return pc.Node == n.o.NodeID, pc.Node, nil
	}
	return false, "", errors.New("the claim is not in the history topic")
}

// WatchShadow judges the shadow of o.Ruleset and promotes it by first claim
// as a node does (every o.ShadowJudgeEvery, telling o.Observer), without
// running any pipeline, until ctx ends. Of o it uses the cluster, the node
// id, the rule set, the keys, the logger, the observer and the clock.
func WatchShadow(ctx context.Context, o Options) error {
	o = o.withDefaults()
	cl := o.Cluster
	if cl == nil {
		var err error
		if cl, err = streams.Open(o.Connection); err != nil {
			return err
		}
		defer cl.Close()
	}
	n := &Node{o: o, cluster: cl}
	n.watchShadow(ctx)
	return nil
}
