package shadow

import (
	"fmt"
	"math"
)

// SideReport is one side's winner decisions and their outcomes.
type SideReport struct {
	// Decisions counts the side's distinct winner decisions.
	Decisions int `json:"decisions"`
	// Resolved counts those whose horizon the watermark passed.
	Resolved int `json:"resolved"`
	// Held counts the resolved decisions whose outcome met the yardstick.
	Held int `json:"held"`
	// Precision is Held/Resolved, 0 when nothing is resolved.
	Precision float64 `json:"precision"`
}

// Agreement counts, for one rule, the ads that both sides decided, only
// the live side, or only the shadow (each ad once, whatever the number of
// its decisions).
type Agreement struct {
	Rule       string `json:"rule"`
	Both       int    `json:"both"`
	LiveOnly   int    `json:"live_only"`
	ShadowOnly int    `json:"shadow_only"`
}

// Criterion is one condition of promotion and whether it is met.
type Criterion struct {
	Name   string `json:"name"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// Report is the comparison of the shadow with the live rule set.
type Report struct {
	Settings  Settings `json:"settings"`
	Watermark int64    `json:"watermark_ms"` // the largest event ts seen; 0 before any

	Live   SideReport `json:"live"`
	Shadow SideReport `json:"shadow"`
	// Agreement has one entry per rule id, sorted.
	Agreement []Agreement `json:"agreement"`

	// The one-sided two-proportion z-test (pooled) that the shadow's
	// precision is higher: Z, its p-value, and the critical value at the
	// confidence level.
	Z         float64 `json:"z"`
	PValue    float64 `json:"p_value"`
	ZCritical float64 `json:"z_critical"`
	// ImprovementPct is the shadow's gain relative to the live precision,
	// in percent (0 when the live precision is 0); ImprovementPts is the
	// absolute gain in percentage points.
	ImprovementPct float64 `json:"improvement_pct"`
	ImprovementPts float64 `json:"improvement_pts"`

	// Criteria are the promotion criteria in a fixed order: samples,
	// improvement, accuracy_delta, significance.
	Criteria []Criterion `json:"criteria"`
	// Promote is true when every criterion is met (whatever AutoPromote
	// says: it decides only whether a node acts on it).
	Promote bool `json:"promote"`
	// Reasons are the details of the unmet criteria: why not.
	Reasons []string `json:"reasons,omitempty"`
}

// eps absorbs floating-point noise in comparisons of derived statistics
// with thresholds, so that exactly 2% is at least 2%.
const eps = 1e-9

// Report returns the comparison so far. It does not change the tracker.
func (t *Tracker) Report() Report {
	r := Report{Settings: t.s, Live: t.sides[Live], Shadow: t.sides[Shadow]}
	if t.hasWM {
		r.Watermark = t.wm
	}
	for _, sr := range []*SideReport{&r.Live, &r.Shadow} {
		sr.Precision = ratio(float64(sr.Held), float64(sr.Resolved))
	}
	for _, rule := range sortedKeys(t.agree) {
		a := Agreement{Rule: rule}
		for _, bits := range t.agree[rule] {
			switch bits {
			case 3:
				a.Both++
			case 1:
				a.LiveOnly++
			case 2:
				a.ShadowOnly++
			}
		}
		r.Agreement = append(r.Agreement, a)
	}
	r.Z, r.PValue = TwoProportion(r.Live.Held, r.Live.Resolved, r.Shadow.Held, r.Shadow.Resolved)
	r.ZCritical = CriticalZ(t.s.ConfidenceLevel)
	pl, ps := r.Live.Precision, r.Shadow.Precision
	r.ImprovementPct = ratio(ps-pl, pl) * 100
	r.ImprovementPts = (ps - pl) * 100
	r.Criteria = t.criteria(r)
	r.Promote = true
	for _, c := range r.Criteria {
		if !c.Met {
			r.Promote = false
			r.Reasons = append(r.Reasons, c.Detail)
		}
	}
	return r
}

func (t *Tracker) criteria(r Report) []Criterion {
	s := t.s
	nl, ns := r.Live.Resolved, r.Shadow.Resolved
	pl, ps := r.Live.Precision, r.Shadow.Precision
	var out []Criterion

	c := Criterion{Name: "samples", Met: nl >= s.MinSamples && ns >= s.MinSamples}
	if c.Met {
		c.Detail = fmt.Sprintf("both sides have at least %d resolved decisions (live %d, shadow %d)", s.MinSamples, nl, ns)
	} else {
		c.Detail = fmt.Sprintf("too few resolved decisions: live %d, shadow %d; each side needs %d", nl, ns, s.MinSamples)
	}
	out = append(out, c)

	// Relative improvement. A live precision of 0 makes any positive
	// shadow precision an unbounded gain.
	c = Criterion{Name: "improvement"}
	switch {
	case pl == 0:
		c.Met = ps > 0
		if c.Met {
			c.Detail = fmt.Sprintf("shadow precision %.4f against a live precision of 0", ps)
		} else {
			c.Detail = "no improvement: both precisions are 0"
		}
	default:
		c.Met = r.ImprovementPct >= s.MinImprovementPct-eps
		c.Detail = fmt.Sprintf("shadow precision %.4f is %+.2f%% relative to live %.4f; needs at least %+.2f%%",
			ps, r.ImprovementPct, pl, s.MinImprovementPct)
	}
	out = append(out, c)

	c = Criterion{Name: "accuracy_delta", Met: ps-pl >= s.MinAccuracyDelta-eps}
	c.Detail = fmt.Sprintf("shadow precision is %+.2f points from live; needs at least %+.2f points",
		r.ImprovementPts, s.MinAccuracyDelta*100)
	out = append(out, c)

	alpha := 1 - s.ConfidenceLevel
	c = Criterion{Name: "significance", Met: nl > 0 && ns > 0 && r.PValue <= alpha+eps}
	switch {
	case nl == 0 || ns == 0:
		c.Detail = "no test: a side has no resolved decisions"
	case c.Met:
		c.Detail = fmt.Sprintf("significant: z %.3f >= %.3f (p %.4f <= %.4f at confidence %g)", r.Z, r.ZCritical, r.PValue, alpha, s.ConfidenceLevel)
	default:
		c.Detail = fmt.Sprintf("not significant: z %.3f < %.3f (p %.4f > %.4f at confidence %g)", r.Z, r.ZCritical, r.PValue, alpha, s.ConfidenceLevel)
	}
	out = append(out, c)
	return out
}

// TwoProportion is the pooled two-proportion z-test that proportion B
// (heldB of nB) is higher than proportion A (heldA of nA): z =
// (pB - pA) / sqrt(p(1-p)(1/nA + 1/nB)) with p the pooled proportion, and
// the one-sided p-value P(Z >= z) = erfc(z/√2)/2. With a side empty, or no
// variance (both all held or all not), z is 0 and p is 1 when a side is
// empty, 0.5 otherwise.
func TwoProportion(heldA, nA, heldB, nB int) (z, p float64) {
	if nA <= 0 || nB <= 0 {
		return 0, 1
	}
	pa, pb := float64(heldA)/float64(nA), float64(heldB)/float64(nB)
	pool := float64(heldA+heldB) / float64(nA+nB)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(nA) + 1/float64(nB)))
	if se == 0 {
		return 0, 0.5
	}
	z = (pb - pa) / se
	return z, math.Erfc(z/math.Sqrt2) / 2
}

// CriticalZ is the one-sided critical value of the standard normal at
// confidence level c: √2·erfinv(2c - 1) (1.645 at 0.95).
func CriticalZ(c float64) float64 { return math.Sqrt2 * math.Erfinv(2*c-1) }
