package engine_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// evictRules reads short windows, so that ads go silent for longer than
// the rule set looks back (12 hours) many times in ten days of events; its
// decisions carry window sums, so a bucket lost or doubled shows.
const evictRules = `
name: evict
windows: [1h, 6h]
dedupe: {horizon: 6h}
rules:
  - id: winner
    when: ad.impressions >= 3000 && ad.ctr > 0.03
    once: per_ad
    emit: {type: rag_index_winner, values: [ctr, impressions, w6h.spend]}
  - id: hot
    when: w1h.clicks >= 15 && w6h.spend > 40
    cooldown: 3h
    emit: {type: hot, values: [w1h.clicks, w6h.spend, w6h.events]}
  - id: scale
    when: w6h.roas > 2 && w1h.spend > 5
    cooldown: 2h
    action: {type: budget_change, change_pct: 10}
`

func compileRules(t testing.TB, src string) *rules.RuleSet {
	t.Helper()
	doc, err := config.Load("evict.yaml", []byte(src), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// silentLog makes ten days of events of n ads that report in bursts and go
// silent for up to two days, with events that arrive up to two days late
// (many of them after their ad was evicted: some still within the dedupe
// horizon of the ad's newest event, some too late) and events re-sent up
// to two days later.
func silentLog(seed uint64, n int) (lines [][]byte, ids []string) {
	rng := rand.New(rand.NewPCG(seed, 3))
	const (
		minute = int64(60_000)
		hour   = 60 * minute
		day    = 24 * hour
		t0     = int64(1793491200000) // 2026-11-01T00:00:00Z
	)
	type timed struct {
		at   int64 // when it arrives
		line []byte
	}
	var log []timed
	for i := range n {
		id := fmt.Sprintf("ad%03d", i)
		ids = append(ids, id)
		budget := 50 + rng.IntN(100)
		for ts, k := t0+rng.Int64N(day), 0; ts < t0+10*day; k++ {
			if rng.IntN(12) == 0 {
				ts += 6*hour + rng.Int64N(2*day) // silent
			}
			ev := fmt.Sprintf(`{"event_id":"%s-%d","ts":%d,"account_id":"act%d","ad_id":"%s","impressions":%d,"clicks":%d,"spend":%g,"revenue":%g,"budget":%d}`,
				id, k, ts, i%5, id, 50+rng.IntN(150), rng.IntN(8), float64(rng.IntN(800))/100, float64(rng.IntN(3000))/100, budget)
			at := ts
			switch rng.IntN(20) {
			case 0:
				at += rng.Int64N(2 * day) // late
			case 1:
				log = append(log, timed{ts + rng.Int64N(2*day), []byte(ev)}) // re-sent
			}
			log = append(log, timed{at, []byte(ev)})
			ts += 10*minute + rng.Int64N(50*minute)
		}
	}
	slices.SortStableFunc(log, func(a, b timed) int { return cmp.Compare(a.at, b.at) })
	for _, x := range log {
		lines = append(lines, x.line)
	}
	return lines, ids
}

// everything is a sink that keeps all a batch writes but the sources'
// progress, one line each.
type everything struct {
	lines   []string
	crashAt int
	batches int
}

func (s *everything) Write(_ context.Context, o *engine.Output) error {
	add := func(kind string, v any) {
		b, err := engine.Encode(v)
		if err != nil {
			panic(err)
		}
		s.lines = append(s.lines, kind+" "+string(b))
	}
	for _, d := range o.Decisions {
		add("decision", d)
	}
	for _, p := range o.Proposals {
		add("proposal", p)
	}
	for _, d := range o.DeadLetters {
		add("dead", map[string]any{"input": d.Input, "reason": d.Reason})
	}
	for _, e := range o.Errors {
		add("error", e)
	}
	s.batches++
	if s.crashAt > 0 && s.batches == s.crashAt {
		return errCrash
	}
	return nil
}

// loadCounter counts the ads its partition loads from Pebble, reloads of
// evicted ones included.
type loadCounter struct {
	*state.Partition
	loads *atomic.Int64 // partitions run in parallel
}

func (c loadCounter) Ad(id string) (*rules.AdState, error) {
	n := c.Partition.Ads()
	st, err := c.Partition.Ad(id)
	if c.Partition.Ads() > n {
		c.loads.Add(1)
	}
	return st, err
}

// evictRun is run with or without eviction: without, the engine is given
// a PartitionState that cannot evict. It returns all the output, the
// state's file system, how many ads were loaded (reloads included) and
// how many the partitions held at the end.
func evictRun(t *testing.T, rs *rules.RuleSet, parts [][]engine.Record, seed uint64, maxBatch, crashAt int, evict bool) (out []string, fs vfs.FS, loads, held int) {
	fs = vfs.NewMem()
	var loaded atomic.Int64
	rnd := rand.New(rand.NewPCG(seed, 1))
	sink := &everything{crashAt: crashAt}
	for attempt := 0; ; attempt++ {
		db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: fs}})
		if err != nil {
			t.Fatal(err)
		}
		open := map[int32]*state.Partition{}
		store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) {
			ps, ok := open[p]
			if !ok {
				if ps, err = db.Partition(topic, p); err != nil {
					return nil, err
				}
				open[p] = ps
			}
			if evict {
				return loadCounter{ps, &loaded}, nil
			}
			return struct{ engine.PartitionState }{loadCounter{ps, &loaded}}, nil
		})
		committed := func(p int) int64 {
			ps, err := store.Partition("ad-metrics", int32(p))
			if err != nil {
				t.Fatal(err)
			}
			return ps.Offset()
		}
		eng, err := engine.New(rs, newScripted(parts, committed, rnd, maxBatch), sink, store)
		if err != nil {
			t.Fatal(err)
		}
		err = eng.Run(context.Background())
		held = 0
		for _, ps := range open {
			held += ps.Ads()
		}
		db.Close()
		if errors.Is(err, errCrash) && attempt == 0 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return sink.lines, fs, int(loaded.Load()), held
	}
}

// TestEvictionChangesNoOutput: the same log, with the same partitioning,
// batches and crash, run with and without eviction, writes the same output
// line for line (decisions with their window sums and explain traces,
// proposals, dead letters) and leaves every ad's state the same; and with
// eviction, evicted ads come back (more loads than without) and memory
// ends with fewer ads than the log has.
func TestEvictionChangesNoOutput(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("ADRULES_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (replay with ADRULES_SEED=%d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, 4))
	rs := compileRules(t, evictRules)
	lines, ids := silentLog(seed, 120)
	for i := range 3 {
		n := 1 + rnd.IntN(3)
		maxBatch := 1 + rnd.IntN(400)
		crashAt := rnd.IntN(8)
		runSeed := rnd.Uint64()
		parts := partitioned(lines, n)
		want, wantFS, wantLoads, _ := evictRun(t, rs, parts, runSeed, maxBatch, crashAt, false)
		got, gotFS, loads, held := evictRun(t, rs, parts, runSeed, maxBatch, crashAt, true)
		what := fmt.Sprintf("run %d (partitions %d, batches up to %d, crash at batch %d)", i, n, maxBatch, crashAt)
		t.Logf("%s: %d lines out; %d ad loads for %d ads (%d without eviction), %d held at the end", what, len(want), loads, len(ids), wantLoads, held)
		if !slices.Equal(got, want) {
			for j := range max(len(got), len(want)) {
				if j >= len(got) || j >= len(want) || got[j] != want[j] {
					t.Fatalf("%s: output line %d differs with eviction:\n got  %.400s\n want %.400s", what, j, at(got, j), at(want, j))
				}
			}
		}
		if loads <= wantLoads || held >= len(ids) {
			t.Fatalf("%s: %d loads (%d without eviction) of %d ads, %d held at the end: nothing was evicted and reloaded", what, loads, wantLoads, len(ids), held)
		}
		sameAds(t, what, gotFS, wantFS, n, ids, rs.HorizonMS())
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// sameAds compares what two runs committed for each ad: everything a later
// event can read (ids past the dedupe horizon aside, which expiry drops in
// batches whose timing depends on the order ids are held in).
func sameAds(t *testing.T, what string, gotFS, wantFS vfs.FS, n int, ids []string, horizonMS int64) {
	t.Helper()
	load := func(fs vfs.FS) map[string]string {
		db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: fs}})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		out := map[string]string{}
		for p := range n {
			ps, err := db.Partition("ad-metrics", int32(p))
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				st, err := ps.Ad(id)
				if err != nil {
					t.Fatal(err)
				}
				if st.Life.Events == 0 {
					continue
				}
				seen := slices.DeleteFunc(slices.Clone(st.Seen), func(s rules.Seen) bool { return s.TS <= st.MaxTS-horizonMS })
				slices.SortFunc(seen, func(a, b rules.Seen) int { return cmp.Or(cmp.Compare(a.TS, b.TS), strings.Compare(a.ID, b.ID)) })
				c := *st
				c.Seen, c.Dirty = seen, rules.Dirty{}
				out[id] = fmt.Sprintf("%+v", c)
			}
		}
		return out
	}
	got, want := load(gotFS), load(wantFS)
	for _, id := range ids {
		if got[id] != want[id] {
			t.Fatalf("%s: ad %s with eviction:\n  %s\nwithout:\n  %s", what, id, got[id], want[id])
		}
	}
}

// batchSource hands out the given batches, then io.EOF.
type batchSource struct{ batches [][]engine.Record }

func (s *batchSource) Poll(context.Context) ([]engine.Record, error) {
	if len(s.batches) == 0 {
		return nil, io.EOF
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}

func (s *batchSource) Commit(context.Context) error { return nil }

// TestEvictedWinnerStaysOnce: a winner that goes silent is evicted from
// memory; when it comes back and qualifies again, its once mark, reloaded
// from Pebble, keeps it from winning twice.
func TestEvictedWinnerStaysOnce(t *testing.T) {
	rs := compileRules(t, `
name: once
windows: [1h]
rules:
  - id: winner
    when: ad.impressions >= 1000 && ad.ctr > 0.03
    once: per_ad
    emit: {type: rag_index_winner, values: [impressions]}
`)
	db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: vfs.NewMem()}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ps, err := db.Partition("ad-metrics", 0)
	if err != nil {
		t.Fatal(err)
	}
	store := engine.StoreFunc(func(string, int32) (engine.PartitionState, error) { return ps, nil })
	const t0, hour = int64(1793491200000), int64(3_600_000)
	var off int64
	batch := func(lines ...string) []engine.Record {
		var recs []engine.Record
		for _, l := range lines {
			recs = append(recs, engine.Record{Topic: "ad-metrics", Offset: off, Value: []byte(l)})
			off++
		}
		return recs
	}
	event := func(ad string, k int, ts int64, impressions, clicks int) string {
		return fmt.Sprintf(`{"event_id":"%s-%d","ts":%d,"account_id":"act","ad_id":"%s","impressions":%d,"clicks":%d,"spend":1}`, ad, k, ts, ad, impressions, clicks)
	}
	var batches [][]engine.Record
	// w wins in its first hour, then goes silent for two days while
	// other reports hourly.
	batches = append(batches, batch(event("w", 0, t0, 600, 30), event("w", 1, t0+hour/2, 600, 30)))
	for h := 1; h <= 48; h++ {
		batches = append(batches, batch(event("other", h, t0+int64(h)*hour, 10, 0)))
	}
	sink := &everything{}
	eng, err := engine.New(rs, &batchSource{batches}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.lines) != 1 || !strings.Contains(sink.lines[0], `"ad_id":"w"`) {
		t.Fatalf("want one winner decision for w, got %q", sink.lines)
	}
	if got := ps.Ads(); got != 1 {
		t.Fatalf("%d ads in memory after w was silent for two days, want 1 (other): w was not evicted", got)
	}

	// w comes back, qualifying again.
	back := &batchSource{[][]engine.Record{batch(event("w", 2, t0+49*hour, 5000, 500), event("w", 3, t0+50*hour, 5000, 500))}}
	eng, err = engine.New(rs, back, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.lines) != 1 {
		t.Fatalf("w won again after its state was evicted and reloaded: %q", sink.lines[1:])
	}
	st, err := ps.Ad("w")
	if err != nil {
		t.Fatal(err)
	}
	if st.Life.Events != 4 || st.Life.Impressions != 11200 || len(st.Marks) != 1 {
		t.Fatalf("w reloaded: %d events, %d impressions, marks %v; want 4, 11200 and the winner mark", st.Life.Events, st.Life.Impressions, st.Marks)
	}
}
