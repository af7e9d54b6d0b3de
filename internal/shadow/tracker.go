package shadow

import (
	"cmp"
	"container/heap"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
)

// Side is one of the two rule sets compared.
type Side int

const (
	// Live is the champion: the rule set nodes run.
	Live Side = iota
	// Shadow is the challenger, evaluated beside it.
	Shadow
)

func (s Side) String() string {
	if s == Shadow {
		return "shadow"
	}
	return "live"
}

// Metric is the part of a metric event that outcomes read: one ad's deltas
// for one reporting interval. TS is event time in epoch milliseconds.
type Metric struct {
	AdID        string
	EventID     string
	TS          int64
	Impressions int64
	Clicks      int64
	Spend       float64
	Revenue     float64
}

// MetricOf copies what outcomes need out of ev. The strings are cloned: a
// rules.Decoder's events share its memory.
func MetricOf(ev *rules.Event) Metric {
	return Metric{AdID: strings.Clone(ev.AdID), EventID: strings.Clone(ev.EventID), TS: ev.TS,
		Impressions: ev.Impressions, Clicks: ev.Clicks, Spend: ev.Spend, Revenue: ev.Revenue}
}

// Tracker follows the live and the shadow rule set's decisions and the
// metric events of their ads, and judges each winner decision once the
// watermark passes its horizon. It is not safe for concurrent use.
//
// Feed it in any interleaving; the report is the same as long as every
// decision and every event of its window arrive before the watermark (the
// largest event ts seen) passes the decision's ts plus the horizon. What
// arrives later finds its decision already resolved (a late event) or the
// events it needed dropped (a late decision).
//
// # Bounded memory
//
// The events of an ad are kept while a pending decision can need them: an
// event at ts e is dropped once e lies at or before every pending decision
// of its ad and at or before watermark - horizon. A pending decision has
// ts >= watermark - horizon, so that leaves the events of the last horizon
// of event time behind the watermark, swept at least once per horizon of
// watermark progress: at most two horizons of events, plus the pending
// decisions, plus one (rule, ad) entry per distinct decision for the
// agreement counts and one id per decision for dedupe.
type Tracker struct {
	s       Settings
	horizon int64 // ms

	wm        int64
	hasWM     bool
	lastSweep int64

	ads     map[string]*adEvents
	pending pendingHeap
	seq     int64

	sides [2]SideReport
	seen  [2]map[string]bool          // decision ids per side
	agree map[string]map[string]uint8 // rule -> ad -> sides that decided (bit 1 live, 2 shadow)
}

type adEvents struct {
	events  []Metric        // sorted by (TS, EventID)
	ids     map[string]bool // event ids of events
	pending []int64         // ts of the ad's pending decisions
}

type pendingDecision struct {
	ts   int64
	seq  int64
	side Side
	ad   string
}

type pendingHeap []pendingDecision

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	return h[i].ts < h[j].ts || h[i].ts == h[j].ts && h[i].seq < h[j].seq
}
func (h pendingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)   { *h = append(*h, x.(pendingDecision)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// New returns a Tracker that judges with s. A zero Horizon or WinnerType
// takes its default.
func New(s Settings) *Tracker {
	if s.Horizon <= 0 {
		s.Horizon = DefaultSettings().Horizon
	}
	if s.WinnerType == "" {
		s.WinnerType = DefaultWinnerType
	}
	return &Tracker{
		s: s, horizon: s.Horizon.D().Milliseconds(),
		ads:   map[string]*adEvents{},
		seen:  [2]map[string]bool{{}, {}},
		agree: map[string]map[string]uint8{},
	}
}

// Settings returns the settings the tracker judges with.
func (t *Tracker) Settings() Settings { return t.s }

// Watermark returns the largest event ts seen, and whether any was.
func (t *Tracker) Watermark() (int64, bool) { return t.wm, t.hasWM }

// Event adds one metric event. A second event with the same (ad_id,
// event_id) changes nothing (DESIGN S1), as long as the first is kept.
func (t *Tracker) Event(m Metric) {
	a := t.ads[m.AdID]
	if a != nil && a.ids[m.EventID] {
		return
	}
	if !t.hasWM || m.TS > t.wm {
		t.wm, t.hasWM = m.TS, true
	}
	if m.TS > t.cutoff(a) {
		if a == nil {
			a = &adEvents{ids: map[string]bool{}}
			t.ads[m.AdID] = a
		}
		i, _ := slices.BinarySearchFunc(a.events, m, cmpMetric)
		a.events = slices.Insert(a.events, i, m)
		a.ids[m.EventID] = true
	}
	t.resolve()
	if t.wm-t.lastSweep >= t.horizon {
		t.sweep()
	}
}

func cmpMetric(a, b Metric) int {
	return cmp.Or(cmp.Compare(a.TS, b.TS), strings.Compare(a.EventID, b.EventID))
}

// Decision adds one decision of side. Decisions of type
// engine.TypeConfigApplied (switch records) are ignored, and so is a second decision with the same
// decision_id on one side. Every decision counts towards agreement; those
// of the winner type are judged.
func (t *Tracker) Decision(side Side, d rules.Decision) {
	if d.Type == engine.TypeConfigApplied || side != Live && side != Shadow {
		return
	}
	id := d.DecisionID
	if id == "" {
		id = d.RuleID + "\x00" + d.AdID + "\x00" + strconv.FormatInt(int64(d.TS), 10)
	}
	if t.seen[side][id] {
		return
	}
	t.seen[side][id] = true
	byAd := t.agree[d.RuleID]
	if byAd == nil {
		byAd = map[string]uint8{}
		t.agree[d.RuleID] = byAd
	}
	byAd[d.AdID] |= 1 << side
	if d.Type != t.s.WinnerType {
		return
	}
	t.sides[side].Decisions++
	ts := int64(d.TS)
	if t.hasWM && t.wm > ts+t.horizon {
		t.judge(side, d.AdID, ts) // late: judged on what is kept
		return
	}
	t.seq++
	heap.Push(&t.pending, pendingDecision{ts: ts, seq: t.seq, side: side, ad: d.AdID})
	a := t.ads[d.AdID]
	if a == nil {
		a = &adEvents{ids: map[string]bool{}}
		t.ads[d.AdID] = a
	}
	a.pending = append(a.pending, ts)
}

// resolve judges every pending decision whose horizon the watermark passed.
func (t *Tracker) resolve() {
	for len(t.pending) > 0 && t.wm > t.pending[0].ts+t.horizon {
		p := heap.Pop(&t.pending).(pendingDecision)
		t.judge(p.side, p.ad, p.ts)
		if a := t.ads[p.ad]; a != nil {
			if i := slices.Index(a.pending, p.ts); i >= 0 {
				a.pending = slices.Delete(a.pending, i, i+1)
			}
			t.prune(p.ad, a)
		}
	}
}

// Outcome is what an ad did over a decision's horizon.
type Outcome struct {
	Impressions, Clicks int64
	Spend, Revenue      float64
	CTR, ROAS           float64
	Held                bool
}

// judge resolves one decision of side about ad at ts.
func (t *Tracker) judge(side Side, ad string, ts int64) {
	o := t.outcome(ad, ts)
	t.sides[side].Resolved++
	if o.Held {
		t.sides[side].Held++
	}
}

// outcome sums the ad's deltas with ts in (at, at+horizon], in (ts,
// event_id) order, and applies the yardstick.
func (t *Tracker) outcome(ad string, at int64) Outcome {
	var o Outcome
	if a := t.ads[ad]; a != nil {
		i, _ := slices.BinarySearchFunc(a.events, at, func(m Metric, ts int64) int {
			if m.TS <= ts {
				return -1
			}
			return 1
		})
		for _, m := range a.events[i:] {
			if m.TS > at+t.horizon {
				break
			}
			o.Impressions += m.Impressions
			o.Clicks += m.Clicks
			o.Spend += m.Spend
			o.Revenue += m.Revenue
		}
	}
	o.Spend, o.Revenue = money(o.Spend), money(o.Revenue)
	o.CTR = ratio(float64(o.Clicks), float64(o.Impressions))
	o.ROAS = ratio(o.Revenue, o.Spend)
	o.Held = t.s.Held(o.ROAS, o.CTR)
	return o
}

// Held applies the yardstick: ROAS at or above the ROAS threshold, or CTR
// above the CTR threshold; both with RequireBoth.
func (s Settings) Held(roas, ctr float64) bool {
	r, c := roas >= s.ROASThreshold, ctr > s.CTRThreshold
	if s.RequireBoth {
		return r && c
	}
	return r || c
}

// money rounds a sum of money to millionths, so that decimal amounts that
// add up to a round number (33.3 + 33.3 + 33.4) compare as that number.
func money(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// ratio is a/b, and 0 when b is 0 (DESIGN S5).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// cutoff is the ts at or before which an ad's events can no longer be
// needed: at or before every pending decision of the ad, and at or before
// watermark - horizon.
func (t *Tracker) cutoff(a *adEvents) int64 {
	c := t.wm - t.horizon
	if !t.hasWM {
		return math.MinInt64
	}
	if a != nil {
		for _, p := range a.pending {
			c = min(c, p)
		}
	}
	return c
}

// prune drops the ad's events that no pending decision can need, and the
// ad when nothing is left.
func (t *Tracker) prune(ad string, a *adEvents) {
	c := t.cutoff(a)
	n := 0
	for n < len(a.events) && a.events[n].TS <= c {
		delete(a.ids, a.events[n].EventID)
		n++
	}
	a.events = slices.Delete(a.events, 0, n)
	if len(a.events) == 0 && len(a.pending) == 0 {
		delete(t.ads, ad)
	}
}

// sweep prunes every ad.
func (t *Tracker) sweep() {
	for ad, a := range t.ads {
		t.prune(ad, a)
	}
	t.lastSweep = t.wm
}

// Kept returns how many events the tracker holds, for tests of its bound.
func (t *Tracker) Kept() int {
	n := 0
	for _, a := range t.ads {
		n += len(a.events)
	}
	return n
}
