package gen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// defaultStart is the start of event time when Options.Start is zero.
var defaultStart = time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)

// Options configure Events. The zero value gives the defaults.
type Options struct {
	// Seed selects the data; the default is 1 (0 means the default).
	Seed uint64
	// Accounts is the number of ad accounts; default 3.
	Accounts int
	// AdsPerAccount is the number of ads in each account; default 40.
	AdsPerAccount int
	// Start is the start of event time; default 2026-11-01T00:00:00Z, never
	// the wall clock.
	Start time.Time
	// Duration is the span of event time; default 7 days. Ads launch over
	// its first 85%; a quarter of them are live before Start.
	Duration time.Duration
	// Interval is the reporting interval; default 1h. Every ad live during
	// an interval gets one delta, stamped with the interval's end. Duration
	// is cut down to a whole number of intervals.
	Interval time.Duration
	// Events, when above 0, is the exact number of lines to write. When the
	// span holds fewer, the stream goes on past Start+Duration, interval by
	// interval, with the same ads (no new ad launches after the span; those
	// that stopped stay stopped). Default 0: write the whole span.
	Events int
	// BadPct is the share of malformed lines in percent; default 0.
	BadPct float64
	// DupPct is the share of duplicate lines in percent (an earlier good
	// line re-sent verbatim one to six intervals later); default 0.
	DupPct float64
	// EpochMsPct is the share of events whose ts and created_at are integer
	// epoch milliseconds instead of RFC 3339 strings, in percent; default 0.
	EpochMsPct float64
}

// Stats count what Events wrote. Lines = Good + Bad + Dups.
type Stats struct {
	Lines int // lines written
	Good  int // distinct valid metric events
	Bad   int // malformed lines
	Dups  int // verbatim repeats of earlier good lines
	Ads   int // distinct ads with at least one good event
}

func (o Options) withDefaults() (Options, error) {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Accounts == 0 {
		o.Accounts = 3
	}
	if o.AdsPerAccount == 0 {
		o.AdsPerAccount = 40
	}
	if o.Start.IsZero() {
		o.Start = defaultStart
	}
	o.Start = o.Start.UTC()
	if o.Duration == 0 {
		o.Duration = 7 * 24 * time.Hour
	}
	if o.Interval == 0 {
		o.Interval = time.Hour
	}
	switch {
	case o.Accounts < 0 || o.AdsPerAccount < 0:
		return o, fmt.Errorf("gen: accounts (%d) and ads per account (%d) must not be negative", o.Accounts, o.AdsPerAccount)
	case o.Duration < 0:
		return o, fmt.Errorf("gen: duration %v must not be negative", o.Duration)
	case o.Interval < time.Millisecond:
		return o, fmt.Errorf("gen: interval %v must be at least 1ms", o.Interval)
	case o.Events < 0:
		return o, fmt.Errorf("gen: events %d must not be negative", o.Events)
	case !pct(o.BadPct) || !pct(o.DupPct) || !pct(o.EpochMsPct) || o.BadPct+o.DupPct > 100:
		return o, errors.New("gen: percentages must lie in [0, 100], and bad plus duplicate at most 100")
	}
	return o, nil
}

func pct(v float64) bool { return v >= 0 && v <= 100 }

// event is one generated delta. Money is in cents.
type event struct {
	ad                               *ad
	idx                              int // position of ad in the roster
	acct                             *account
	k                                int64 // interval index
	ts                               int64 // epoch ms, end of the interval
	impressions, clicks, conversions int64
	spend, revenue, budget           int64
	withCreated                      bool
	epoch                            bool
}

// adState is an ad's per-run state: its random stream and whether it has
// reported yet.
type adState struct {
	r       *rand.Rand
	emitted bool
	acc     float64 // conversions accrued, not yet reported
}

// stream yields the good events in order: interval by interval, ad by ad.
type stream struct {
	ro       roster
	st       []adState
	start    int64 // epoch ms
	iv       int64 // interval, ms
	n        int64 // intervals in the span
	extend   bool  // go on past the span
	k        int64
	i        int
	fmtR     *rand.Rand
	epochPct float64
}

func newStream(o Options) *stream {
	ro := buildRoster(o.Seed, o.Accounts, o.AdsPerAccount, o.Start, o.Duration)
	s := &stream{
		ro:       ro,
		st:       make([]adState, len(ro.ads)),
		start:    o.Start.UnixMilli(),
		iv:       o.Interval.Milliseconds(),
		n:        int64(o.Duration / o.Interval),
		extend:   o.Events > 0,
		fmtR:     newRand(o.Seed, streamFormat),
		epochPct: o.EpochMsPct,
	}
	for i := range s.st {
		s.st[i].r = newRand(o.Seed, streamAd+uint64(i))
	}
	return s
}

// next fills e with the next good event; false when there is none.
func (s *stream) next(e *event) bool {
	if len(s.ro.ads) == 0 {
		return false
	}
	for {
		if s.i == len(s.ro.ads) {
			s.i = 0
			s.k++
		}
		if s.k >= s.n && (!s.extend || s.k > s.n+1 && s.i == 0 && !s.anyLiveAfterSpan()) {
			return false
		}
		i := s.i
		s.i++
		if s.simulate(i, e) {
			return true
		}
	}
}

// anyLiveAfterSpan reports whether some ad delivers past the span.
func (s *stream) anyLiveAfterSpan() bool {
	for i := range s.ro.ads {
		if s.ro.ads[i].stop == 0 {
			return true
		}
	}
	return false
}

// simulate draws ad i's delta for interval s.k; false when the ad is not live.
func (s *stream) simulate(i int, e *event) bool {
	d := &s.ro.ads[i]
	begin := s.start + s.k*s.iv
	end := begin + s.iv
	from, to := max(begin, d.created), end
	if d.stop != 0 {
		to = min(to, d.stop)
	}
	if to <= from {
		return false
	}
	st := &s.st[i]
	r := st.r
	ac := &s.ro.accts[d.acct]
	frac := float64(to-from) / float64(s.iv)

	budget := d.budget
	if d.budgetAt != 0 && begin >= d.budgetAt {
		budget = d.budget2
	}
	hours := float64(s.iv) / 3.6e6
	spend := budget * hours / 24 * diurnalAt((from+to)/2, ac.offset) * d.pace * frac * noise(r, 0.25)
	cpm := d.cpm * noise(r, 0.12)
	impr := int64(math.Round(spend * 1000 / cpm))
	clicks := binomial(r, impr, min(0.5, d.ctr*noise(r, 0.15)))
	// Conversions accrue: the expected count, shaken per hour, adds up in
	// acc, and each whole unit is reported. This keeps lifetime totals
	// close to the ad's true rate, as attribution spread over days does,
	// where a plain Poisson draw per hour would make ROAS after the first
	// 1000 impressions mostly luck.
	if !st.emitted {
		st.acc = r.Float64()
	}
	st.acc += float64(clicks) * d.cvr * noise(r, 0.6)
	conv := min(int64(st.acc), clicks)
	st.acc -= float64(conv)
	st.acc = min(st.acc, 2)
	var rev float64
	if conv > 0 {
		rev = float64(conv) * d.aov * noise(r, 0.25/math.Sqrt(float64(conv)))
	}

	*e = event{
		ad:          d,
		idx:         i,
		acct:        ac,
		k:           s.k,
		ts:          end,
		impressions: impr,
		clicks:      clicks,
		conversions: conv,
		spend:       cents(float64(impr) * cpm / 1000),
		revenue:     cents(rev),
		budget:      cents(budget),
	}
	switch d.createdMode {
	case createdEvery:
		e.withCreated = true
	case createdSome:
		e.withCreated = !st.emitted || s.k%6 == 0
	}
	st.emitted = true
	if s.epochPct > 0 {
		e.epoch = s.fmtR.Float64()*100 < s.epochPct
	}
	return true
}

// Fields in output order.
type field uint8

const (
	fNone field = iota
	fEventID
	fTS
	fAccount
	fCampaign
	fAdset
	fAd
	fVideo
	fImpressions
	fClicks
	fSpend
	fRevenue
	fConversions
	fCreated
	fBudget
	nFields
)

var fieldNames = [nFields]string{"", "event_id", "ts", "account_id", "campaign_id", "adset_id", "ad_id", "video_id",
	"impressions", "clicks", "spend", "revenue", "conversions", "created_at", "budget"}

// patch corrupts one line: drop leaves a field out, set writes raw as the
// value of a field.
type patch struct {
	drop field
	set  field
	raw  []byte
}

// appendEvent writes e as one JSON object, without a newline.
func appendEvent(dst []byte, e *event, p *patch) []byte {
	d := e.ad
	dst = append(dst, '{')
	for f := fEventID; f < nFields; f++ {
		if p != nil && f == p.drop {
			continue
		}
		if f == fVideo && d.vid == "" || f == fCreated && !e.withCreated {
			continue
		}
		dst = appendKey(dst, fieldNames[f])
		if p != nil && f == p.set {
			dst = append(dst, p.raw...)
			continue
		}
		switch f {
		case fEventID:
			dst = append(dst, '"')
			dst = append(dst, d.id...)
			dst = append(dst, '-')
			dst = strconv.AppendInt(dst, e.k, 10)
			dst = append(dst, '"')
		case fTS:
			dst = appendTime(dst, e.ts, e.epoch, e.acct)
		case fAccount:
			dst = appendString(dst, e.acct.id)
		case fCampaign:
			dst = appendString(dst, d.campaign)
		case fAdset:
			dst = appendString(dst, d.set)
		case fAd:
			dst = appendString(dst, d.id)
		case fVideo:
			dst = appendString(dst, d.vid)
		case fImpressions:
			dst = strconv.AppendInt(dst, e.impressions, 10)
		case fClicks:
			dst = strconv.AppendInt(dst, e.clicks, 10)
		case fSpend:
			dst = appendCents(dst, e.spend)
		case fRevenue:
			dst = appendCents(dst, e.revenue)
		case fConversions:
			dst = strconv.AppendInt(dst, e.conversions, 10)
		case fCreated:
			dst = appendTime(dst, e.ad.created, e.epoch, e.acct)
		case fBudget:
			dst = appendCents(dst, e.budget)
		}
	}
	return append(dst, '}')
}

// Kinds of malformed lines, used in turn.
const (
	badNotJSON = iota
	badArray
	badMissing
	badEmptyAd
	badNegative
	badFraction
	badString
	badNaN
	badTime
	nBad
)

var missingFields = [...]field{fEventID, fTS, fAccount, fAd, fImpressions, fClicks, fSpend}

var badTimes = [...]string{`"2026-13-45T25:61:00Z"`, `"yesterday"`, `"11/02/2026 10:00:00"`, `"2026-11-31T10:00:00Z"`, `""`}

// appendBad writes the n-th malformed line, a corrupted copy of e.
func appendBad(dst []byte, e *event, n int) []byte {
	kind, v := n%nBad, n/nBad
	var p patch
	switch kind {
	case badNotJSON:
		line := appendEvent(nil, e, nil)
		switch v % 3 {
		case 0: // cut off mid-record
			return append(dst, line[:len(line)/2]...)
		case 1: // a proxy's error page
			return append(dst, "<html><body><h1>502 Bad Gateway</h1></body></html>"...)
		default: // a Python dict printed instead of JSON
			for _, c := range line {
				if c == '"' {
					c = '\''
				}
				dst = append(dst, c)
			}
			return dst
		}
	case badArray:
		dst = append(dst, '[')
		dst = appendEvent(dst, e, nil)
		return append(dst, ']')
	case badMissing:
		p.drop = missingFields[v%len(missingFields)]
	case badEmptyAd:
		p.set, p.raw = fAd, []byte(`""`)
	case badNegative:
		if v%2 == 0 {
			p.set, p.raw = fImpressions, strconv.AppendInt([]byte{'-'}, max(e.impressions, 1), 10)
		} else {
			p.set, p.raw = fClicks, strconv.AppendInt([]byte{'-'}, max(e.clicks, 1), 10)
		}
	case badFraction:
		p.set, p.raw = fClicks, append(strconv.AppendInt(nil, e.clicks, 10), ".5"...)
	case badString:
		p.set, p.raw = fImpressions, append(strconv.AppendInt([]byte{'"'}, e.impressions, 10), '"')
	case badNaN:
		p.set, p.raw = fSpend, []byte(`"NaN"`)
	case badTime:
		p.set, p.raw = fTS, []byte(badTimes[v%len(badTimes)])
		if v%2 == 1 && e.withCreated {
			p.set = fCreated
		}
	}
	return appendEvent(dst, e, &p)
}

// pool keeps the good lines of the last poolDepth intervals, the source of
// duplicates.
const poolDepth = 6

type poolSlot struct {
	k    int64
	buf  []byte
	ends []int
}

type pool struct {
	slots [poolDepth + 1]poolSlot
}

func (p *pool) add(k int64, line []byte) {
	s := &p.slots[k%int64(len(p.slots))]
	if s.k != k || len(s.ends) == 0 {
		s.k, s.buf, s.ends = k, s.buf[:0], s.ends[:0]
	}
	s.buf = append(s.buf, line...)
	s.ends = append(s.ends, len(s.buf))
}

// pick returns a good line from one of the poolDepth intervals before k, or
// nil when they hold none.
func (p *pool) pick(r *rand.Rand, k int64) []byte {
	d0 := r.IntN(poolDepth)
	for j := range poolDepth {
		kk := k - 1 - int64((d0+j)%poolDepth)
		if kk < 0 {
			continue
		}
		s := &p.slots[kk%int64(len(p.slots))]
		if s.k != kk || len(s.ends) == 0 {
			continue
		}
		i := r.IntN(len(s.ends))
		from := 0
		if i > 0 {
			from = s.ends[i-1]
		}
		return s.buf[from:s.ends[i]]
	}
	return nil
}

// Events writes metric events as JSONL to w, in event-time order, mixed
// with malformed and duplicate lines as the options ask. It returns what it
// wrote; on a write error the Stats count the lines handed to w so far.
func Events(w io.Writer, o Options) (Stats, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	s := newStream(o)
	nr := newRand(o.Seed, streamNoise)
	bw := bufio.NewWriterSize(w, 256<<10)
	seen := make([]bool, len(s.ro.ads))
	var (
		p       pool
		line    []byte
		e       event
		pending bool // e holds the next good event, not yet written
		lastK   int64
	)
	for o.Events == 0 || st.Lines < o.Events {
		kind := lineGood
		if o.BadPct > 0 || o.DupPct > 0 {
			switch x := nr.Float64() * 100; {
			case x < o.BadPct:
				kind = lineBad
			case x < o.BadPct+o.DupPct:
				kind = lineDup
			}
		}
		var dup []byte
		if kind == lineDup {
			if dup = p.pick(nr, lastK); dup == nil {
				kind = lineGood
			}
		}
		if kind != lineDup && !pending {
			if !s.next(&e) {
				break
			}
			pending = true
		}
		switch kind {
		case lineDup:
			line = append(line[:0], dup...)
			st.Dups++
		case lineBad:
			line = appendBad(line[:0], &e, st.Bad)
			st.Bad++
		default:
			line = appendEvent(line[:0], &e, nil)
			pending = false
			lastK = e.k
			p.add(e.k, line)
			st.Good++
			if !seen[e.idx] {
				seen[e.idx] = true
				st.Ads++
			}
		}
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return st, err
		}
		st.Lines++
	}
	return st, bw.Flush()
}

const (
	lineGood = iota
	lineBad
	lineDup
)
