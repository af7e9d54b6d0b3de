package state_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The package doc promises this; cmd relies on it.
var _ engine.PartitionState = (*state.Partition)(nil)

const (
	minuteMS = int64(60_000)
	hourMS   = 60 * minuteMS
	dayMS    = 24 * hourMS
	// t0 is 2026-11-01T00:00:00Z: real epoch times, so every cut is > 0.
	t0 = int64(1793491200000)
)

func open(t testing.TB, fs vfs.FS) *state.DB {
	t.Helper()
	db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: fs}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func partition(t testing.TB, db *state.DB, topic string, part int32) *state.Partition {
	t.Helper()
	p, err := db.Partition(topic, part)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ad(t testing.TB, p *state.Partition, id string) *rules.AdState {
	t.Helper()
	st, err := p.Ad(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func account(t testing.TB, p *state.Partition, id string) *rules.AccountState {
	t.Helper()
	st, err := p.Account(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func commit(t testing.TB, p *state.Partition, next int64) {
	t.Helper()
	if err := p.Commit(next); err != nil {
		t.Fatal(err)
	}
	if got := p.Offset(); got != next {
		t.Fatalf("Offset() after Commit(%d) = %d", next, got)
	}
}

func closeDB(t testing.TB, db *state.DB) {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// setMark records a rule firing as rules.Evaluator does (it is unexported
// there): the latest ts per rule, and the ad is dirty.
func setMark(st *rules.AdState, rule string, ts int64) {
	st.Dirty.Any = true
	for i := range st.Marks {
		if st.Marks[i].RuleID == rule {
			st.Marks[i].Last = max(st.Marks[i].Last, ts)
			return
		}
	}
	st.Marks = append(st.Marks, rules.Mark{RuleID: rule, Last: ts})
}

// cloneAd copies what the state package persists, so later changes to st do
// not show in the copy.
func cloneAd(st *rules.AdState) *rules.AdState {
	c := *st
	c.Buckets = slices.Clone(st.Buckets)
	c.Seen = slices.Clone(st.Seen)
	c.Marks = slices.Clone(st.Marks)
	c.Dirty = rules.Dirty{}
	return &c
}

func seenSet(s []rules.Seen) map[rules.Seen]int {
	m := make(map[rules.Seen]int, len(s))
	for _, x := range s {
		m[x]++
	}
	return m
}

// diffAd lists every persisted field where got (reloaded) differs from want
// (live). Seen is compared as a set: a reload returns it in ts order, the
// live state holds it in arrival order.
func diffAd(got, want *rules.AdState) []string {
	var d []string
	field := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	field("AdID", got.AdID, want.AdID)
	field("AccountID", got.AccountID, want.AccountID)
	field("CampaignID", got.CampaignID, want.CampaignID)
	field("AdsetID", got.AdsetID, want.AdsetID)
	field("VideoID", got.VideoID, want.VideoID)
	field("CreatedAt", got.CreatedAt, want.CreatedAt)
	field("HasCreatedAt", got.HasCreatedAt, want.HasCreatedAt)
	field("MaxTS", got.MaxTS, want.MaxTS)
	field("Budget", got.Budget, want.Budget)
	field("HasBudget", got.HasBudget, want.HasBudget)
	field("Life", got.Life, want.Life)
	if !slices.Equal(got.Buckets, want.Buckets) {
		d = append(d, fmt.Sprintf("Buckets: %d loaded, %d live; first difference %s", len(got.Buckets), len(want.Buckets), firstBucketDiff(got.Buckets, want.Buckets)))
	}
	if !slices.Equal(got.Marks, want.Marks) {
		d = append(d, fmt.Sprintf("Marks = %v, want %v", got.Marks, want.Marks))
	}
	gs, ws := seenSet(got.Seen), seenSet(want.Seen)
	for s, n := range gs {
		if ws[s] != n {
			d = append(d, fmt.Sprintf("Seen: %+v loaded %d times, live %d", s, n, ws[s]))
		}
	}
	for s, n := range ws {
		if _, ok := gs[s]; !ok {
			d = append(d, fmt.Sprintf("Seen: %+v live %d times, not loaded", s, n))
		}
	}
	if !slices.IsSortedFunc(got.Seen, func(a, b rules.Seen) int { return cmp.Compare(a.TS, b.TS) }) {
		d = append(d, "Seen not loaded in ts order")
	}
	// Ad lists what it returns for the next commit; nothing else is dirty.
	field("Dirty (loaded)", got.Dirty, rules.Dirty{Listed: true})
	return d
}

func firstBucketDiff(got, want []rules.Bucket) string {
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			return fmt.Sprintf("live[%d] = %+v missing", i, want[i])
		case i >= len(want):
			return fmt.Sprintf("loaded[%d] = %+v extra", i, got[i])
		case got[i] != want[i]:
			return fmt.Sprintf("[%d] loaded %+v, live %+v", i, got[i], want[i])
		}
	}
	return "none"
}

func requireSameAd(t testing.TB, when string, got, want *rules.AdState) {
	t.Helper()
	if d := diffAd(got, want); len(d) > 0 {
		t.Fatalf("%s: ad %q reloaded differs from live:\n  %s", when, want.AdID, strings.Join(d, "\n  "))
	}
}

// apply does what the engine does with one metric event: skip it when its
// id was applied or it is too late, else apply it. It reports whether it
// applied the event.
func apply(t testing.TB, p *state.Partition, ev *rules.Event, keepMS, horizonMS int64) bool {
	t.Helper()
	st := ad(t, p, ev.AdID)
	h := rules.IDHash(ev.EventID)
	if st.Duplicate(ev, h) || st.TooLate(ev, horizonMS) {
		return false
	}
	st.Apply(ev, h, keepMS, horizonMS)
	return true
}

// TestRoundTripWithExpiry applies a month of hourly events to a few ads,
// with out-of-order events, re-sent ids, long gaps, marks and budgets, and
// commits every few events. After every commit the committed state, read
// back through a fresh Partition, must equal the live state field for
// field; every few commits the database is closed and reopened and the run
// goes on from what was reloaded, as a restarted node would.
func TestRoundTripWithExpiry(t *testing.T) {
	for _, tc := range []struct {
		name              string
		keepMS, horizonMS int64
	}{
		// Ids are forgotten before buckets.
		{"keep7d-horizon2d", 7 * dayMS, 2 * dayMS},
		// Ids outlive buckets, so a late event can recreate a bucket at or
		// before the last cut.
		{"keep1d-horizon3d", 1 * dayMS, 3 * dayMS},
		{"keep7d-horizon7d", 7 * dayMS, 7 * dayMS},
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", tc.name, seed), func(t *testing.T) {
				roundTrip(t, seed, tc.keepMS, tc.horizonMS)
			})
		}
	}
}

func roundTrip(t *testing.T, seed uint64, keepMS, horizonMS int64) {
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(0, seed))
	const topic, part = "metrics", int32(3)
	ids := []string{"ad1", "ad10", "ad_ü_広告", strings.Repeat("L", 300)}

	fs := vfs.NewMem()
	db := open(t, fs)
	defer func() { closeDB(t, db) }()
	p := partition(t, db, topic, part)
	if got := p.Offset(); got != -1 {
		t.Fatalf("Offset() of a new partition = %d, want -1", got)
	}

	// What the test applied, to check the state is not trivially equal.
	life := map[string]rules.Totals{}
	var applied []rules.Event // for re-sending ids
	gapUntil := map[string]int64{}
	var offset int64
	sinceCommit, nextCommit := 0, 1+rng.IntN(40)
	commits, restarts, bucketCuts, seenCuts, resends, lateApplied := 0, 0, 0, 0, 0, 0

	verify := func(when string) {
		t.Helper()
		check := partition(t, db, topic, part) // read-only: never committed
		if got := check.Offset(); got != offset {
			t.Fatalf("%s: Offset() = %d, want %d", when, got, offset)
		}
		for _, id := range ids {
			live := ad(t, p, id)
			requireSameAd(t, when, ad(t, check, id), live)
			if got, want := live.Life, life[id]; got.Events != want.Events || got.Impressions != want.Impressions {
				t.Fatalf("%s: ad %q life %+v, test applied %+v", when, id, got, want)
			}
		}
	}
	doCommit := func(when string) {
		t.Helper()
		var live []*rules.AdState
		for _, id := range ids {
			st := ad(t, p, id)
			if st.Dirty.BucketCut > 0 {
				bucketCuts++
			}
			if st.Dirty.SeenCut > 0 {
				seenCuts++
			}
			live = append(live, st)
		}
		offset += int64(sinceCommit)
		commit(t, p, offset)
		commits++
		for _, st := range live {
			if st.Dirty != (rules.Dirty{}) {
				t.Fatalf("%s: ad %q Dirty after Commit = %+v, want zero", when, st.AdID, st.Dirty)
			}
		}
		sinceCommit, nextCommit = 0, 1+rng.IntN(40)
		verify(when)
		if rng.IntN(5) == 0 {
			// Restart: the run goes on from the reloaded state.
			live := map[string]*rules.AdState{}
			for _, id := range ids {
				live[id] = cloneAd(ad(t, p, id))
			}
			closeDB(t, db)
			db = open(t, fs)
			p = partition(t, db, topic, part)
			restarts++
			if got := p.Offset(); got != offset {
				t.Fatalf("%s, after restart: Offset() = %d, want %d", when, got, offset)
			}
			for _, id := range ids {
				requireSameAd(t, when+", after restart", ad(t, p, id), live[id])
			}
		}
	}

	const hours = 30 * 24
	for h := range hours {
		for i, id := range ids {
			if rng.IntN(6) == 0 {
				continue // no event this hour
			}
			ts := t0 + int64(h)*hourMS + rng.Int64N(hourMS)
			if ts < gapUntil[id] {
				continue
			}
			if h < 20*24 && rng.IntN(200) == 0 {
				// A long silence: the next event expires every bucket and id.
				gapUntil[id] = ts + max(keepMS, horizonMS) + dayMS
			}
			var ev rules.Event
			switch r := rng.IntN(20); {
			case r == 0 && len(applied) > 0:
				// Re-send an applied event: it must be recognised, before and
				// after a restart, unless it is past the dedupe horizon.
				ev = applied[len(applied)-1-rng.IntN(min(len(applied), 200))]
				st := ad(t, p, ev.AdID)
				if !st.TooLate(&ev, horizonMS) && !st.Duplicate(&ev, rules.IDHash(ev.EventID)) {
					t.Fatalf("hour %d: re-sent event %q of ad %q (ts %d, max %d) not recognised as a duplicate", h, ev.EventID, ev.AdID, ev.TS, st.MaxTS)
				}
				resends++
			default:
				if r == 1 {
					// Out of order: up to four days late.
					ts -= rng.Int64N(4 * dayMS)
				}
				ev = rules.Event{
					EventID:     fmt.Sprintf("%s-%d-%d", id, h, rng.Uint32()),
					TS:          ts,
					AccountID:   fmt.Sprintf("act%d", i%2),
					CampaignID:  fmt.Sprintf("cmp%d", i),
					AdsetID:     fmt.Sprintf("as%d", i),
					AdID:        id,
					Impressions: rng.Int64N(1000),
					Clicks:      rng.Int64N(20),
					Conversions: rng.Int64N(3),
					Spend:       float64(rng.IntN(10000)) / 100,
					Revenue:     rng.Float64() * 50,
				}
				if rng.IntN(4) == 0 {
					ev.VideoID = fmt.Sprintf("vid%d", rng.IntN(3))
				}
				if rng.IntN(10) == 0 {
					ev.CreatedAt = t0 - rng.Int64N(10*dayMS)
				}
				if rng.IntN(8) == 0 {
					ev.Budget, ev.HasBudget = float64(rng.IntN(500))+0.25, true
				}
			}
			st := ad(t, p, id)
			if ev.AdID != id {
				st = ad(t, p, ev.AdID)
			}
			wasMax := st.MaxTS
			if apply(t, p, &ev, keepMS, horizonMS) {
				if ev.TS < wasMax {
					lateApplied++
				}
				tot := life[ev.AdID]
				tot.Events++
				tot.Impressions += ev.Impressions
				life[ev.AdID] = tot
				applied = append(applied, ev)
				if rng.IntN(10) == 0 {
					setMark(st, fmt.Sprintf("rule%d", rng.IntN(3)), ev.TS)
				}
			}
			sinceCommit++
			if sinceCommit == nextCommit {
				doCommit(fmt.Sprintf("hour %d, commit %d", h, commits+1))
			}
		}
	}
	doCommit("last commit")

	// The run must have exercised what it claims to.
	t.Logf("%d commits, %d restarts, %d bucket cuts, %d id cuts, %d re-sent, %d late applied", commits, restarts, bucketCuts, seenCuts, resends, lateApplied)
	if commits < 20 || restarts < 3 || bucketCuts < 5 || seenCuts < 5 || resends < 20 || lateApplied < 20 {
		t.Fatalf("the run did not exercise enough: %d commits, %d restarts, %d bucket cuts, %d id cuts, %d re-sent, %d late applied", commits, restarts, bucketCuts, seenCuts, resends, lateApplied)
	}
	for _, id := range ids {
		if st := ad(t, p, id); len(st.Marks) == 0 || !st.HasBudget || !st.HasCreatedAt || st.VideoID == "" {
			t.Fatalf("ad %q lacks a mark, budget, created_at or video: %+v", id, st)
		}
	}

	// One event far ahead expires everything older: after a restart the
	// database holds exactly the new bucket and the new id, so the expired
	// buckets and ids were deleted, not only dropped from memory.
	far := t0 + 90*dayMS
	for i, id := range ids {
		// rules.AdState expires in batches of 16.
		if st := ad(t, p, id); len(st.Buckets) < 16 || len(st.Seen) < 16 {
			t.Fatalf("ad %q has %d buckets and %d ids, want at least 16 of each to expire", id, len(st.Buckets), len(st.Seen))
		}
		ev := rules.Event{EventID: "far-" + id, TS: far + int64(i), AccountID: "act", AdID: id, Impressions: 1}
		if !apply(t, p, &ev, keepMS, horizonMS) {
			t.Fatalf("far event of %q not applied", id)
		}
		sinceCommit++
	}
	offset += int64(sinceCommit)
	commit(t, p, offset)
	closeDB(t, db)
	db = open(t, fs)
	p = partition(t, db, topic, part)
	for i, id := range ids {
		st := ad(t, p, id)
		if want := []rules.Bucket{{Minute: (far + int64(i)) / minuteMS, Totals: rules.Totals{Impressions: 1, Events: 1}}}; !slices.Equal(st.Buckets, want) {
			t.Errorf("ad %q: %d buckets after expiry, want only %+v; got %+v", id, len(st.Buckets), want, st.Buckets)
		}
		if want := []rules.Seen{{Hash: rules.IDHash("far-" + id), TS: far + int64(i), ID: "far-" + id}}; !slices.Equal(st.Seen, want) {
			t.Errorf("ad %q: %d ids after expiry, want only %+v", id, len(st.Seen), want)
		}
		if got, want := st.Life.Events, life[id].Events+1; got != want {
			t.Errorf("ad %q: lifetime events %d, want %d", id, got, want)
		}
	}
}

// TestExpiryBoundary: an id or bucket exactly at the cut is expired, in
// memory and in Pebble alike.
func TestExpiryBoundary(t *testing.T) {
	const keep = dayMS // also the dedupe horizon
	fs := vfs.NewMem()
	db := open(t, fs)
	p := partition(t, db, "t", 0)
	for i := range 20 {
		ev := rules.Event{EventID: fmt.Sprint("e", i), TS: t0 + int64(i)*minuteMS, AccountID: "act", AdID: "a", Impressions: int64(i)}
		apply(t, p, &ev, keep, keep)
	}
	commit(t, p, 20)
	// MaxTS - keep is exactly the ts (and minute) of e17: e0..e17 and their
	// buckets expire.
	last := rules.Event{EventID: "last", TS: t0 + 17*minuteMS + keep, AccountID: "act", AdID: "a", Impressions: 100}
	apply(t, p, &last, keep, keep)
	live := ad(t, p, "a")
	if len(live.Seen) != 3 || len(live.Buckets) != 3 {
		t.Fatalf("live state keeps %d ids and %d buckets, want 3 and 3 (rules.AdState.expire changed?)", len(live.Seen), len(live.Buckets))
	}
	want := cloneAd(live)
	commit(t, p, 21)
	closeDB(t, db)

	db = open(t, fs)
	defer closeDB(t, db)
	got := ad(t, partition(t, db, "t", 0), "a")
	requireSameAd(t, "after restart", got, want)
}

// TestExpiryAtCutZero: the decoder accepts ts 0, so a dedupe cut can be
// exactly 0.
func TestExpiryAtCutZero(t *testing.T) {
	const horizon = hourMS
	fs := vfs.NewMem()
	db := open(t, fs)
	p := partition(t, db, "t", 0)
	for i := range 16 {
		ev := rules.Event{EventID: fmt.Sprint("e", i), TS: 0, AccountID: "act", AdID: "a"}
		apply(t, p, &ev, horizon, horizon)
	}
	commit(t, p, 16)
	ev := rules.Event{EventID: "x", TS: horizon, AccountID: "act", AdID: "a"}
	apply(t, p, &ev, horizon, horizon)
	live := ad(t, p, "a")
	if len(live.Seen) != 1 {
		t.Fatalf("live state keeps %d ids, want 1 (rules.AdState.expire changed?)", len(live.Seen))
	}
	want := cloneAd(live)
	commit(t, p, 17)
	closeDB(t, db)

	db = open(t, fs)
	defer closeDB(t, db)
	requireSameAd(t, "after restart", ad(t, partition(t, db, "t", 0), "a"), want)
}

// TestUncommittedLost: what was not committed is gone after a restart, and
// the offset is the last committed one.
func TestUncommittedLost(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	p := partition(t, db, "t", 0)
	if got := p.Offset(); got != -1 {
		t.Fatalf("Offset() before any commit = %d, want -1", got)
	}
	ev := rules.Event{EventID: "e1", TS: t0, AccountID: "act", AdID: "a", Impressions: 10, Budget: 50, HasBudget: true}
	apply(t, p, &ev, dayMS, dayMS)
	acct := account(t, p, "act")
	acct.MaxTS = t0
	acct.Approved = append(acct.Approved, rules.Approval{TS: t0, Entity: "a"})
	commit(t, p, 7)
	committed := cloneAd(ad(t, p, "a"))

	ev2 := rules.Event{EventID: "e2", TS: t0 + hourMS, AccountID: "act", AdID: "a", Impressions: 5, Budget: 80, HasBudget: true}
	apply(t, p, &ev2, dayMS, dayMS)
	setMark(ad(t, p, "a"), "r", t0+hourMS)
	ev3 := rules.Event{EventID: "e3", TS: t0, AccountID: "act", AdID: "b", Impressions: 1}
	apply(t, p, &ev3, dayMS, dayMS)
	acct = account(t, p, "act")
	acct.Approved = append(acct.Approved, rules.Approval{TS: t0 + hourMS, Entity: "a"})
	closeDB(t, db) // no Commit

	db = open(t, fs)
	defer closeDB(t, db)
	p = partition(t, db, "t", 0)
	if got := p.Offset(); got != 7 {
		t.Fatalf("Offset() after restart = %d, want 7", got)
	}
	requireSameAd(t, "after restart", ad(t, p, "a"), committed)
	if b := ad(t, p, "b"); b.Life.Events != 0 || len(b.Buckets) != 0 || len(b.Seen) != 0 || b.AccountID != "" {
		t.Errorf("uncommitted ad b survived: %+v", b)
	}
	if got := account(t, p, "act").Approved; !slices.Equal(got, []rules.Approval{{TS: t0, Entity: "a"}}) {
		t.Errorf("account approvals after restart = %+v, want only the committed one", got)
	}
	if got := p.Ads(); got != 2 {
		t.Errorf("Ads() = %d, want 2 (a and b loaded)", got)
	}
}

// TestOffset: -1 before any commit, then exactly the committed next offset,
// 0 included, with or without changed state, in memory and after a restart.
func TestOffset(t *testing.T) {
	fs := vfs.NewMem()
	for _, next := range []int64{0, 1, 1 << 40, 5} {
		db := open(t, fs)
		p := partition(t, db, "t", 1)
		commit(t, p, next) // nothing changed: the offset alone
		closeDB(t, db)
		db = open(t, fs)
		if got := partition(t, db, "t", 1).Offset(); got != next {
			t.Errorf("Offset() after Commit(%d) and restart = %d", next, got)
		}
		if got := partition(t, db, "t", 2).Offset(); got != -1 {
			t.Errorf("Offset() of an uncommitted partition = %d, want -1", got)
		}
		closeDB(t, db)
	}
}

// TestAccountRoundTrip: an account's approvals and budget changes survive a
// restart exactly, and a shrunk history replaces the old one.
func TestAccountRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	db := open(t, fs)
	p := partition(t, db, "actions", 0)
	st := account(t, p, "act_1")
	if st.AccountID != "act_1" || st.MaxTS != 0 || len(st.Approved) != 0 || len(st.Changes) != 0 {
		t.Fatalf("new account = %+v, want empty with its id", st)
	}
	st.MaxTS = t0 + 3*hourMS
	st.Approved = []rules.Approval{{TS: t0, Entity: "ad1"}, {TS: t0 + hourMS, Entity: "ad10"}, {TS: t0 + 3*hourMS, Entity: ""}}
	st.Changes = []rules.BudgetChange{{Entity: "ad1", TS: t0, OldBudget: 120.5}, {Entity: "adset:as_1", TS: t0 + 3*hourMS, OldBudget: 0.1}}
	other := account(t, p, "act_10")
	other.MaxTS = t0
	other.Approved = []rules.Approval{{TS: t0, Entity: "x"}}
	want, wantOther := cloneAccount(st), cloneAccount(other)
	commit(t, p, 10)
	closeDB(t, db)

	db = open(t, fs)
	p = partition(t, db, "actions", 0)
	requireSameAccount(t, account(t, p, "act_1"), want)
	requireSameAccount(t, account(t, p, "act_10"), wantOther)

	// Expire some history: the stored value must shrink with it.
	st = account(t, p, "act_1")
	st.MaxTS += dayMS
	st.Approved = st.Approved[2:]
	st.Changes = nil
	want = cloneAccount(st)
	commit(t, p, 11)
	closeDB(t, db)

	db = open(t, fs)
	defer closeDB(t, db)
	p = partition(t, db, "actions", 0)
	requireSameAccount(t, account(t, p, "act_1"), want)
	requireSameAccount(t, account(t, p, "act_10"), wantOther)
}

func cloneAccount(st *rules.AccountState) *rules.AccountState {
	c := *st
	c.Approved = slices.Clone(st.Approved)
	c.Changes = slices.Clone(st.Changes)
	return &c
}

func requireSameAccount(t *testing.T, got, want *rules.AccountState) {
	t.Helper()
	if got.AccountID != want.AccountID || got.MaxTS != want.MaxTS || !slices.Equal(got.Approved, want.Approved) || !slices.Equal(got.Changes, want.Changes) {
		t.Fatalf("account reloaded\n  %+v\nwant\n  %+v", got, want)
	}
}

// TestPartitionsIsolated: the same ad and account in different partitions
// and topics have separate state, and Drop removes one partition only.
func TestPartitionsIsolated(t *testing.T) {
	type pk struct {
		topic string
		part  int32
	}
	// Topics that are prefixes of each other, and partitions whose big-endian
	// bytes differ in one place. "t"/0x74000000 would end in the bytes that
	// begin "tt"/0 if the topic's length were not in the prefix.
	parts := []pk{{"t", 0}, {"t", 1}, {"t", 256}, {"tt", 0}, {"t\x00", 0}, {"", 0}, {"t", 1<<31 - 1}, {"t", 0x74000000}}
	fs := vfs.NewMem()
	db := open(t, fs)
	wantAd := map[pk]*rules.AdState{}
	wantAcct := map[pk]*rules.AccountState{}
	for i, k := range parts {
		p := partition(t, db, k.topic, k.part)
		for j := range i + 1 {
			ev := rules.Event{EventID: fmt.Sprint("e", j), TS: t0 + int64(i)*hourMS + int64(j)*minuteMS, AccountID: "act", AdID: "ad", Impressions: int64(100*i + j)}
			apply(t, p, &ev, dayMS, dayMS)
		}
		acct := account(t, p, "act")
		acct.MaxTS = int64(i)
		acct.Approved = []rules.Approval{{TS: int64(i), Entity: "ad"}}
		commit(t, p, int64(10+i))
		wantAd[k] = cloneAd(ad(t, p, "ad"))
		wantAcct[k] = cloneAccount(acct)
	}
	check := func(dropped map[pk]bool) {
		t.Helper()
		for i, k := range parts {
			p := partition(t, db, k.topic, k.part)
			st, acct := ad(t, p, "ad"), account(t, p, "act")
			if dropped[k] {
				if p.Offset() != -1 || st.Life.Events != 0 || len(st.Buckets) != 0 || len(st.Seen) != 0 || st.AccountID != "" || acct.MaxTS != 0 || len(acct.Approved) != 0 {
					t.Errorf("%q/%d after Drop: offset %d, ad %+v, account %+v; want empty", k.topic, k.part, p.Offset(), st, acct)
				}
				continue
			}
			if got, want := p.Offset(), int64(10+i); got != want {
				t.Errorf("%q/%d: Offset() = %d, want %d", k.topic, k.part, got, want)
			}
			if st.Life.Events != int64(i+1) {
				t.Errorf("%q/%d: ad has %d events, want %d", k.topic, k.part, st.Life.Events, i+1)
			}
			requireSameAd(t, fmt.Sprintf("%q/%d", k.topic, k.part), st, wantAd[k])
			requireSameAccount(t, acct, wantAcct[k])
		}
	}
	check(nil)
	if err := db.Drop("t", 1); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop("t", 1<<31-1); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop("t", 0x74000000); err != nil {
		t.Fatal(err)
	}
	dropped := map[pk]bool{{"t", 1}: true, {"t", 1<<31 - 1}: true, {"t", 0x74000000}: true}
	check(dropped)
	closeDB(t, db)
	db = open(t, fs)
	defer func() { closeDB(t, db) }()
	check(dropped)

	// A dropped partition can be owned again from scratch.
	p := partition(t, db, "t", 1)
	ev := rules.Event{EventID: "new", TS: t0, AccountID: "act", AdID: "ad", Impressions: 1}
	apply(t, p, &ev, dayMS, dayMS)
	commit(t, p, 3)
	if st := ad(t, partition(t, db, "t", 1), "ad"); st.Life.Events != 1 || len(st.Seen) != 1 || st.Seen[0].ID != "new" {
		t.Errorf("re-owned partition: %+v, want only the new event", st)
	}
}

// TestIDsDoNotCollide: ids that are prefixes of one another, long ids,
// unicode, NUL and 0xff bytes each keep their own state, and an account may
// share an ad's id.
func TestIDsDoNotCollide(t *testing.T) {
	ids := []string{
		"ad1", "ad10", "ad1\x00", "ad\xff", "\xff\xff\xff", "\xff\xff\xff\xff",
		// An ad's keys end in 'm', 's' or 'w' after its id.
		"ad", "adm", "ads", "adw", "adwx", "adsw",
		"広告", "広告1", "Ad1",
		strings.Repeat("x", 127), strings.Repeat("x", 128), strings.Repeat("x", 129), strings.Repeat("x", 5000),
	}
	fs := vfs.NewMem()
	db := open(t, fs)
	p := partition(t, db, "t", 0)
	want := map[string]*rules.AdState{}
	for i, id := range ids {
		for j := range i + 1 {
			ev := rules.Event{EventID: fmt.Sprintf("%s#%d", id, j), TS: t0 + int64(j)*minuteMS, AccountID: id, AdID: id, Impressions: int64(i)}
			if !apply(t, p, &ev, dayMS, dayMS) {
				t.Fatalf("event %d of ad %q not applied", j, id)
			}
		}
		setMark(ad(t, p, id), id, int64(i))
		acct := account(t, p, id)
		acct.Approved = []rules.Approval{{TS: int64(i), Entity: id}}
	}
	for _, id := range ids {
		want[id] = cloneAd(ad(t, p, id))
	}
	commit(t, p, 1)
	closeDB(t, db)

	db = open(t, fs)
	defer closeDB(t, db)
	p = partition(t, db, "t", 0)
	for i, id := range ids {
		st := ad(t, p, id)
		requireSameAd(t, "after restart", st, want[id])
		if st.Life.Events != int64(i+1) || st.Life.Impressions != int64(i*(i+1)) || len(st.Seen) != i+1 {
			t.Errorf("ad %q: %d events, %d impressions, %d ids; want %d, %d, %d", id, st.Life.Events, st.Life.Impressions, len(st.Seen), i+1, i*(i+1), i+1)
		}
		for _, s := range st.Seen {
			if !strings.HasPrefix(s.ID, id+"#") {
				t.Errorf("ad %q holds event id %q", id, s.ID)
			}
		}
		if acct := account(t, p, id); !slices.Equal(acct.Approved, []rules.Approval{{TS: int64(i), Entity: id}}) {
			t.Errorf("account %q: %+v", id, acct.Approved)
		}
	}
}

// BenchmarkCommit: one commit of 1000 ads, each with one new event since
// the last commit, in steady state (a week of hourly history each).
func BenchmarkCommit(b *testing.B) {
	const n = 1000
	keepMS, horizonMS := 7*dayMS, 2*dayMS
	db := open(b, vfs.NewMem())
	defer closeDB(b, db)
	p := partition(b, db, "t", 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("ad_%04d", i)
	}
	hour := 0
	step := func() {
		ts := t0 + int64(hour)*hourMS
		for i, id := range ids {
			ev := rules.Event{EventID: fmt.Sprintf("%s-%d", id, hour), TS: ts + int64(i), AccountID: "act", AdID: id, Impressions: 100, Clicks: 2, Spend: 1.5}
			if !apply(b, p, &ev, keepMS, horizonMS) {
				b.Fatalf("event %s not applied", ev.EventID)
			}
		}
		hour++
	}
	for range 7 * 24 {
		step()
		commit(b, p, int64(hour*n))
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		step()
		b.StartTimer()
		if err := p.Commit(int64(hour * n)); err != nil {
			b.Fatal(err)
		}
	}
}
