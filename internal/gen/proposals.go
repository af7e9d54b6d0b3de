package gen

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// ProposalOptions configure Proposals. The zero value gives the defaults;
// Seed, Accounts, AdsPerAccount, Start and Duration mean what they mean in
// Options, and the same values give proposals that name the ads and ad sets
// of the matching Events output, each while it is live.
type ProposalOptions struct {
	Seed          uint64        // default 1
	Accounts      int           // default 3
	AdsPerAccount int           // default 40
	Start         time.Time     // default 2026-11-01T00:00:00Z
	Duration      time.Duration // default 7 days: proposals have ts in [Start, Start+Duration)
	Count         int           // number of proposals; default 500
}

func (o ProposalOptions) withDefaults() (ProposalOptions, error) {
	eo, err := Options{Seed: o.Seed, Accounts: o.Accounts, AdsPerAccount: o.AdsPerAccount, Start: o.Start, Duration: o.Duration}.withDefaults()
	if err != nil {
		return o, err
	}
	o.Seed, o.Accounts, o.AdsPerAccount, o.Start, o.Duration = eo.Seed, eo.Accounts, eo.AdsPerAccount, eo.Start, eo.Duration
	if o.Count == 0 {
		o.Count = 500
	}
	switch {
	case o.Count < 0:
		return o, fmt.Errorf("gen: count %d must not be negative", o.Count)
	case o.Accounts == 0 || o.AdsPerAccount == 0:
		return o, fmt.Errorf("gen: proposals need at least one account and one ad")
	case o.Duration < time.Second:
		return o, fmt.Errorf("gen: duration %v too short for proposals", o.Duration)
	}
	return o, nil
}

const (
	typeBudget = iota
	typePause
)

// proposal is one action proposal before it gets its id and budgets.
type proposal struct {
	ts   int64 // epoch ms, whole seconds
	seq  int   // order of generation, the tie-break
	acct int
	ad   int // roster index, or -1 when the proposal names an ad set
	set  int // index of the ad set in its account, when ad is -1
	typ  int
	pct  int // budget change in percent
}

const (
	minute = int64(60 * 1000)
	hour   = 60 * minute
)

// Proposals writes Count external action proposals (DESIGN section 4,
// "Action proposal") as JSONL to w, in ts order, and returns how many it
// wrote. The mix: single budget changes of -30% to +40% and pauses; ladders
// of four or five small raises (+5% to +8%, 40 to 100 minutes apart) on one
// ad or ad set that together pass the 20% budget-velocity cap; and, about
// once per 150 proposals, a burst of 18 to 28 proposals for one account
// within 50 minutes, past the 15-an-hour rate limit. About one in ten names
// only an adset_id. Budgets chain: a proposal's old_budget is the entity's
// budget after the proposals before it (starting from the budget the events
// report), as an external optimizer would see it. The action_id is
// ext-<seed>-<position>, so it is deterministic and unique per seed.
func Proposals(w io.Writer, o ProposalOptions) (int, error) {
	o, err := o.withDefaults()
	if err != nil {
		return 0, err
	}
	ro := buildRoster(o.Seed, o.Accounts, o.AdsPerAccount, o.Start, o.Duration)
	r := newRand(o.Seed, streamProposals)
	startMs, spanMs := o.Start.UnixMilli(), o.Duration.Milliseconds()
	end := startMs + spanMs

	ps := make([]proposal, 0, o.Count)
	add := func(p proposal) {
		if len(ps) < o.Count {
			p.ts -= p.ts % 1000
			p.seq = len(ps)
			ps = append(ps, p)
		}
	}
	// entity picks what a proposal at t names in account a: an ad live at t,
	// or one time in ten (or when no ad is live) an ad set.
	entity := func(a int, t int64) proposal {
		p := proposal{ts: t, acct: a, ad: -1}
		if r.Float64() >= 0.1 {
			first := a * o.AdsPerAccount
			for range 2 * o.AdsPerAccount {
				i := first + r.IntN(o.AdsPerAccount)
				if d := &ro.ads[i]; d.created <= t && (d.stop == 0 || t < d.stop) {
					p.ad = i
					return p
				}
			}
		}
		p.set = r.IntN(len(ro.accts[a].adsets))
		return p
	}
	changePct := func() int {
		for {
			if v := r.IntN(71) - 30; v != 0 {
				return v
			}
		}
	}
	within := func(room int64) int64 { // a start time leaving room before the end
		return startMs + r.Int64N(max(1, spanMs-room))
	}

	bursts := o.Count / 150
	if bursts == 0 && o.Count >= 20 {
		bursts = 1
	}
	for range bursts {
		a := r.IntN(o.Accounts)
		t0 := within(hour)
		for range 18 + r.IntN(11) {
			p := entity(a, min(t0+r.Int64N(50*minute), end-1))
			if r.Float64() < 0.15 {
				p.typ = typePause
			} else {
				p.pct = changePct()
			}
			add(p)
		}
	}
	for len(ps) < o.Count {
		a := r.IntN(o.Accounts)
		if r.Float64() < 0.12 {
			t := within(9 * hour)
			p := entity(a, t)
			for range 4 + r.IntN(2) {
				p.ts = min(t, end-1)
				p.pct = 5 + r.IntN(4)
				add(p)
				t += 40*minute + r.Int64N(60*minute)
			}
			continue
		}
		p := entity(a, within(0))
		if r.Float64() < 0.2 {
			p.typ = typePause
		} else {
			p.pct = changePct()
		}
		add(p)
	}
	slices.SortFunc(ps, func(x, y proposal) int {
		return cmp.Or(cmp.Compare(x.ts, y.ts), cmp.Compare(x.seq, y.seq))
	})

	// Budgets in cents, per ad and per ad set, once first named.
	adBudget := make([]int64, len(ro.ads))
	setBudget := make([][]int64, len(ro.accts))
	for a := range ro.accts {
		setBudget[a] = make([]int64, len(ro.accts[a].adsets))
	}
	bw := bufio.NewWriter(w)
	var line []byte
	seed := strconv.FormatUint(o.Seed, 10)
	utc := account{loc: time.UTC}
	for n, p := range ps {
		ac := &ro.accts[p.acct]
		var cur *int64
		var initial float64
		if p.ad >= 0 {
			d := &ro.ads[p.ad]
			cur, initial = &adBudget[p.ad], d.budget
			if d.budgetAt != 0 && p.ts >= d.budgetAt {
				initial = d.budget2
			}
		} else {
			cur, initial = &setBudget[p.acct][p.set], ac.adsets[p.set].budget
		}
		if *cur == 0 {
			*cur = cents(initial)
		}

		line = append(line[:0], `{"action_id":"ext-`...)
		line = append(line, seed...)
		line = append(line, '-')
		line = append(line, pad(n+1, 6)...)
		line = append(line, '"')
		line = appendKey(line, "ts")
		line = appendTime(line, p.ts, false, &utc)
		line = appendKey(line, "account_id")
		line = appendString(line, ac.id)
		if p.ad >= 0 {
			line = appendKey(line, "ad_id")
			line = appendString(line, ro.ads[p.ad].id)
		} else {
			line = appendKey(line, "adset_id")
			line = appendString(line, ac.adsets[p.set].id)
		}
		line = appendKey(line, "type")
		if p.typ == typePause {
			line = appendString(line, "pause")
		} else {
			old := *cur
			nb := max(100, int64(math.Round(float64(old)*float64(100+p.pct)/100)))
			*cur = nb
			line = appendString(line, "budget_change")
			line = appendKey(line, "old_budget")
			line = appendCents(line, old)
			line = appendKey(line, "new_budget")
			line = appendCents(line, nb)
		}
		line = appendKey(line, "source")
		line = appendString(line, "external")
		line = append(line, '}', '\n')
		if _, err := bw.Write(line); err != nil {
			return n, err
		}
	}
	return len(ps), bw.Flush()
}
