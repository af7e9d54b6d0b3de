package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/shadow"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// shadowEvery is how often a node judges the shadow rule set. It is the
// package's one test knob: tests shorten it before starting watchShadow.
var shadowEvery = 15 * time.Second

func cmdShadow(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(stderr, "Usage: adrules shadow status --brokers LIST [--ruleset NAME] [--json]")
		return exitError{2}
	}
	fs := flag.NewFlagSet("shadow status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	// The shadow's decisions topic, unless the Kafka flags already name it.
	if fs.Lookup("topic-shadow-decisions") == nil {
		fs.StringVar(&k.topics.ShadowDecisions, "topic-shadow-decisions", k.topics.ShadowDecisions, "the shadow rule set's decisions topic")
	}
	name := fs.String("ruleset", "default", "rule set name")
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	var kf keyFlags
	kf.registerTrust(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules shadow status --brokers LIST [--ruleset NAME] [--json]\n\nCompares the shadow rule set with the live one since the shadow was published:\nagreement per rule, the precision of each side's winner decisions, the test and the promotion verdict.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return exitError{2}
	}
	opts, err := k.clientOpts(env)
	if err != nil {
		return err
	}
	keys, err := kf.load(env)
	if err != nil {
		return err
	}
	if !keys.Checks() {
		fmt.Fprintln(stderr, "signatures not checked (no --trust or $ADRULES_TRUST): the versions judged may be ones nodes refuse")
	}
	j, err := judgeShadow(ctx, &k, opts, keys.Accept, *name, &judgeState{})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(j.jsonView())
	}
	j.print(stdout)
	return nil
}

// judgement is the comparison of a rule set's shadow with its live
// version, as read from Kafka.
type judgement struct {
	name     string
	live     versions.Record
	liveRS   *rules.RuleSet
	shadow   *versions.Record // nil: no shadow is published
	shadowRS *rules.RuleSet   // nil: the shadow does not validate
	invalid  error            // newer shadow versions every node refused
	since    int64            // the shadow's publish time, epoch ms: where nodes start it
	report   shadow.Report
}

// judgeShadow reads the live and shadow versions of rule set name that
// accept takes (as nodes do) from the config topic and, when there is a
// shadow, judges it: the metric events, the live decisions and the
// shadow's decisions from the shadow's start to the current end of each
// topic.
func judgeShadow(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, accept versions.Accept, name string, st *judgeState) (*judgement, error) {
	live, err := readLive(ctx, k, opts, name, nil)
	if err != nil {
		return nil, err
	}
	j := &judgement{name: name}
	// The live version the nodes run.
	var ok bool
	if j.live, j.liveRS, ok = versions.Newest(live, accept, nil); !ok {
		return nil, fmt.Errorf("rule set %q: %w", name, streams.ErrNoConfig)
	}
	// The shadow the nodes run: the same fold over the same records (the
	// history when compaction left only a refused version on the topic).
	refused := map[string][]string{}
	sh, err := readShadow(ctx, k, opts, name, accept, func(topic string, version int64, reason string) {
		refused[topic] = append(refused[topic], fmt.Sprintf("v%d: %s", version, reason))
	})
	if err != nil {
		return nil, err
	}
	cur, last, why := sh.cur, sh.last, refused[k.topics.Config]
	if sh.fromHistory {
		why = refused[k.topics.ConfigHistory]
	}
	if len(why) > 0 && (cur == nil || last == nil || last.SHA256 != cur.Record.SHA256) {
		j.invalid = fmt.Errorf("refused by every node: %s", strings.Join(why, "; "))
	}
	if cur == nil {
		return j, nil
	}
	c := cur.Record
	j.shadow, j.shadowRS = &c, cur.RuleSet
	// The shadow starts where the nodes start it: its publish time.
	if j.since, err = c.PublishedMilli(); err != nil {
		return nil, err
	}

	key := fmt.Sprintf("%s@%d/%s", c.SHA256, j.since, j.liveRS.SHA256)
	if st.key != key {
		// A new shadow, or a new live version to judge it against: from
		// the start.
		settings, err := shadow.FromRuleSet(j.liveRS)
		if err != nil {
			return nil, err
		}
		*st = judgeState{key: key, tracker: shadow.New(settings), next: map[string]map[int32]int64{}}
	}
	if err := st.read(ctx, k, opts, j.since, c.SHA256); err != nil {
		return nil, err
	}
	j.report = st.tracker.Report()
	return j, nil
}

// judgeState carries the judging of one shadow from round to round: the
// tracker, and how far each topic was read. A round reads only what came
// since the last one.
type judgeState struct {
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
func (st *judgeState) read(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, since int64, sha string) error {
	opts = append([]kgo.Opt{kgo.SeedBrokers(k.brokerList()...)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if st.start == nil {
		rs, err := streams.ResolveRange(ctx, cl, k.topics.Metrics, streams.Bound{Time: time.UnixMilli(since)}, streams.Bound{}, streams.Warm{})
		if err != nil {
			return fmt.Errorf("read %s: %w", k.topics.Metrics, err)
		}
		st.start = map[int32]int64{}
		for _, r := range rs {
			st.start[r.Partition] = r.From
		}
		st.next[k.topics.Metrics] = maps.Clone(st.start)
	}
	// Decisions are written after the records they come from: a day before
	// the start is a generous margin to find every decision of a record
	// at or after it (the input offset decides which count).
	decFrom := streams.Bound{Time: time.UnixMilli(since).Add(-24 * time.Hour)}
	counted := func(d *rules.Decision) bool {
		s, ok := st.start[d.Input.Partition]
		return d.Type != engine.TypeConfigApplied && d.Input.Topic == k.topics.Metrics && ok && d.Input.Offset >= s
	}
	type side struct {
		s     shadow.Side
		topic string
		keep  func(*rules.Decision) bool
	}
	for _, sd := range []side{
		{shadow.Live, k.topics.Decisions, counted},
		// Only the shadow version's own decisions: not an earlier shadow's.
		{shadow.Shadow, k.topics.ShadowDecisions, func(d *rules.Decision) bool { return d.RulesetSHA256 == sha && counted(d) }},
	} {
		err := st.each(ctx, cl, opts, sd.topic, decFrom, func(v []byte) {
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
	err = st.each(ctx, cl, opts, k.topics.Metrics, streams.Bound{}, func(v []byte) {
		if dec.Decode(v, &ev) == nil {
			events = append(events, shadow.MetricOf(&ev))
		}
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", k.topics.Metrics, err)
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
func (st *judgeState) each(ctx context.Context, cl *kgo.Client, opts []kgo.Opt, topic string, first streams.Bound, fn func([]byte)) error {
	from := first
	if next, ok := st.next[topic]; ok {
		from = streams.Bound{Offsets: next}
	}
	ranges, err := streams.ResolveRange(ctx, cl, topic, from, streams.Bound{}, streams.Warm{})
	if err != nil {
		return err
	}
	next := map[int32]int64{}
	for _, r := range ranges {
		err := streams.ReadRange(ctx, opts, r, func(recs []engine.Record, _ []time.Time) error {
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

// shadowJSON is the --json form of a judgement.
type shadowJSON struct {
	Ruleset string         `json:"ruleset"`
	Live    versionJSON    `json:"live"`
	Shadow  *versionJSON   `json:"shadow"` // null: no shadow is published
	Report  *shadow.Report `json:"report,omitempty"`
}

type versionJSON struct {
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
	Since   string `json:"since,omitempty"`   // the shadow's start, RFC 3339
	Invalid string `json:"invalid,omitempty"` // newer shadow versions every node refused (this one runs)
}

func (j *judgement) jsonView() shadowJSON {
	v := shadowJSON{Ruleset: j.name, Live: versionJSON{Version: j.live.Version, SHA256: j.live.SHA256}}
	if j.shadow != nil {
		v.Shadow = &versionJSON{Version: j.shadow.Version, SHA256: j.shadow.SHA256, Since: rules.FormatTime(j.since)}
		if j.invalid != nil {
			v.Shadow.Invalid = j.invalid.Error()
		}
		v.Report = &j.report
	}
	return v
}

// print writes the judgement for people.
func (j *judgement) print(w io.Writer) {
	if j.shadow == nil {
		fmt.Fprintf(w, "rule set %s: live v%d (sha256 %s); no shadow is published\n", j.name, j.live.Version, short(j.live.SHA256))
		return
	}
	r, s := j.report, j.report.Settings
	fmt.Fprintf(w, "rule set %s: live v%d (sha256 %s), shadow v%d (sha256 %s) since %s\n",
		j.name, j.live.Version, short(j.live.SHA256), j.shadow.Version, short(j.shadow.SHA256), rules.FormatTime(j.since))
	if j.invalid != nil {
		fmt.Fprintf(w, "warning: a newer shadow version is %v; nodes run, and this judges, v%d\n", j.invalid, j.shadow.Version)
	}
	join := "or"
	if s.RequireBoth {
		join = "and"
	}
	wm := "none yet"
	if r.Watermark != 0 {
		wm = rules.FormatTime(r.Watermark)
	}
	fmt.Fprintf(w, "outcomes: a %s decision held when the ad's next %gh of events give roas >= %g %s ctr > %g (the live thresholds); watermark %s\n\n",
		s.WinnerType, s.Horizon.D().Hours(), s.ROASThreshold, join, s.CTRThreshold, wm)

	fmt.Fprintf(w, "%-8s %9s %9s %9s %9s\n", "side", "decisions", "resolved", "held", "precision")
	for _, sd := range []struct {
		name string
		r    shadow.SideReport
	}{{"live", r.Live}, {"shadow", r.Shadow}} {
		fmt.Fprintf(w, "%-8s %9d %9d %9d %9.4f\n", sd.name, sd.r.Decisions, sd.r.Resolved, sd.r.Held, sd.r.Precision)
	}
	fmt.Fprintln(w)
	width := len("rule")
	for _, a := range r.Agreement {
		width = max(width, len(a.Rule))
	}
	fmt.Fprintf(w, "%-*s %9s %9s %11s\n", width, "rule", "both", "live only", "shadow only")
	for _, a := range r.Agreement {
		fmt.Fprintf(w, "%-*s %9d %9d %11d\n", width, a.Rule, a.Both, a.LiveOnly, a.ShadowOnly)
	}
	if len(r.Agreement) == 0 {
		fmt.Fprintln(w, "(no decisions since the shadow's start)")
	}
	fmt.Fprintf(w, "\ntest: z %.3f (critical %.3f at confidence %g), p %.4f; improvement %+.2f%% relative, %+.2f points\n",
		r.Z, r.ZCritical, s.ConfidenceLevel, r.PValue, r.ImprovementPct, r.ImprovementPts)
	fmt.Fprintln(w, "criteria:")
	for _, c := range r.Criteria {
		mark := "met    "
		if !c.Met {
			mark = "not met"
		}
		fmt.Fprintf(w, "  %s  %-14s %s\n", mark, c.Name, c.Detail)
	}
	switch {
	case r.Promote && j.invalid != nil:
		fmt.Fprintln(w, "verdict: the criteria are met, but a newer shadow version was refused: nothing is promoted until a valid one is published or the shadow is retired")
	case r.Promote && s.AutoPromote:
		fmt.Fprintln(w, "verdict: promote (auto_promote is on: the first node to see it publishes the shadow as the next live version)")
	case r.Promote:
		fmt.Fprintln(w, "verdict: promote (auto_promote is off: publish the shadow's file with adrules config publish)")
	default:
		fmt.Fprintf(w, "verdict: keep the live rule set: %s\n", strings.Join(r.Reasons, "; "))
	}
}

// shadowGauges are the metrics of watchShadow.
type shadowGauges struct {
	agreement, decisions, resolved, precision *prometheus.GaugeVec
}

func newShadowGauges(reg prometheus.Registerer) *shadowGauges {
	g := &shadowGauges{
		agreement: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_agreement",
			Help: "Ads decided by a rule since the shadow was published: by both rule sets, the live only, the shadow only."}, []string{"rule", "agreement"}),
		decisions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_winner_decisions",
			Help: "Winner decisions since the shadow was published, by side (live, shadow)."}, []string{"side"}),
		resolved: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_resolved",
			Help: "Winner decisions whose 24 hours of outcome have passed, by side."}, []string{"side"}),
		precision: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "adrules_shadow_precision",
			Help: "Share of resolved winner decisions that held, by side."}, []string{"side"}),
	}
	for _, c := range []**prometheus.GaugeVec{&g.agreement, &g.decisions, &g.resolved, &g.precision} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
			*c = are.ExistingCollector.(*prometheus.GaugeVec)
		}
	}
	return g
}

func (g *shadowGauges) set(j *judgement) {
	g.agreement.Reset()
	for _, v := range []*prometheus.GaugeVec{g.decisions, g.resolved, g.precision} {
		v.Reset()
	}
	if j == nil || j.shadow == nil {
		return
	}
	r := j.report
	for _, a := range r.Agreement {
		g.agreement.WithLabelValues(a.Rule, "both").Set(float64(a.Both))
		g.agreement.WithLabelValues(a.Rule, "live_only").Set(float64(a.LiveOnly))
		g.agreement.WithLabelValues(a.Rule, "shadow_only").Set(float64(a.ShadowOnly))
	}
	for _, sd := range []struct {
		name string
		r    shadow.SideReport
	}{{"live", r.Live}, {"shadow", r.Shadow}} {
		g.decisions.WithLabelValues(sd.name).Set(float64(sd.r.Decisions))
		g.resolved.WithLabelValues(sd.name).Set(float64(sd.r.Resolved))
		g.precision.WithLabelValues(sd.name).Set(sd.r.Precision)
	}
}

// watchShadow judges the shadow rule set against the live one for as long
// as ctx lasts: agreement and precision gauges on reg, and auto_promote.
// It runs once per node; it judges at once, then every shadowEvery.
func watchShadow(ctx context.Context, nc nodeConfig, reg prometheus.Registerer, log *slog.Logger) {
	w := &shadowWatcher{nc: nc, g: newShadowGauges(reg), log: log, claims: map[string]*promotion{}}
	t := time.NewTicker(shadowEvery)
	defer t.Stop()
	for {
		w.once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type shadowWatcher struct {
	nc      nodeConfig
	g       *shadowGauges
	log     *slog.Logger
	claims  map[string]*promotion // by claim id: what this node did about a shadow
	lastErr string
	state   judgeState // the judging so far, read on from round to round
}

// promotion is this node's part in promoting one shadow.
type promotion struct {
	won       bool // this node's claim came first
	failed    bool // the shadow did not validate: nothing more to try
	published bool
	retired   bool
}

func (w *shadowWatcher) once(ctx context.Context) {
	j, err := judgeShadow(ctx, &w.nc.kafka, w.nc.clientOpts, w.nc.keys.Accept, w.nc.ruleset, &w.state)
	if err != nil {
		if ctx.Err() == nil && err.Error() != w.lastErr {
			w.log.Warn("shadow not judged", "err", err)
		}
		w.lastErr = err.Error()
		return
	}
	w.lastErr = ""
	w.g.set(j)
	w.log.Debug("shadow judged", "ruleset", j.name, "shadow", j.shadow != nil, "promote", j.report.Promote)
	if j.shadow == nil || !j.report.Promote || !j.report.Settings.AutoPromote {
		return
	}
	if j.invalid != nil {
		w.log.Warn("shadow not promoted: a newer shadow version was refused", "err", j.invalid)
		return
	}
	w.promote(ctx, j)
}

// promote publishes the shadow as the next live version, once across all
// nodes: each node that sees the criteria met appends a claim to the
// config history topic (one partition, kept), reads it back, and only the
// node whose claim for this shadow comes first publishes.
func (w *shadowWatcher) promote(ctx context.Context, j *judgement) {
	c := *j.shadow
	id := fmt.Sprintf("%s@%d", c.SHA256, j.since)
	p := w.claims[id]
	if p == nil {
		won, first, err := claimPromotion(ctx, &w.nc, j.name, c.SHA256, j.since)
		if err != nil {
			w.log.Warn("shadow promotion not claimed; trying again", "err", err)
			return
		}
		p = &promotion{won: won}
		w.claims[id] = p
		if !won {
			w.log.Info("shadow promotion claimed by another node", "ruleset", j.name, "shadow", c.Version, "sha256", short(c.SHA256), "by", first)
			return
		}
		w.log.Info("shadow promotion claimed", "ruleset", j.name, "shadow", c.Version, "sha256", short(c.SHA256),
			"live_precision", j.report.Live.Precision, "shadow_precision", j.report.Shadow.Precision, "p", j.report.PValue)
	}
	if !p.won || p.failed {
		return
	}
	if !p.published && j.live.SHA256 == c.SHA256 {
		// Published already (by this node before a restart, say): the
		// live version is the shadow's document.
		p.published = true
	}
	if !p.published {
		if j.shadowRS.Doc.Name != j.name {
			p.failed = true
			w.log.Error("shadow not promoted: its document names rule set " + j.shadowRS.Doc.Name + ", not " + j.name)
			return
		}
		// Signed with the node's key: the shadow's signature covers the
		// shadow, never a live version.
		n, err := publishDoc(ctx, &w.nc.kafka, w.nc.clientOpts, w.nc.keys, j.shadowRS.Doc, "auto_promote:"+w.nc.nodeID)
		if err != nil {
			w.log.Error("shadow not promoted: publish failed; trying again", "err", err)
			return
		}
		p.published = true
		w.log.Info("shadow promoted: published as the next live version", "ruleset", n.Name, "version", n.Version, "sha256", short(n.SHA256))
	}
	if !p.retired {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(w.nc.kafka.brokerList()...)}, w.nc.clientOpts...)...)
		if err == nil {
			err = streams.RetireShadow(ctx, cl, w.nc.kafka.topics, j.name, c.Version, "auto_promote:"+w.nc.nodeID)
			cl.Close()
		}
		if err != nil {
			w.log.Error("promoted shadow not retired; trying again", "err", err)
			return
		}
		p.retired = true
		w.log.Info("shadow retired after its promotion", "ruleset", j.name, "shadow", c.Version)
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
func claimPromotion(ctx context.Context, nc *nodeConfig, name, sha string, since int64) (won bool, first string, err error) {
	key := versions.ShadowKey(name) + "/promote"
	b, _ := json.Marshal(promoteClaim{SHA256: sha, Since: since, Node: nc.nodeID, At: time.Now().UTC().Format(time.RFC3339)})
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(nc.kafka.brokerList()...)}, nc.clientOpts...)...)
	if err != nil {
		return false, "", err
	}
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: nc.kafka.topics.ConfigHistory, Key: []byte(key), Value: b}).FirstErr()
	cl.Close()
	if err != nil {
		return false, "", fmt.Errorf("claim on %s: %w", nc.kafka.topics.ConfigHistory, err)
	}
	recs, err := streams.ReadAll(ctx, nc.kafka.brokerList(), nc.clientOpts, nc.kafka.topics.ConfigHistory)
	if err != nil {
		return false, "", err
	}
	for _, r := range recs {
		var pc promoteClaim
		if string(r.Key) != key || json.Unmarshal(r.Value, &pc) != nil || pc.SHA256 != sha || pc.Since != since {
			continue
		}
		return pc.Node == nc.nodeID, pc.Node, nil
	}
	return false, "", errors.New("the claim is not in the history topic")
}
