package gen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric is a validated metric event, as a consumer following DESIGN S2 and
// S7 would read it.
type metric struct {
	eventID, accountID, adID, videoID string
	ts, createdAt                     int64 // epoch ms; createdAt 0 when absent
	impressions, clicks, conversions  int64
	spend, revenue                    float64
	epoch                             bool // ts was epoch milliseconds
}

// validate parses one line per S2 and S7; it returns an error for a line
// that belongs in the DLQ.
func validate(line []byte) (metric, error) {
	var m metric
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return m, fmt.Errorf("not JSON: %v", err)
	}
	if dec.More() {
		return m, fmt.Errorf("trailing data")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return m, fmt.Errorf("not an object")
	}
	str := func(k string, required bool) (string, error) {
		x, ok := obj[k]
		if !ok {
			if required {
				return "", fmt.Errorf("%s missing", k)
			}
			return "", nil
		}
		s, ok := x.(string)
		if !ok || required && s == "" {
			return "", fmt.Errorf("%s empty or not a string", k)
		}
		return s, nil
	}
	count := func(k string, required bool) (int64, error) {
		x, ok := obj[k]
		if !ok {
			if required {
				return 0, fmt.Errorf("%s missing", k)
			}
			return 0, nil
		}
		n, ok := x.(json.Number)
		if !ok {
			return 0, fmt.Errorf("%s not a number", k)
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i < 0 {
			return 0, fmt.Errorf("%s not a non-negative integer: %s", k, n)
		}
		return i, nil
	}
	money := func(k string, required bool) (float64, error) {
		x, ok := obj[k]
		if !ok {
			if required {
				return 0, fmt.Errorf("%s missing", k)
			}
			return 0, nil
		}
		n, ok := x.(json.Number)
		if !ok {
			return 0, fmt.Errorf("%s not a number", k)
		}
		f, err := n.Float64()
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%s bad money %s", k, n)
		}
		if i := strings.IndexByte(string(n), '.'); i < 0 || len(n)-i-1 != 2 {
			return 0, fmt.Errorf("%s not two decimals: %s", k, n)
		}
		return f, nil
	}
	tm := func(k string, required bool) (int64, bool, error) {
		x, ok := obj[k]
		if !ok {
			if required {
				return 0, false, fmt.Errorf("%s missing", k)
			}
			return 0, false, nil
		}
		switch x := x.(type) {
		case json.Number:
			i, err := strconv.ParseInt(string(x), 10, 64)
			if err != nil || i < 0 {
				return 0, false, fmt.Errorf("%s bad epoch ms %s", k, x)
			}
			return i, true, nil
		case string:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return 0, false, fmt.Errorf("%s: %v", k, err)
			}
			return t.UnixMilli(), false, nil
		}
		return 0, false, fmt.Errorf("%s bad type", k)
	}
	var err error
	step := func(e error) {
		if err == nil {
			err = e
		}
	}
	var e error
	m.eventID, e = str("event_id", true)
	step(e)
	m.accountID, e = str("account_id", true)
	step(e)
	m.adID, e = str("ad_id", true)
	step(e)
	m.videoID, e = str("video_id", false)
	step(e)
	for _, k := range []string{"campaign_id", "adset_id"} {
		_, e = str(k, false)
		step(e)
	}
	m.ts, m.epoch, e = tm("ts", true)
	step(e)
	m.createdAt, _, e = tm("created_at", false)
	step(e)
	m.impressions, e = count("impressions", true)
	step(e)
	m.clicks, e = count("clicks", true)
	step(e)
	m.conversions, e = count("conversions", false)
	step(e)
	m.spend, e = money("spend", true)
	step(e)
	m.revenue, e = money("revenue", false)
	step(e)
	_, e = money("budget", false)
	step(e)
	return m, err
}

func lines(b []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

func generate(t testing.TB, o Options) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Events(&buf, o)
	if err != nil {
		t.Fatalf("Events(%+v): %v", o, err)
	}
	return buf.Bytes(), st
}

// classify checks every line and returns the good, non-duplicate events in
// order, the count of bad lines and of duplicates. A duplicate must repeat an
// earlier good line byte for byte.
func classify(t *testing.T, out []byte) (good []metric, bad, dups int) {
	t.Helper()
	first := map[string][]byte{}
	for i, l := range lines(out) {
		m, err := validate(l)
		if err != nil {
			bad++
			continue
		}
		if prev, ok := first[m.eventID]; ok {
			if !bytes.Equal(prev, l) {
				t.Fatalf("line %d repeats event_id %s with other bytes:\n%s\n%s", i+1, m.eventID, prev, l)
			}
			dups++
			continue
		}
		first[m.eventID] = l
		if m.clicks > m.impressions || m.conversions > m.clicks {
			t.Fatalf("line %d: clicks %d impressions %d conversions %d", i+1, m.clicks, m.impressions, m.conversions)
		}
		good = append(good, m)
	}
	return good, bad, dups
}

// winners applies DESIGN S1, S3, S4 and S6 with the default parameters:
// impressions >= 1000, hours_live >= 24, ctr > 3% or roas > 3.0.
func winners(good []metric) []string {
	type agg struct {
		first, created      int64
		impressions, clicks int64
		spend, revenue      float64
		won                 bool
	}
	ads := map[string]*agg{}
	var won []string
	for _, m := range good {
		a := ads[m.adID]
		if a == nil {
			a = &agg{first: m.ts}
			ads[m.adID] = a
		}
		if a.created == 0 && m.createdAt != 0 {
			a.created = m.createdAt
		}
		a.impressions += m.impressions
		a.clicks += m.clicks
		a.spend += m.spend
		a.revenue += m.revenue
		born := a.first
		if a.created != 0 {
			born = a.created
		}
		hours := float64(m.ts-born) / 3.6e6
		var ctr, roas float64
		if a.impressions > 0 {
			ctr = float64(a.clicks) / float64(a.impressions)
		}
		if a.spend > 0 {
			roas = a.revenue / a.spend
		}
		if !a.won && a.impressions >= 1000 && hours >= 24 && (ctr > 0.03 || roas > 3.0) {
			a.won = true
			won = append(won, m.adID)
		}
	}
	return won
}

func TestDeterministic(t *testing.T) {
	o := Options{BadPct: 2, DupPct: 2, EpochMsPct: 30}
	a, sa := generate(t, o)
	b, sb := generate(t, o)
	if !bytes.Equal(a, b) || sa != sb {
		t.Fatal("same options gave different output")
	}
	o.Seed = 2
	c, _ := generate(t, o)
	if bytes.Equal(a, c) {
		t.Fatal("seeds 1 and 2 gave the same output")
	}
	if d, _ := generate(t, Options{Seed: 1, BadPct: 2, DupPct: 2, EpochMsPct: 30}); !bytes.Equal(a, d) {
		t.Fatal("Seed 0 is not the default seed 1")
	}
}

func TestDefaults(t *testing.T) {
	out, st := generate(t, Options{})
	good, bad, dups := classify(t, out)
	if st.Lines != len(lines(out)) || st.Good != len(good) || st.Bad != 0 || bad != 0 || dups != 0 || st.Dups != 0 {
		t.Fatalf("stats %+v; counted good %d bad %d dups %d", st, len(good), bad, dups)
	}
	ads := map[string]bool{}
	var prevTS int64
	for i, m := range good {
		ads[m.adID] = true
		if m.ts < prevTS {
			t.Fatalf("event %d goes back in time", i)
		}
		prevTS = m.ts
		if m.epoch {
			t.Fatal("epoch ms time with EpochMsPct 0")
		}
	}
	if st.Ads != len(ads) || st.Ads != 120 {
		t.Fatalf("Stats.Ads %d, distinct ads %d, want 120", st.Ads, len(ads))
	}
	start := defaultStart.UnixMilli()
	if good[0].ts <= start || prevTS > start+7*24*3600*1000 {
		t.Fatalf("ts outside (Start, Start+7d]: %d..%d", good[0].ts, prevTS)
	}
	won := winners(good)
	t.Logf("defaults: %+v, %d winners %v", st, len(won), won)
	if n := len(won); n < 2 || n > 12 {
		t.Fatalf("%d winners of 120 ads, want a few percent", n)
	}
}

func TestWinnersAcrossSeeds(t *testing.T) {
	total := 0
	for seed := uint64(1); seed <= 8; seed++ {
		out, _ := generate(t, Options{Seed: seed})
		good, _, _ := classify(t, out)
		n := len(winners(good))
		t.Logf("seed %d: %d winners", seed, n)
		total += n
	}
	// a few percent of 8*120 ads
	if total < 8*120*2/100 || total > 8*120*10/100 {
		t.Fatalf("%d winners over 8 seeds", total)
	}
}

func TestRealism(t *testing.T) {
	out, _ := generate(t, Options{Seed: 3, Accounts: 6})
	good, _, _ := classify(t, out)
	type tot struct {
		impr, clicks    int64
		spend, revenue  float64
		hasVideo, hasCA bool
	}
	per := map[string]*tot{}
	var order []string
	for _, m := range good {
		a := per[m.adID]
		if a == nil {
			a = &tot{}
			per[m.adID] = a
			order = append(order, m.adID)
		}
		a.impr += m.impressions
		a.clicks += m.clicks
		a.spend += m.spend
		a.revenue += m.revenue
		a.hasVideo = a.hasVideo || m.videoID != ""
		a.hasCA = a.hasCA || m.createdAt != 0
	}
	var cpms, ctrs, roases []float64
	video, created := 0, 0
	for _, id := range order {
		a := per[id]
		if a.hasVideo {
			video++
		}
		if a.hasCA {
			created++
		}
		if a.impr < 5000 {
			continue
		}
		cpms = append(cpms, a.spend/float64(a.impr)*1000)
		ctrs = append(ctrs, float64(a.clicks)/float64(a.impr))
		roases = append(roases, a.revenue/a.spend)
	}
	q := func(xs []float64, p float64) float64 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[int(p*float64(len(s)-1))]
	}
	t.Logf("ads %d, with >=5000 impressions %d; CPM p10 %.2f p50 %.2f p90 %.2f; CTR p10 %.4f p50 %.4f p90 %.4f max %.4f; ROAS p10 %.2f p50 %.2f p90 %.2f max %.2f",
		len(order), len(cpms), q(cpms, .1), q(cpms, .5), q(cpms, .9), q(ctrs, .1), q(ctrs, .5), q(ctrs, .9), q(ctrs, 1), q(roases, .1), q(roases, .5), q(roases, .9), q(roases, 1))
	if m := q(cpms, .5); m < 5 || m > 25 {
		t.Errorf("median CPM %.2f", m)
	}
	if m := q(ctrs, .5); m < 0.008 || m > 0.018 {
		t.Errorf("median CTR %.4f", m)
	}
	if m := q(roases, .5); m < 0.7 || m > 1.8 {
		t.Errorf("median ROAS %.2f", m)
	}
	if lo, hi := q(roases, .1), q(roases, .9); lo < 0.3 || hi > 3 {
		t.Errorf("ROAS p10 %.2f p90 %.2f, want mostly 0.5..2.5", lo, hi)
	}
	if video < len(order)*7/10 || video == len(order) {
		t.Errorf("%d of %d ads have a video", video, len(order))
	}
	if created < len(order)*8/10 {
		t.Errorf("%d of %d ads carry created_at", created, len(order))
	}

	// The daily pattern: the busiest hour of the day carries at least
	// twice the impressions of the quietest (account act_1001, UTC-5).
	var byHour [24]int64
	for _, m := range good {
		if m.accountID == "act_1001" {
			byHour[time.UnixMilli(m.ts).UTC().Hour()] += m.impressions
		}
	}
	lo, hi := byHour[0], byHour[0]
	for _, v := range byHour {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi < 2*lo {
		t.Errorf("no daily pattern: impressions by hour %v", byHour)
	}
}

func TestNoise(t *testing.T) {
	o := Options{Seed: 7, BadPct: 5, DupPct: 3, EpochMsPct: 30}
	out, st := generate(t, o)
	good, bad, dups := classify(t, out)
	n := len(lines(out))
	if st.Lines != n || st.Good != len(good) || st.Bad != bad || st.Dups != dups || st.Lines != st.Good+st.Bad+st.Dups {
		t.Fatalf("stats %+v; counted lines %d good %d bad %d dups %d", st, n, len(good), bad, dups)
	}
	near := func(name string, got int, wantPct float64) {
		pct := 100 * float64(got) / float64(n)
		if math.Abs(pct-wantPct) > 1 {
			t.Errorf("%s: %.2f%% of lines, want %.1f%%", name, pct, wantPct)
		}
	}
	near("bad", bad, 5)
	near("dups", dups, 3)
	epoch := 0
	for _, m := range good {
		if m.epoch {
			epoch++
		}
	}
	if pct := 100 * float64(epoch) / float64(len(good)); math.Abs(pct-30) > 2 {
		t.Errorf("%.1f%% of good events use epoch ms, want 30%%", pct)
	}

	// The good events are the same as without noise, only the epoch choice
	// aside: compare ids and counts.
	clean, _ := generate(t, Options{Seed: 7, EpochMsPct: 30})
	cg, _, _ := classify(t, clean)
	if len(cg) != len(good) {
		t.Fatalf("noise changed the good events: %d vs %d", len(cg), len(good))
	}
	for i := range cg {
		if cg[i] != good[i] {
			t.Fatalf("good event %d differs: %+v vs %+v", i, cg[i], good[i])
		}
	}

	// Every kind of malformed line appears.
	kinds := map[string]int{}
	for _, l := range lines(out) {
		_, err := validate(l)
		if err == nil {
			continue
		}
		msg := err.Error()
		kind := "other: " + msg
		for _, k := range []struct{ sub, kind string }{
			{"not JSON", "not JSON"},
			{"not an object", "array"},
			{" missing", "missing field"},
			{"ad_id empty", "empty ad_id"},
			{"integer: -", "negative count"},
			{".5", "fractional count"},
			{"impressions not a number", "string count"},
			{"spend not a number", "NaN spend"},
			{"ts: ", "bad time"},
			{"created_at: ", "bad time"},
		} {
			if strings.Contains(msg, k.sub) {
				kind = k.kind
				break
			}
		}
		kinds[kind]++
	}
	t.Logf("bad kinds: %v", kinds)
	if len(kinds) != 9 {
		t.Errorf("want 9 kinds of malformed lines, got %v", kinds)
	}
}

func TestEventsExact(t *testing.T) {
	for _, n := range []int{1, 1000, 50_000} {
		out, st := generate(t, Options{Events: n, BadPct: 1, DupPct: 1})
		if got := len(lines(out)); got != n || st.Lines != n {
			t.Fatalf("Events %d: wrote %d lines, stats %+v", n, got, st)
		}
	}
	// Past the span, time goes on.
	out, _ := generate(t, Options{Events: 50_000})
	good, _, _ := classify(t, out)
	end := defaultStart.Add(7 * 24 * time.Hour).UnixMilli()
	if last := good[len(good)-1].ts; last <= end {
		t.Fatalf("50000 events end at %v, not past the span", time.UnixMilli(last).UTC())
	}
	// Below the span, the first n lines equal a prefix of the full output.
	full, _ := generate(t, Options{})
	part, _ := generate(t, Options{Events: 1000})
	if !bytes.HasPrefix(full, part) {
		t.Fatal("Events 1000 is not a prefix of the full output")
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{
		{Accounts: -1},
		{Interval: -time.Hour},
		{Duration: -time.Hour},
		{Events: -1},
		{BadPct: 101},
		{BadPct: 60, DupPct: 50},
		{EpochMsPct: -1},
	} {
		if _, err := Events(io.Discard, o); err == nil {
			t.Errorf("Events(%+v): no error", o)
		}
	}
}

func TestOtherIntervals(t *testing.T) {
	out, st := generate(t, Options{Accounts: 1, AdsPerAccount: 5, Duration: 6 * time.Hour, Interval: 15 * time.Minute, Start: time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("", 3600))})
	good, bad, _ := classify(t, out)
	if bad != 0 || len(good) != st.Good || st.Good == 0 {
		t.Fatalf("stats %+v, good %d, bad %d", st, len(good), bad)
	}
}

func BenchmarkEvents(b *testing.B) {
	b.ReportAllocs()
	st, err := Events(io.Discard, Options{Events: b.N, BadPct: 1, DupPct: 1, EpochMsPct: 30})
	if err != nil || st.Lines != b.N {
		b.Fatal(st, err)
	}
}

type proposalLine struct {
	ActionID  string   `json:"action_id"`
	TS        string   `json:"ts"`
	AccountID string   `json:"account_id"`
	AdID      string   `json:"ad_id"`
	AdsetID   string   `json:"adset_id"`
	Type      string   `json:"type"`
	OldBudget *float64 `json:"old_budget"`
	NewBudget *float64 `json:"new_budget"`
	Source    string   `json:"source"`
	t         int64
}

func proposals(t *testing.T, o ProposalOptions) ([]byte, []proposalLine) {
	t.Helper()
	var buf bytes.Buffer
	n, err := Proposals(&buf, o)
	if err != nil {
		t.Fatal(err)
	}
	var ps []proposalLine
	for i, l := range lines(buf.Bytes()) {
		var p proposalLine
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		ts, err := time.Parse(time.RFC3339, p.TS)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		p.t = ts.UnixMilli()
		ps = append(ps, p)
	}
	if n != len(ps) {
		t.Fatalf("Proposals returned %d, wrote %d lines", n, len(ps))
	}
	return buf.Bytes(), ps
}

func TestProposals(t *testing.T) {
	a, ps := proposals(t, ProposalOptions{})
	b, _ := proposals(t, ProposalOptions{Seed: 1})
	if !bytes.Equal(a, b) {
		t.Fatal("same options gave different proposals")
	}
	if c, _ := proposals(t, ProposalOptions{Seed: 2}); bytes.Equal(a, c) {
		t.Fatal("seeds 1 and 2 gave the same proposals")
	}
	if len(ps) != 500 {
		t.Fatalf("%d proposals, want 500", len(ps))
	}

	// The ads and ad sets named exist in the events of the same options,
	// and each ad has reported by the time it is named (or reports within
	// the hour, the interval that holds its launch).
	events, _ := generate(t, Options{})
	good, _, _ := classify(t, events)
	firstSeen := map[string]int64{}
	adsets := map[string]bool{}
	for _, m := range good {
		if _, ok := firstSeen[m.adID]; !ok {
			firstSeen[m.adID] = m.ts
		}
	}
	for _, l := range lines(events) {
		var v struct {
			AdsetID string `json:"adset_id"`
		}
		if json.Unmarshal(l, &v) == nil && v.AdsetID != "" {
			adsets[v.AdsetID] = true
		}
	}

	ids := map[string]bool{}
	var prev int64
	start, end := defaultStart.UnixMilli(), defaultStart.Add(7*24*time.Hour).UnixMilli()
	pauses, setOnly := 0, 0
	for i, p := range ps {
		if ids[p.ActionID] || p.ActionID == "" {
			t.Fatalf("proposal %d: action_id %q repeated or empty", i, p.ActionID)
		}
		ids[p.ActionID] = true
		if p.t < prev || p.t < start || p.t >= end {
			t.Fatalf("proposal %d: ts %s out of order or span", i, p.TS)
		}
		prev = p.t
		if p.Source != "external" || p.AccountID == "" {
			t.Fatalf("proposal %d: %+v", i, p)
		}
		switch {
		case p.AdID != "" && p.AdsetID == "":
			seen, ok := firstSeen[p.AdID]
			if !ok || seen > p.t+time.Hour.Milliseconds() {
				t.Fatalf("proposal %d names ad %s before it is live", i, p.AdID)
			}
			if !strings.HasPrefix(p.AdID, "ad_"+strings.TrimPrefix(p.AccountID, "act_")+"_") {
				t.Fatalf("proposal %d: ad %s not in account %s", i, p.AdID, p.AccountID)
			}
		case p.AdID == "" && p.AdsetID != "":
			if !adsets[p.AdsetID] {
				t.Fatalf("proposal %d: unknown ad set %s", i, p.AdsetID)
			}
			setOnly++
		default:
			t.Fatalf("proposal %d names ad %q and ad set %q", i, p.AdID, p.AdsetID)
		}
		switch p.Type {
		case "pause":
			pauses++
			if p.NewBudget != nil {
				t.Fatalf("proposal %d: pause with new_budget", i)
			}
		case "budget_change":
			if p.OldBudget == nil || p.NewBudget == nil || *p.OldBudget <= 0 {
				t.Fatalf("proposal %d: budgets missing", i)
			}
			if r := *p.NewBudget / *p.OldBudget; r < 0.69 || r > 1.41 || r == 1 {
				t.Fatalf("proposal %d: change %.3f outside -30%%..+40%%", i, r)
			}
		default:
			t.Fatalf("proposal %d: type %q", i, p.Type)
		}
	}
	if pauses < 25 || setOnly < 25 {
		t.Errorf("%d pauses and %d ad-set-only proposals of 500", pauses, setOnly)
	}

	// Bursts past 15 an hour per account.
	bursts := 0
	for i := range ps {
		n := 0
		for j := i; j >= 0 && ps[j].t > ps[i].t-time.Hour.Milliseconds(); j-- {
			if ps[j].AccountID == ps[i].AccountID {
				n++
			}
		}
		if n == 16 {
			bursts++
		}
	}
	if bursts < 2 {
		t.Errorf("%d times an account passed 15 proposals an hour", bursts)
	}

	// Small steps that add up: an entity whose budget changes, each within
	// 20%, move it more than 20% within 6 hours.
	type change struct {
		t        int64
		old, new float64
	}
	byEntity := map[string][]change{}
	var order []string
	for _, p := range ps {
		if p.Type != "budget_change" {
			continue
		}
		k := p.AdID + p.AdsetID
		if _, ok := byEntity[k]; !ok {
			order = append(order, k)
		}
		byEntity[k] = append(byEntity[k], change{p.t, *p.OldBudget, *p.NewBudget})
	}
	ladders := 0
	for _, k := range order {
		cs := byEntity[k]
		for i := range cs {
			for j := i + 1; j < len(cs) && cs[j].t-cs[i].t <= 6*time.Hour.Milliseconds(); j++ {
				small := true
				for _, c := range cs[i : j+1] {
					small = small && math.Abs(c.new-c.old)/c.old <= 0.2
				}
				if small && math.Abs(cs[j].new-cs[i].old)/cs[i].old > 0.2 {
					ladders++
					goto next
				}
			}
		}
	next:
	}
	if ladders < 3 {
		t.Errorf("%d entities with small steps that add up past 20%% in 6h", ladders)
	}
	t.Logf("500 proposals: %d pauses, %d ad-set only, %d burst windows, %d ladders", pauses, setOnly, bursts, ladders)

	if n, err := Proposals(io.Discard, ProposalOptions{Count: 7}); n != 7 || err != nil {
		t.Fatalf("Count 7: %d, %v", n, err)
	}
	if _, err := Proposals(io.Discard, ProposalOptions{Count: -1}); err == nil {
		t.Fatal("Count -1: no error")
	}
}
