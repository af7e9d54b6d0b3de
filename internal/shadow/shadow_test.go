package shadow

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

const (
	hour = int64(time.Hour / time.Millisecond)
	t0   = int64(1735689600000) // 2025-01-01T00:00:00Z
)

func TestTwoProportion(t *testing.T) {
	for _, tc := range []struct {
		ha, na, hb, nb int
		z, p           float64
	}{
		{550, 1000, 600, 1000, 2.2616, 0.01186}, // the textbook case
		{600, 1000, 550, 1000, -2.2616, 0.98814},
		{50, 100, 50, 100, 0, 0.5},
		{100, 100, 100, 100, 0, 0.5}, // no variance
		{0, 0, 10, 20, 0, 1},         // a side is empty
	} {
		z, p := TwoProportion(tc.ha, tc.na, tc.hb, tc.nb)
		if math.Abs(z-tc.z) > 1e-3 || math.Abs(p-tc.p) > 1e-4 {
			t.Errorf("TwoProportion(%d/%d, %d/%d) = z %.5f p %.5f, want z %.4f p %.5f", tc.ha, tc.na, tc.hb, tc.nb, z, p, tc.z, tc.p)
		}
	}
	for c, want := range map[float64]float64{0.95: 1.6449, 0.99: 2.3263, 0.5: 0} {
		if got := CriticalZ(c); math.Abs(got-want) > 1e-4 {
			t.Errorf("CriticalZ(%v) = %.5f, want %.4f", c, got, want)
		}
	}
}

func load(t *testing.T, name, src string) *config.Document {
	t.Helper()
	d, err := config.Load(name, []byte(src), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSettings(t *testing.T) {
	// The predecessor's file: its model_evaluation section as it is.
	data, err := os.ReadFile("../../config/testdata/learning_config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromDocument(load(t, "learning_config.yaml", string(data)))
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{MinSamples: 1000, MinImprovementPct: 2.0, ConfidenceLevel: 0.95, MinAccuracyDelta: 0.01, AutoPromote: true,
		ROASThreshold: 3.0, CTRThreshold: 0.03, WinnerType: "rag_index_winner", Horizon: config.Duration(24 * time.Hour)}
	if s != want {
		t.Errorf("predecessor settings:\n got %+v\nwant %+v", s, want)
	}

	// A rule set without model_evaluation gets the defaults, and its own
	// winner thresholds.
	data, err = os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(data), "roas_threshold: 3.0", "roas_threshold: 2.5", 1)
	s, err = FromDocument(load(t, "rules.yaml", src))
	if err != nil {
		t.Fatal(err)
	}
	want = DefaultSettings()
	want.ROASThreshold = 2.5
	if s != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", s, want)
	}

	// Mistakes name the key.
	base := "name: x\nrules: []\nparams:\n  model_evaluation: {%s}\n"
	for _, tc := range []struct{ body, want string }{
		{"min_sample: 10", "params.model_evaluation.min_sample: unknown key"},
		{"confidence_level: 95", "params.model_evaluation.confidence_level: must be a share between 0 and 1"},
		{"min_samples: 10.5", "params.model_evaluation.min_samples: must be a whole number"},
		{"auto_promote: yes please", "params.model_evaluation.auto_promote: must be true or false"},
		{"min_improvement_pct: -1", "params.model_evaluation.min_improvement_pct: must be at least 0"},
	} {
		_, err := FromDocument(load(t, "x.yaml", fmt.Sprintf(base, tc.body)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

func winner(id, ad string, ts int64) rules.Decision {
	return rules.Decision{DecisionID: id, RuleID: "winner", Type: DefaultWinnerType, AdID: ad, TS: rules.Time(ts)}
}

// clock is an event of an ad nobody decides about, to move the watermark.
func clock(ts int64) Metric { return Metric{AdID: "clock", EventID: fmt.Sprint("c", ts), TS: ts} }

// TestHeldBoundaries: the window is (t, t+24h]; ROAS at the threshold
// holds, CTR at the threshold does not; require_both needs both.
func TestHeldBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		both   bool
		events []Metric // of ad "a", decided at t0
		held   bool
	}{
		{"roas exactly at the threshold", false, []Metric{{EventID: "1", TS: t0 + hour, Spend: 100, Revenue: 300}}, true},
		{"roas just below", false, []Metric{{EventID: "1", TS: t0 + hour, Spend: 100, Revenue: 299.99}}, false},
		{"roas from decimal sums", false, []Metric{
			{EventID: "1", TS: t0 + 1, Spend: 33.3, Revenue: 100}, {EventID: "2", TS: t0 + 2, Spend: 33.3, Revenue: 100},
			{EventID: "3", TS: t0 + 3, Spend: 33.4, Revenue: 100}}, true},
		{"ctr exactly at the threshold", false, []Metric{{EventID: "1", TS: t0 + hour, Impressions: 1000, Clicks: 30}}, false},
		{"ctr just above", false, []Metric{{EventID: "1", TS: t0 + hour, Impressions: 1000, Clicks: 31}}, true},
		{"zero spend and impressions", false, []Metric{{EventID: "1", TS: t0 + hour}}, false},
		{"event at the decision's ts is outside", false, []Metric{{EventID: "1", TS: t0, Spend: 1, Revenue: 10}}, false},
		{"event at ts + 24h is inside", false, []Metric{{EventID: "1", TS: t0 + 24*hour, Spend: 1, Revenue: 10}}, true},
		{"event at ts + 24h + 1ms is outside", false, []Metric{{EventID: "1", TS: t0 + 24*hour + 1, Spend: 1, Revenue: 10}}, false},
		{"a duplicate event counts once", false, []Metric{
			{EventID: "1", TS: t0 + hour, Spend: 100, Revenue: 150}, {EventID: "1", TS: t0 + hour, Spend: 100, Revenue: 150},
			{EventID: "2", TS: t0 + 2*hour, Spend: 0, Revenue: 150}}, true},
		{"require_both: roas alone", true, []Metric{{EventID: "1", TS: t0 + hour, Spend: 100, Revenue: 300, Impressions: 1000, Clicks: 30}}, false},
		{"require_both: both", true, []Metric{{EventID: "1", TS: t0 + hour, Spend: 100, Revenue: 300, Impressions: 1000, Clicks: 31}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			s.RequireBoth = tc.both
			tr := New(s)
			tr.Decision(Live, winner("d", "a", t0))
			for _, m := range tc.events {
				m.AdID = "a"
				tr.Event(m)
			}
			if tr.wm <= t0+24*hour {
				tr.Event(clock(t0 + 24*hour)) // not yet past the horizon
				if r := tr.Report(); r.Live.Resolved != 0 {
					t.Fatalf("resolved at the horizon itself: %+v", r.Live)
				}
			}
			tr.Event(clock(t0 + 24*hour + 1))
			r := tr.Report()
			if r.Live.Resolved != 1 || (r.Live.Held == 1) != tc.held {
				t.Fatalf("live %+v, want held %v", r.Live, tc.held)
			}
		})
	}
}

// scenario is a history: n ads, each decided by the live side, the shadow
// or both, one decision per hour, each followed an hour later by an event
// that makes it hold (ROAS 4) or not (ROAS 1).
type scenario struct {
	events       []Metric // in ts order
	live, shadow []rules.Decision
}

// build makes n ads; ad i is good when good(i), decided by the live side
// when live(i) and by the shadow when shadow(i).
func build(n int, good, live, shadow func(i int) bool) scenario {
	var sc scenario
	for i := range n {
		ad := fmt.Sprintf("ad%04d", i)
		ts := t0 + int64(i)*hour
		if live(i) {
			sc.live = append(sc.live, winner("l"+ad, ad, ts))
		}
		if shadow(i) {
			sc.shadow = append(sc.shadow, winner("s"+ad, ad, ts))
		}
		rev := 10.0
		if good(i) {
			rev = 40
		}
		sc.events = append(sc.events, Metric{AdID: ad, EventID: "e" + ad, TS: ts + hour, Impressions: 1000, Clicks: 10, Spend: 10, Revenue: rev})
	}
	// Far enough ahead that every decision resolves.
	sc.events = append(sc.events, clock(t0+int64(n)*hour+48*hour))
	return sc
}

func all(int) bool { return true }

// feed gives the tracker the decisions first, then the events.
func (sc scenario) feed(s Settings) Report {
	tr := New(s)
	for _, d := range sc.live {
		tr.Decision(Live, d)
	}
	for _, d := range sc.shadow {
		tr.Decision(Shadow, d)
	}
	for _, m := range sc.events {
		tr.Event(m)
	}
	return tr.Report()
}

// 55% of ads are good (i%20 < 11). The live side decides every ad.
func good55(i int) bool { return i%20 < 11 }

func TestPromoteWhenClearlyBetter(t *testing.T) {
	// The shadow decides every good ad and 6 bad ones in 20: 1100/1700.
	sc := build(2000, good55, all, func(i int) bool { return i%20 < 17 })
	r := sc.feed(DefaultSettings())
	if r.Live != (SideReport{2000, 2000, 1100, 0.55}) {
		t.Errorf("live %+v", r.Live)
	}
	if r.Shadow.Decisions != 1700 || r.Shadow.Resolved != 1700 || r.Shadow.Held != 1100 {
		t.Errorf("shadow %+v", r.Shadow)
	}
	if !r.Promote || len(r.Reasons) != 0 {
		t.Fatalf("promote %v, reasons %q", r.Promote, r.Reasons)
	}
	if r.Z < 5 || r.PValue > 1e-6 || math.Abs(r.ImprovementPct-17.65) > 0.01 || math.Abs(r.ImprovementPts-9.71) > 0.01 {
		t.Errorf("z %v p %v improvement %v%% %v points", r.Z, r.PValue, r.ImprovementPct, r.ImprovementPts)
	}
	if want := []Agreement{{Rule: "winner", Both: 1700, LiveOnly: 300}}; !reflect.DeepEqual(r.Agreement, want) {
		t.Errorf("agreement %+v, want %+v", r.Agreement, want)
	}
}

func TestNoPromoteWhenNotBetter(t *testing.T) {
	// The shadow leaves out 20 of the 900 bad ads: 1100/1980 = 0.5556,
	// 1% better, not significant.
	sc := build(2000, good55, all, func(i int) bool { return i%100 != 19 })
	r := sc.feed(DefaultSettings())
	if r.Promote {
		t.Fatalf("promoted: %+v", r)
	}
	if r.Shadow.Precision <= r.Live.Precision || r.ImprovementPct >= 2 {
		t.Fatalf("the scenario should be a little better, under 2%%: live %v shadow %v (%v%%)", r.Live.Precision, r.Shadow.Precision, r.ImprovementPct)
	}
	met := map[string]bool{}
	for _, c := range r.Criteria {
		met[c.Name] = c.Met
	}
	if want := map[string]bool{"samples": true, "improvement": false, "accuracy_delta": true, "significance": false}; !reflect.DeepEqual(met, want) {
		t.Errorf("criteria %v, want %v", met, want)
	}
	if len(r.Reasons) != 2 || !strings.Contains(r.Reasons[0], "needs at least +2.00%") || !strings.Contains(r.Reasons[1], "not significant") {
		t.Errorf("reasons %q", r.Reasons)
	}

	// The same precision on both sides: no improvement either.
	r = build(2000, good55, all, all).feed(DefaultSettings())
	if r.Promote || r.ImprovementPct != 0 || r.Z != 0 {
		t.Errorf("equal sides: promote %v, improvement %v, z %v", r.Promote, r.ImprovementPct, r.Z)
	}
}

func TestNoPromoteWithTooFewSamples(t *testing.T) {
	sc := build(400, good55, all, func(i int) bool { return i%20 < 13 })
	r := sc.feed(DefaultSettings())
	if r.Promote || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "too few resolved decisions: live 400, shadow 260; each side needs 1000") {
		t.Fatalf("promote %v, reasons %q", r.Promote, r.Reasons)
	}
	// With min_samples lowered, the same history promotes.
	s := DefaultSettings()
	s.MinSamples = 200
	if r := sc.feed(s); !r.Promote {
		t.Fatalf("min_samples 200: reasons %q", r.Reasons)
	}
}

// TestAgreement: counted once per (rule, ad), whatever the number of
// decisions; duplicates of one decision_id count once in every way.
func TestAgreement(t *testing.T) {
	tr := New(DefaultSettings())
	for _, d := range []rules.Decision{winner("l1", "a1", t0), winner("l2", "a2", t0), winner("l3", "a3", t0),
		{DecisionID: "l4", RuleID: "scale", Type: "budget", AdID: "a1", TS: rules.Time(t0)},
		{Type: "config_applied"}} {
		tr.Decision(Live, d)
	}
	for _, d := range []rules.Decision{winner("s2", "a2", t0), winner("s2", "a2", t0), winner("s2b", "a2", t0+hour),
		winner("s3", "a3", t0), winner("s4", "a4", t0),
		{DecisionID: "s5", RuleID: "pause", Type: "pause", AdID: "a9", TS: rules.Time(t0)}} {
		tr.Decision(Shadow, d)
	}
	r := tr.Report()
	want := []Agreement{
		{Rule: "pause", ShadowOnly: 1},
		{Rule: "scale", LiveOnly: 1},
		{Rule: "winner", Both: 2, LiveOnly: 1, ShadowOnly: 1},
	}
	if !reflect.DeepEqual(r.Agreement, want) {
		t.Errorf("agreement\n got %+v\nwant %+v", r.Agreement, want)
	}
	if r.Live.Decisions != 3 || r.Shadow.Decisions != 4 || r.Live.Resolved != 0 {
		t.Errorf("live %+v shadow %+v", r.Live, r.Shadow)
	}
}

// TestInterleavings: events in ts order, decisions anywhere from first to
// just before the watermark passes their horizon: the same report.
func TestInterleavings(t *testing.T) {
	sc := build(300, good55, func(i int) bool { return i%3 != 0 }, func(i int) bool { return i%20 < 15 })
	// Several events per ad, spread over the horizon and beyond it, some
	// duplicated.
	var events []Metric
	for _, m := range sc.events {
		events = append(events, m)
		if m.AdID != "clock" {
			for k := int64(1); k <= 4; k++ {
				events = append(events, Metric{AdID: m.AdID, EventID: fmt.Sprint(m.EventID, k), TS: m.TS + k*7*hour, Impressions: 100, Clicks: k, Spend: 3.3, Revenue: 3.3 * float64(k)})
			}
			events = append(events, m) // a duplicate
		}
	}
	sortMetrics(events)
	s := DefaultSettings()
	s.MinSamples = 50
	want := scenario{events: events, live: sc.live, shadow: sc.shadow}.feed(s)
	if want.Live.Resolved != len(sc.live) || want.Shadow.Resolved != len(sc.shadow) {
		t.Fatalf("not all resolved: %+v %+v", want.Live, want.Shadow)
	}

	type item struct {
		side Side
		d    rules.Decision
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(0, seed))
		// Each decision goes before a random event among those that do not
		// yet move the watermark past its horizon.
		slots := make([][]item, len(events)+1)
		place := func(side Side, d rules.Decision) {
			last := 0
			for last < len(events) && events[last].TS <= int64(d.TS)+24*hour {
				last++
			}
			var k int
			switch seed {
			case 0:
				k = 0 // every decision first
			case 1:
				k = last // every decision as late as it may be
			default:
				k = rng.IntN(last + 1)
			}
			slots[k] = append(slots[k], item{side, d})
		}
		for _, d := range sc.live {
			place(Live, d)
		}
		for _, d := range sc.shadow {
			place(Shadow, d)
		}
		tr := New(s)
		for i := range slots {
			rng.Shuffle(len(slots[i]), func(a, b int) { slots[i][a], slots[i][b] = slots[i][b], slots[i][a] })
			for _, it := range slots[i] {
				tr.Decision(it.side, it.d)
			}
			if i < len(events) {
				tr.Event(events[i])
			}
		}
		if got := tr.Report(); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: a different report\n got %+v\nwant %+v", seed, got, want)
		}
	}
}

func sortMetrics(ms []Metric) {
	// Stable: a duplicate keeps its place after the original.
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].TS < ms[j-1].TS; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

// TestBoundedMemory: a long history keeps only the last horizons of events.
func TestBoundedMemory(t *testing.T) {
	tr := New(DefaultSettings())
	maxKept := 0
	for i := range 24 * 30 { // 30 days, one event an hour for each of 10 ads
		ts := t0 + int64(i)*hour
		if i%24 == 0 {
			tr.Decision(Shadow, winner(fmt.Sprint("d", i), "ad1", ts))
		}
		for a := range 10 {
			tr.Event(Metric{AdID: fmt.Sprint("ad", a), EventID: fmt.Sprint(i), TS: ts, Spend: 1, Revenue: 4})
		}
		maxKept = max(maxKept, tr.Kept())
	}
	if maxKept > 10*2*24+10 {
		t.Errorf("kept up to %d events, want at most two horizons (%d)", maxKept, 10*2*24+10)
	}
	if r := tr.Report(); r.Shadow.Resolved != 29 || r.Shadow.Held != 29 {
		t.Errorf("shadow %+v", r.Shadow)
	}
}

// TestNoClock keeps the package free of clocks, randomness and I/O.
func TestNoClock(t *testing.T) {
	for _, f := range []string{"doc.go", "settings.go", "tracker.go", "report.go"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"time.Now(", "time.Since(", `"math/rand`, `"os"`, `"io"`, `"net`, `"log`} {
			if strings.Contains(string(data), bad) {
				t.Errorf("%s mentions %s", f, bad)
			}
		}
	}
}
