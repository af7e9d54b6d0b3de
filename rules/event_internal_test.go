package rules

import (
	"math/rand/v2"
	"testing"
)

// TestPrintable8 checks the bit tricks of printable8 against a byte loop:
// every byte value at every position, and random words of likely bytes.
func TestPrintable8(t *testing.T) {
	naive := func(w uint64) bool {
		for i := 0; i < 8; i++ {
			if b := byte(w >> (8 * i)); b < 0x20 || b >= 0x7f {
				return false
			}
		}
		return true
	}
	check := func(w uint64) {
		if got, want := printable8(w), naive(w); got != want {
			t.Fatalf("printable8(%#016x) = %v, want %v", w, got, want)
		}
	}
	for a := range 256 {
		for pos := range 8 {
			for _, fill := range []uint64{'a', 0x20, 0x7e, 0x1f, 0x7f, 0x80} {
				check(fill*0x0101010101010101&^(0xff<<(8*pos)) | uint64(a)<<(8*pos))
			}
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(0, seed))
	likely := []byte{0, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xff, 'a', '0', 0xc3, 0x01}
	for range 200000 {
		var w uint64
		for i := range 8 {
			w |= uint64(likely[r.IntN(len(likely))]) << (8 * i)
		}
		check(w)
	}
}
