package versions

import (
	"errors"
	"fmt"
)

// MaxVersion is the highest version number: 2^53-1, the largest integer
// that every JSON reader (JavaScript's numbers, jq) holds exactly.
const MaxVersion int64 = 1<<53 - 1

// ErrVersionRange says a version number is outside 1..MaxVersion. It
// surfaces where a config record is decoded (the record is refused) and
// from Next (nothing is published).
var ErrVersionRange = errors.New("version out of range")

// CheckVersion returns an error wrapping ErrVersionRange unless v is in
// 1..MaxVersion.
func CheckVersion(v int64) error {
	if v < 1 || v > MaxVersion {
		return fmt.Errorf("%w: %d is not in 1..%d", ErrVersionRange, v, MaxVersion)
	}
	return nil
}

// NextAfter returns the version number after highest (0 when nothing was
// published), or an error wrapping ErrVersionRange when highest is
// MaxVersion or beyond: the sequence ends there, it never wraps.
// Policy.Next finds highest among published records.
func NextAfter(highest int64) (int64, error) {
	if highest < 0 || highest >= MaxVersion {
		return 0, fmt.Errorf("%w: no version comes after %d (the highest is %d)", ErrVersionRange, highest, MaxVersion)
	}
	return highest + 1, nil
}
