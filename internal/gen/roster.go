package gen

import (
	"math"
	"strconv"
	"time"
)

// The id scheme, shared by Events and Proposals. Account a (0-based) is
// act_<1001+a>; its campaigns, ad sets, ads and videos carry the same number
// and a per-account sequence number, so every id is unique across accounts.
func accountNum(a int) string { return strconv.Itoa(1001 + a) }

func pad(n, width int) string {
	s := strconv.Itoa(n)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

// Time styles of an account's RFC 3339 strings: all are valid per S2.
const (
	styleUTC      = iota // 2026-11-01T01:00:00Z
	styleFraction        // created_at with milliseconds: 2026-10-28T13:45:12.345Z
	styleOffset          // the account's own offset: 2026-11-01T02:00:00+01:00
)

type account struct {
	id     string
	offset int64 // seconds east of UTC, for the daily pattern
	style  int
	loc    *time.Location
	adsets []adset
}

type adset struct {
	id, campaign string
	budget       float64 // daily, for ad set level proposals
}

// created_at carriage: real feeds vary.
const (
	createdEvery = iota // on every event
	createdSome         // on the first event and every sixth interval
	createdNever        // never: consumers fall back to the first ts (S4)
)

type ad struct {
	acct                     int
	id, campaign, set, vid   string
	created                  int64 // epoch ms
	stop                     int64 // epoch ms; 0: never
	budget, budget2          float64
	budgetAt                 int64 // epoch ms when budget2 replaces budget; 0: never
	pace, cpm, ctr, cvr, aov float64
	createdMode              int
}

// offsets are the accounts' time zones, in hours east of UTC, in turn.
var offsets = [...]int64{-5, 1, -8, 0, 10, -6, 2, 5}

// roster is the account model for one seed: accounts, and all ads in
// account-then-ad order.
type roster struct {
	accts []account
	ads   []ad
}

// buildRoster draws the accounts and ads. Account a uses its own random
// stream, so adding accounts leaves the earlier ones unchanged.
func buildRoster(seed uint64, accounts, adsPerAccount int, start time.Time, span time.Duration) roster {
	startMs := start.UnixMilli()
	spanMs := span.Milliseconds()
	var ro roster
	ro.accts = make([]account, accounts)
	ro.ads = make([]ad, 0, accounts*adsPerAccount)
	for a := range accounts {
		r := newRand(seed, streamRoster+uint64(a))
		num := accountNum(a)
		ac := &ro.accts[a]
		ac.id = "act_" + num
		ac.offset = offsets[a%len(offsets)] * 3600
		ac.style = a % 3
		if ac.style == styleOffset {
			ac.loc = time.FixedZone("", int(ac.offset))
		} else {
			ac.loc = time.UTC
		}
		acctCPM := uniform(r, 10, 18)
		acctAOV := uniform(r, 8, 14)

		// Campaigns of about a dozen ads, each with one to three ad sets.
		nc := max(1, (adsPerAccount+6)/12)
		for c := range nc {
			camp := "cmp_" + num + "_" + pad(c+1, 2)
			for range 1 + r.IntN(3) {
				ac.adsets = append(ac.adsets, adset{
					id:       "as_" + num + "_" + pad(len(ac.adsets)+1, 2),
					campaign: camp,
					budget:   math.Round(lognormal(r, 150, 0.6)),
				})
			}
		}
		nvid := max(1, adsPerAccount*2/3)

		for i := range adsPerAccount {
			set := &ac.adsets[r.IntN(len(ac.adsets))]
			d := ad{
				acct:     a,
				id:       "ad_" + num + "_" + pad(i+1, 4),
				campaign: set.campaign,
				set:      set.id,
			}
			if r.Float64() < 0.85 { // the rest are image ads
				d.vid = "vid_" + num + "_" + pad(1+r.IntN(nvid), 3)
			}
			// A fifth of the ads are live before the span, the rest launch
			// over its first 85%.
			prelive := r.Float64() < 0.2
			if prelive {
				d.created = startMs - int64(uniform(r, 1, 240)*3600*1000)
			} else {
				d.created = startMs + int64(r.Float64()*0.85*float64(spanMs))
			}
			if ac.style != styleFraction {
				d.created -= d.created % 1000
			}
			// A few ads stop (paused by a person) inside the span; the first
			// ad of each account never does, so the stream can always go on.
			if i > 0 && r.Float64() < 0.08 {
				d.stop = max(d.created, startMs) + int64(uniform(r, 30, 120)*3600*1000)
				if d.stop >= startMs+spanMs {
					d.stop = 0
				}
			}
			d.budget = lognormal(r, 80, 0.7)
			if prelive { // ads that survived long enough got scaled up
				d.budget *= 2
			}
			d.budget = clamp(math.Round(d.budget), 10, 1000)
			d.budget2 = d.budget
			if r.Float64() < 0.15 {
				f := [...]float64{0.8, 1.2, 1.5}[r.IntN(3)]
				d.budget2 = math.Round(d.budget * f)
				d.budgetAt = d.created + int64(uniform(r, 12, 96)*3600*1000)
			}
			d.pace = uniform(r, 0.55, 1.0)
			if r.Float64() < 0.10 { // ads the auction hardly serves
				d.pace = uniform(r, 0.03, 0.25)
			}
			d.cpm = clamp(lognormal(r, acctCPM, 0.3), 3, 40)
			if r.Float64() < 0.02 { // the tail of thumb-stopping creatives
				d.ctr = uniform(r, 0.032, 0.06)
			} else {
				d.ctr = clamp(lognormal(r, 0.012, 0.25), 0.002, 0.08)
			}
			var roas float64
			if r.Float64() < 0.015 {
				roas = uniform(r, 3.3, 5.0)
			} else {
				roas = clamp(lognormal(r, 1.0, 0.35), 0.05, 8)
			}
			d.aov = lognormal(r, acctAOV, 0.2)
			// conversion rate per click, chosen so that the expected ROAS is
			// roas: revenue/spend = ctr*cvr*aov*1000/cpm.
			// Where that rate would be implausible, the order value gives way.
			d.cvr = roas * d.cpm / (d.ctr * d.aov * 1000)
			if c := clamp(d.cvr, 0.002, 0.12); c != d.cvr {
				d.cvr = c
				d.aov = roas * d.cpm / (d.ctr * d.cvr * 1000)
			}
			switch x := r.Float64(); {
			case x < 0.85:
				d.createdMode = createdEvery
			case x < 0.95:
				d.createdMode = createdSome
			default:
				d.createdMode = createdNever
			}
			ro.ads = append(ro.ads, d)
		}
	}
	return ro
}
