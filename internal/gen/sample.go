package gen

import (
	"math"
	"math/rand/v2"
)

// Stream numbers select independent PCG streams for one seed.
const (
	streamRoster    = 0x526f7374 << 32 // + account index
	streamAd        = 0x41640000 << 32 // + global ad index
	streamNoise     = 0x4e6f6973
	streamFormat    = 0x466d7420
	streamProposals = 0x50726f70
)

func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// lognormal returns exp(N(0, sigma)) times median.
func lognormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

// noise returns a log-normal factor with mean 1 (not median 1), so that
// noisy deltas add up to the ad's true rates.
func noise(r *rand.Rand, sigma float64) float64 {
	return math.Exp(sigma*r.NormFloat64() - sigma*sigma/2)
}

func uniform(r *rand.Rand, lo, hi float64) float64 {
	return lo + (hi-lo)*r.Float64()
}

func clamp(v, lo, hi float64) float64 {
	return math.Max(lo, math.Min(hi, v))
}

// poisson draws a Poisson variate: Knuth's product method for small means,
// a rounded normal approximation above 30.
func poisson(r *rand.Rand, mean float64) int64 {
	if mean <= 0 {
		return 0
	}
	if mean < 30 {
		l := math.Exp(-mean)
		var k int64
		p := r.Float64()
		for p > l {
			k++
			p *= r.Float64()
		}
		return k
	}
	v := math.Round(mean + math.Sqrt(mean)*r.NormFloat64())
	if v < 0 {
		return 0
	}
	return int64(v)
}

// binomial draws Binomial(n, p), approximated by a Poisson for small means
// and by a rounded normal otherwise; the result lies in [0, n].
func binomial(r *rand.Rand, n int64, p float64) int64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	mean := float64(n) * p
	var k int64
	if mean < 30 {
		k = poisson(r, mean)
	} else {
		k = int64(math.Round(mean + math.Sqrt(mean*(1-p))*r.NormFloat64()))
	}
	return min(max(k, 0), n)
}

// diurnal is the share of daily delivery per local hour, times 24 (mean 1):
// a trough at night, a plateau over the day, a peak in the evening.
var diurnal = func() [24]float64 {
	t := [24]float64{
		0.45, 0.30, 0.22, 0.18, 0.18, 0.25, 0.45, 0.70, 0.90, 1.00, 1.05, 1.10,
		1.15, 1.12, 1.08, 1.08, 1.12, 1.22, 1.38, 1.55, 1.62, 1.50, 1.15, 0.75,
	}
	var sum float64
	for _, v := range t {
		sum += v
	}
	for i := range t {
		t[i] *= 24 / sum
	}
	return t
}()

// diurnalAt interpolates the diurnal curve at epoch milliseconds ms in a zone
// offsetSec seconds east of UTC.
func diurnalAt(ms int64, offsetSec int64) float64 {
	const day = 24 * 3600 * 1000
	local := (ms + offsetSec*1000) % day
	if local < 0 {
		local += day
	}
	h := float64(local)/3600000 - 0.5 // hour values describe the middle of the hour
	if h < 0 {
		h += 24
	}
	i := int(h)
	f := h - float64(i)
	return diurnal[i%24]*(1-f) + diurnal[(i+1)%24]*f
}
