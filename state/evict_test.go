package state_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"weak"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The engine tells the state how long to keep silent ads.
var _ engine.Evicter = (*state.Partition)(nil)

// TestEvictSilentAds: of many ads, most report once and go silent while a
// few keep reporting. Nothing is evicted while the silent ones are within
// the rule set's reach; once event time has passed it, the ads in memory
// are the active ones, and each evicted ad reloads as it was, marks and
// all.
func TestEvictSilentAds(t *testing.T) {
	const (
		silent, active = 2000, 20
		keep, horizon  = dayMS, 12 * hourMS
	)
	db := open(t, vfs.NewMem())
	defer closeDB(t, db)
	p := partition(t, db, "t", 0)
	p.EvictAfter(keep, 2*dayMS)
	evTime := int64(0)
	event := func(id string, ts int64, seq int) {
		t.Helper()
		ev := rules.Event{EventID: fmt.Sprintf("%s-%d", id, seq), TS: ts, AccountID: "act", AdID: id, Impressions: 10, Spend: 1}
		if !apply(t, p, &ev, keep, horizon) {
			t.Fatalf("event %s not applied", ev.EventID)
		}
		evTime = max(evTime, ts)
	}
	next := int64(0)
	commitAt := func() {
		t.Helper()
		p.SetEventTime(evTime)
		next++
		commit(t, p, next)
	}

	// Each silent ad reports twice, a minute apart, within the first hour;
	// one in ten fires a rule once.
	want := map[string]*rules.AdState{}
	for i := range silent {
		id := fmt.Sprintf("silent%04d", i)
		ts := t0 + int64(i)*1000
		event(id, ts, 0)
		event(id, ts+minuteMS, 1)
		if i%10 == 0 {
			setMark(ad(t, p, id), "winner", ts+minuteMS)
		}
		want[id] = ad(t, p, id)
	}
	commitAt()
	for id, st := range want {
		want[id] = cloneAd(st)
	}

	for h := 1; h <= 3*24; h++ {
		for i := range active {
			event(fmt.Sprintf("active%02d", i), t0+int64(h)*hourMS+int64(i), h)
		}
		commitAt()
		switch got := p.Ads(); {
		case h <= 24 && got != silent+active:
			// The newest silent event is t0+2001s; until event time is a
			// day past it, every silent ad may still be read.
			t.Fatalf("hour %d: %d ads in memory, want all %d: evicted within the rule set's reach", h, got, silent+active)
		case h == 3*24 && got != active:
			t.Fatalf("hour %d: %d ads in memory, want the %d active ones", h, got, active)
		}
	}
	for id, w := range want {
		requireSameAd(t, "evicted and reloaded", ad(t, p, id), w)
	}
	if got := p.Ads(); got != silent+active {
		t.Fatalf("%d ads in memory after reloading every silent one, want %d", got, silent+active)
	}
}

// TestEvictionKeepsUp: however many ads fall silent at once, and however
// small the commits that follow, each is evicted within two rounds of the
// sweep (256 commits) of being silent long enough.
func TestEvictionKeepsUp(t *testing.T) {
	const n = 250_000
	db := open(t, vfs.NewMem())
	defer closeDB(t, db)
	p := partition(t, db, "t", 0)
	p.EvictAfter(hourMS, hourMS)
	for i := range n {
		id := fmt.Sprint("ad", i)
		ev := rules.Event{EventID: id, TS: t0, AccountID: "act", AdID: id, Impressions: 1}
		apply(t, p, &ev, hourMS, hourMS)
	}
	p.SetEventTime(t0)
	commit(t, p, n)
	for k := 1; ; k++ {
		// One event a minute: the silent ads can be evicted from commit 61.
		ts := t0 + int64(k)*minuteMS
		ev := rules.Event{EventID: fmt.Sprint("active", k), TS: ts, AccountID: "act", AdID: "active", Impressions: 1}
		apply(t, p, &ev, hourMS, hourMS)
		p.SetEventTime(ts)
		commit(t, p, int64(n+k))
		if p.Ads() == 1 {
			t.Logf("all evicted at commit %d", k)
			break
		}
		if k == 60 && p.Ads() != n+1 {
			t.Fatalf("commit %d: %d ads in memory, want all %d: evicted too soon", k, p.Ads(), n+1)
		}
		if k == 60+256 {
			t.Fatalf("commit %d: %d ads still in memory, want 1", k, p.Ads())
		}
	}
}

// TestEvictedAdsAreFreed: nothing of the partition keeps an evicted ad
// alive (the list of ads a commit writes, say).
func TestEvictedAdsAreFreed(t *testing.T) {
	const n = 3000
	db := open(t, vfs.NewMem())
	defer closeDB(t, db)
	p := partition(t, db, "t", 0)
	p.EvictAfter(hourMS, hourMS)
	refs := make([]weak.Pointer[rules.AdState], n)
	for i := range n {
		id := fmt.Sprint("ad", i)
		ev := rules.Event{EventID: id, TS: t0, AccountID: "act", AdID: id, Impressions: 1}
		apply(t, p, &ev, hourMS, hourMS)
		refs[i] = weak.Make(ad(t, p, id))
	}
	p.SetEventTime(t0)
	commit(t, p, n)
	for k := 1; p.Ads() > 1; k++ {
		if k > 200 {
			t.Fatalf("%d ads still in memory after %d commits", p.Ads(), k)
		}
		ts := t0 + 2*hourMS + int64(k)*minuteMS
		ev := rules.Event{EventID: fmt.Sprint("active", k), TS: ts, AccountID: "act", AdID: "active", Impressions: 1}
		apply(t, p, &ev, hourMS, hourMS)
		p.SetEventTime(ts)
		commit(t, p, int64(n+k))
	}
	runtime.GC()
	alive := 0
	for _, r := range refs {
		if r.Value() != nil {
			alive++
		}
	}
	if alive > 0 {
		t.Fatalf("%d of %d evicted ads are still reachable", alive, n)
	}
	runtime.KeepAlive(p) // the partition, of course, is
}

// TestEvictSilentAccounts: an account without approvals for longer than
// the guards look back leaves memory and reloads as it was.
func TestEvictSilentAccounts(t *testing.T) {
	const silent, active = 1500, 5
	db := open(t, vfs.NewMem())
	defer closeDB(t, db)
	p := partition(t, db, "t", 0)
	p.EvictAfter(dayMS, 2*dayMS) // stage 2 sets no event time: the accounts' own clock
	want := map[string]*rules.AccountState{}
	for i := range silent {
		id := fmt.Sprintf("silent%04d", i)
		st := account(t, p, id)
		ts := t0 + int64(i)*1000
		st.MaxTS = ts
		st.Approved = append(st.Approved, rules.Approval{TS: ts, Entity: "ad" + id})
		st.Changes = append(st.Changes, rules.BudgetChange{Entity: "ad" + id, TS: ts, OldBudget: 10})
		want[id] = st
	}
	commit(t, p, 1)
	for id, st := range want {
		want[id] = cloneAccount(st)
	}
	for h := 1; h <= 4*24; h++ {
		for i := range active {
			st := account(t, p, fmt.Sprintf("active%d", i))
			ts := t0 + int64(h)*hourMS
			st.MaxTS = ts
			st.Approved = append(st.Approved, rules.Approval{TS: ts, Entity: "x"})
		}
		commit(t, p, int64(h)+1)
		switch got := p.Accounts(); {
		case h <= 48 && got != silent+active:
			t.Fatalf("hour %d: %d accounts in memory, want all %d", h, got, silent+active)
		case h == 4*24 && got != active:
			t.Fatalf("hour %d: %d accounts in memory, want the %d active ones", h, got, active)
		}
	}
	for id, w := range want {
		requireSameAccount(t, account(t, p, id), w)
	}
}

// TestEvictionChangesNothing runs the same events, late ones, re-sent ones
// and marks, through a partition that evicts and one that does not. Every
// time an ad is read, the two states must be the same (ids past the dedupe
// horizon aside: which of those are still held depends on when expiry ran,
// and none is ever read), and the two must agree on every duplicate and
// every too-late event. The run must evict, and must bring evicted ads
// back with late events and re-sent ids.
func TestEvictionChangesNothing(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			evictionChangesNothing(t, seed)
		})
	}
}

func evictionChangesNothing(t *testing.T, seed uint64) {
	t.Logf("seed %d", seed)
	const (
		n             = 120
		keep, horizon = 2 * dayMS, dayMS
	)
	rng := rand.New(rand.NewPCG(0, seed))
	dbE, dbR := open(t, vfs.NewMem()), open(t, vfs.NewMem())
	defer closeDB(t, dbE)
	defer closeDB(t, dbR)
	pe, pr := partition(t, dbE, "t", 0), partition(t, dbR, "t", 0)
	pe.EvictAfter(keep, keep)

	ids := make([]string, n)
	quietUntil := make([]int64, n) // each ad alternates bursts and silences
	for i := range ids {
		ids[i] = fmt.Sprintf("ad%03d", i)
		quietUntil[i] = t0 + rng.Int64N(5*dayMS)
	}
	var applied []rules.Event
	evTime, next := int64(0), int64(0)
	sinceCommit, nextCommit := 0, 1+rng.IntN(60)
	reloads, lateReloaded, dupReloaded, tooLate, maxHeld := 0, 0, 0, 0, 0

	send := func(ev rules.Event) {
		t.Helper()
		held := pe.Ads()
		se, sr := ad(t, pe, ev.AdID), ad(t, pr, ev.AdID)
		reloaded := pe.Ads() > held && sr.Life.Events > 0
		if reloaded {
			reloads++
		}
		requireSameLive(t, se, sr, horizon)
		h := rules.IDHash(ev.EventID)
		lateE, lateR := se.TooLate(&ev, horizon), sr.TooLate(&ev, horizon)
		dupE, dupR := se.Duplicate(&ev, h), sr.Duplicate(&ev, h)
		switch {
		case lateE != lateR || (!lateR && dupE != dupR):
			t.Fatalf("event %s of %s: too late %v, duplicate %v with eviction; %v, %v without", ev.EventID, ev.AdID, lateE, dupE, lateR, dupR)
		case lateR:
			tooLate++
		case dupR:
			if reloaded {
				dupReloaded++
			}
		default:
			if reloaded && ev.TS < sr.MaxTS {
				lateReloaded++
			}
			se.Apply(&ev, h, keep, horizon)
			sr.Apply(&ev, h, keep, horizon)
			if rng.IntN(8) == 0 {
				rule := fmt.Sprint("rule", rng.IntN(3))
				setMark(se, rule, ev.TS)
				setMark(sr, rule, ev.TS)
			}
			applied = append(applied, ev)
			evTime = max(evTime, ev.TS)
		}
		if sinceCommit++; sinceCommit == nextCommit {
			pe.SetEventTime(evTime)
			pr.SetEventTime(evTime)
			next += int64(sinceCommit)
			commit(t, pe, next)
			commit(t, pr, next)
			sinceCommit, nextCommit = 0, 1+rng.IntN(60)
			maxHeld = max(maxHeld, pe.Ads())
		}
	}

	for h := range 20 * 24 {
		now := t0 + int64(h)*hourMS
		for i, id := range ids {
			if now < quietUntil[i] || rng.IntN(3) == 0 {
				continue
			}
			if rng.IntN(30) == 0 {
				// Silent from here for up to five days: often long enough
				// to be evicted.
				quietUntil[i] = now + rng.Int64N(5*dayMS)
			}
			ts := now + rng.Int64N(hourMS)
			if rng.IntN(10) == 0 {
				ts -= rng.Int64N(horizon * 3 / 2) // late, sometimes too late
			}
			send(rules.Event{EventID: fmt.Sprintf("%s-%d-%d", id, h, rng.Uint32()), TS: ts, AccountID: "act", AdID: id,
				Impressions: rng.Int64N(1000), Clicks: rng.Int64N(20), Spend: float64(rng.IntN(10000)) / 100})
		}
		for range 3 {
			switch {
			case len(applied) > 0 && rng.IntN(2) == 0:
				// An event re-sent, whatever its ad is doing now.
				send(applied[rng.IntN(len(applied))])
			default:
				// A late event of any ad, silent ones too.
				id := ids[rng.IntN(n)]
				st := ad(t, pr, id)
				if st.Life.Events == 0 {
					continue
				}
				send(rules.Event{EventID: fmt.Sprintf("%s-late-%d", id, rng.Uint32()), TS: st.MaxTS - rng.Int64N(horizon*5/4), AccountID: "act", AdID: id, Impressions: 1, Spend: 0.5})
			}
		}
	}
	pe.SetEventTime(evTime)
	pr.SetEventTime(evTime)
	next += int64(sinceCommit)
	commit(t, pe, next)
	commit(t, pr, next)

	t.Logf("at most %d of %d ads in memory; %d reloads of evicted ads, %d late events and %d duplicates among them, %d too late",
		maxHeld, n, reloads, lateReloaded, dupReloaded, tooLate)
	if maxHeld >= n || reloads < 50 || lateReloaded < 10 || dupReloaded < 10 || tooLate < 10 {
		t.Fatal("the run did not exercise enough")
	}
	// What the two committed is the same too.
	ce, cr := partition(t, dbE, "t", 0), partition(t, dbR, "t", 0)
	for _, id := range ids {
		requireSameLive(t, ad(t, ce, id), ad(t, cr, id), horizon)
	}
}

// requireSameLive fails unless got and want agree on everything a later
// event can read: all of diffAd but the ids past the dedupe horizon.
func requireSameLive(t testing.TB, got, want *rules.AdState, horizonMS int64) {
	t.Helper()
	live := func(st *rules.AdState) *rules.AdState {
		c := cloneAd(st)
		c.Seen = slices.DeleteFunc(c.Seen, func(s rules.Seen) bool { return s.TS <= st.MaxTS-horizonMS })
		slices.SortFunc(c.Seen, func(a, b rules.Seen) int { return cmp.Or(cmp.Compare(a.TS, b.TS), strings.Compare(a.ID, b.ID)) })
		c.Dirty = rules.Dirty{Listed: true}
		return c
	}
	if d := diffAd(live(got), live(want)); len(d) > 0 {
		t.Fatalf("ad %q with eviction differs from without:\n  %s", want.AdID, strings.Join(d, "\n  "))
	}
}

// BenchmarkEvictSilentAds: the heap of a partition whose ads report
// hourly for twelve hours and go silent, while a hundred others go on
// reporting every ten minutes for sixteen more days (the default rule set
// looks back fourteen), with and without eviction. silent-heap-MB is the heap
// in use after a GC when the ads go silent, heap-MB at the end, ads-held
// the ads in memory at the end. ADRULES_BENCH_ADS sets the number of ads
// that go silent (default 20,000).
func BenchmarkEvictSilentAds(b *testing.B) {
	silent := 20_000
	if s := os.Getenv("ADRULES_BENCH_ADS"); s != "" {
		fmt.Sscan(s, &silent)
	}
	const (
		active        = 100
		keep, horizon = 14 * dayMS, 7 * dayMS // the default rule set's
	)
	for _, evict := range []bool{false, true} {
		b.Run(fmt.Sprintf("ads=%d/evict=%v", silent, evict), func(b *testing.B) {
			var before, after uint64
			var held int
			for b.Loop() {
				// On disk: a memory file system would hold the state in
				// the heap being measured.
				db, err := state.Open(b.TempDir(), state.Options{})
				if err != nil {
					b.Fatal(err)
				}
				p := partition(b, db, "t", 0)
				if evict {
					p.EvictAfter(keep, 2*dayMS)
				}
				next := int64(0)
				step := func(ids []string, ts int64, k int) {
					for i, id := range ids {
						ev := rules.Event{EventID: fmt.Sprintf("%s-%d", id, k), TS: ts + int64(i), AccountID: "act", AdID: id, Impressions: 100, Clicks: 2, Spend: 1.5}
						if !apply(b, p, &ev, keep, horizon) {
							b.Fatalf("event %s not applied", ev.EventID)
						}
					}
					p.SetEventTime(ts + int64(len(ids)))
					next += int64(len(ids))
					commit(b, p, next)
				}
				ids := make([]string, silent)
				for i := range ids {
					ids[i] = fmt.Sprintf("ad_%07d", i)
				}
				for h := range 12 {
					step(ids, t0+int64(h)*hourMS, h)
				}
				ids = nil
				before = heapInUse()
				actives := make([]string, active)
				for i := range actives {
					actives[i] = fmt.Sprint("active", i)
				}
				for k := range int((keep + 2*dayMS) / (10 * minuteMS)) {
					step(actives, t0+12*hourMS+int64(k)*10*minuteMS, k)
				}
				after, held = heapInUse(), p.Ads()
				runtime.KeepAlive(p)
				closeDB(b, db)
			}
			b.ReportMetric(float64(before)/(1<<20), "silent-heap-MB")
			b.ReportMetric(float64(after)/(1<<20), "heap-MB")
			b.ReportMetric(float64(held), "ads-held")
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
