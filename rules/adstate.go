package rules

import (
	"math"
	"slices"
	"strings"
)

// Totals are summed deltas. Counts saturate at the largest int64 instead
// of wrapping: an event carries at most MaxCount of each, so only some ten
// million events at the limit reach it.
type Totals struct {
	Impressions int64
	Clicks      int64
	Conversions int64
	Events      int64
	Spend       float64
	Revenue     float64
}

func (t *Totals) add(ev *Event) {
	t.Impressions += ev.Impressions
	t.Clicks += ev.Clicks
	t.Conversions += ev.Conversions
	t.Events++
	t.Spend += ev.Spend
	t.Revenue += ev.Revenue
	if t.Impressions|t.Clicks|t.Conversions < 0 {
		t.saturate()
	}
}

func (t *Totals) addTotals(o *Totals) {
	t.Impressions += o.Impressions
	t.Clicks += o.Clicks
	t.Conversions += o.Conversions
	t.Events += o.Events
	t.Spend += o.Spend
	t.Revenue += o.Revenue
	if t.Impressions|t.Clicks|t.Conversions|t.Events < 0 {
		t.saturate()
	}
}

// saturate sets the counts that passed math.MaxInt64 to math.MaxInt64.
// Counts are never negative, so the sum of two is below 1<<64, and it is
// negative as an int64 exactly when it passed: one test after the adds
// finds it, and add and addTotals stay small enough to inline.
func (t *Totals) saturate() {
	for _, c := range []*int64{&t.Impressions, &t.Clicks, &t.Conversions, &t.Events} {
		if *c < 0 {
			*c = math.MaxInt64
		}
	}
}

// Bucket holds the deltas of one ad whose ts falls in one minute.
type Bucket struct {
	Minute int64 // epoch minutes: ts / 60000
	Totals
}

// Seen is one remembered event id of an ad.
type Seen struct {
	Hash uint64
	TS   int64
	ID   string
}

// Mark records when a rule last fired for an ad.
type Mark struct {
	RuleID string
	Last   int64 // event time of the firing, epoch ms
}

// AdState is everything stage 1 knows about one ad: lifetime totals, the
// minute buckets of its rolling windows, the event ids it has applied, and the
// once/cooldown marks of its rules. It is plain data; the state package
// persists it and the engine owns it while a partition is assigned.
type AdState struct {
	AdID       string
	AccountID  string
	CampaignID string
	AdsetID    string
	VideoID    string

	// CreatedAt is when the ad went live (S4): the first created_at seen, or
	// until then the first ts. HasCreatedAt says it came from created_at.
	CreatedAt    int64
	HasCreatedAt bool
	// MaxTS is the largest ts applied.
	MaxTS int64

	Budget    float64
	HasBudget bool

	Life    Totals
	Buckets []Bucket // sorted by Minute, none older than the longest window behind MaxTS
	Seen    []Seen   // applied event ids within the dedupe horizon, in arrival order
	Marks   []Mark

	// Dirty tracks what changed since the state package last wrote the ad,
	// so a flush writes only that.
	Dirty Dirty
}

// Dirty says what changed in an AdState since its last flush.
type Dirty struct {
	Any       bool  // anything changed
	MinMinute int64 // the oldest bucket written, when Buckets
	Buckets   bool
	NewSeen   int   // ids appended to Seen
	BucketCut int64 // buckets with Minute <= BucketCut were dropped (when Cut)
	SeenCut   int64 // ids with TS <= SeenCut were dropped (when Cut)
	Cut       bool  // expire dropped buckets or ids
	Listed    bool  // the store has queued the ad for its next flush
}

// IDHash is the hash under which event ids are remembered.
// It is FNV-1a, 64 bits: stable across processes, so it can be persisted.
func IDHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// Duplicate reports whether ev's event_id was already applied (S1).
func (s *AdState) Duplicate(ev *Event, hash uint64) bool {
	for i := range s.Seen {
		if s.Seen[i].Hash == hash && s.Seen[i].ID == ev.EventID {
			return true
		}
	}
	return false
}

// TooLate reports whether ev is older than the dedupe horizon behind the ad's
// newest event: its id may have been forgotten, so it cannot be applied
// safely.
func (s *AdState) TooLate(ev *Event, horizonMS int64) bool {
	return s.Life.Events > 0 && ev.TS <= s.MaxTS-horizonMS
}

// Apply adds ev's delta to the ad (S3, S4) and remembers its id. keepMS is
// how far behind MaxTS buckets are kept (RuleSet.KeepMS) and horizonMS how
// far event ids are kept.
func (s *AdState) Apply(ev *Event, hash uint64, keepMS, horizonMS int64) {
	if s.Life.Events == 0 {
		s.AdID = keep(s.AdID, ev.AdID)
		s.CreatedAt = ev.TS
		s.MaxTS = ev.TS
	}
	if ev.CreatedAt != 0 && !s.HasCreatedAt {
		s.CreatedAt, s.HasCreatedAt = ev.CreatedAt, true
	}
	s.AccountID = keep(s.AccountID, ev.AccountID)
	if ev.CampaignID != "" {
		s.CampaignID = keep(s.CampaignID, ev.CampaignID)
	}
	if ev.AdsetID != "" {
		s.AdsetID = keep(s.AdsetID, ev.AdsetID)
	}
	if ev.VideoID != "" {
		s.VideoID = keep(s.VideoID, ev.VideoID)
	}
	if ev.HasBudget {
		s.Budget, s.HasBudget = ev.Budget, true
	}
	s.Life.add(ev)
	s.MaxTS = max(s.MaxTS, ev.TS)
	s.Seen = append(s.Seen, Seen{Hash: hash, TS: ev.TS, ID: strings.Clone(ev.EventID)})

	m := ev.TS / 60000
	if !s.Dirty.Buckets || m < s.Dirty.MinMinute {
		s.Dirty.MinMinute = m
	}
	s.Dirty.Any, s.Dirty.Buckets = true, true
	s.Dirty.NewSeen++
	n := len(s.Buckets)
	switch {
	case n > 0 && s.Buckets[n-1].Minute == m:
		s.Buckets[n-1].add(ev)
	case n == 0 || s.Buckets[n-1].Minute < m:
		s.Buckets = append(s.Buckets, Bucket{Minute: m})
		s.Buckets[n].add(ev)
	default: // out of order
		i, found := slices.BinarySearchFunc(s.Buckets, m, func(b Bucket, m int64) int {
			switch {
			case b.Minute < m:
				return -1
			case b.Minute > m:
				return 1
			}
			return 0
		})
		if !found {
			s.Buckets = slices.Insert(s.Buckets, i, Bucket{Minute: m})
		}
		s.Buckets[i].add(ev)
	}
	s.expire(keepMS, horizonMS)
}

// expireBatch is how many entries must have expired before expire removes
// them: removal moves the whole slice, so it is done in batches. Entries
// past their time are never read (windowSums and TooLate bound what they
// look at), so batching changes no result.
const expireBatch = 16

// expire drops buckets that no window can reach again and event ids past the
// dedupe horizon, once expireBatch of them have expired.
func (s *AdState) expire(keepMS, horizonMS int64) {
	cut := (s.MaxTS - keepMS) / 60000 // buckets at or before cut are outside every window
	if !s.Dirty.Cut {
		// Until something expires, the cuts delete nothing.
		s.Dirty.BucketCut, s.Dirty.SeenCut = math.MinInt64, math.MinInt64
	}
	if len(s.Buckets) >= expireBatch && s.Buckets[expireBatch-1].Minute <= cut {
		i := expireBatch
		for i < len(s.Buckets) && s.Buckets[i].Minute <= cut {
			i++
		}
		s.Buckets = slices.Delete(s.Buckets, 0, i)
		s.Dirty.BucketCut = cut
		s.Dirty.Cut = true
	}
	if seenCut := s.MaxTS - horizonMS; len(s.Seen) >= expireBatch && s.Seen[expireBatch-1].TS <= seenCut {
		s.Seen = slices.DeleteFunc(s.Seen, func(x Seen) bool { return x.TS <= seenCut })
		s.Dirty.SeenCut = seenCut
		s.Dirty.Cut = true
		s.Dirty.NewSeen = min(s.Dirty.NewSeen, len(s.Seen))
	}
}

// windowSums fills out[i] with the sum of the deltas whose minute lies in
// (t-w[i], t] for the event at minute t. w must be ascending, in minutes.
func (s *AdState) windowSums(t int64, w []int64, out []Totals) {
	for i := range out {
		out[i] = Totals{}
	}
	var acc Totals
	wi := 0
	for i := len(s.Buckets) - 1; i >= 0 && wi < len(w); i-- {
		b := &s.Buckets[i]
		if b.Minute > t {
			continue
		}
		for wi < len(w) && b.Minute <= t-w[wi] {
			out[wi] = acc
			wi++
		}
		acc.addTotals(&b.Totals)
	}
	for ; wi < len(w); wi++ {
		out[wi] = acc
	}
}

// mark returns the index of rule id's mark, or -1.
func (s *AdState) mark(id string) int {
	for i := range s.Marks {
		if s.Marks[i].RuleID == id {
			return i
		}
	}
	return -1
}

func (s *AdState) setMark(id string, ts int64) {
	s.Dirty.Any = true
	if i := s.mark(id); i >= 0 {
		s.Marks[i].Last = max(s.Marks[i].Last, ts)
		return
	}
	s.Marks = append(s.Marks, Mark{RuleID: id, Last: ts})
}

// keep returns old when it equals s, else a copy of s that owns its memory.
func keep(old, s string) string {
	if old == s {
		return old
	}
	return strings.Clone(s)
}
