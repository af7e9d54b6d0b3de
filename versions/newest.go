package versions

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/adrules/adrules/rules"
)

// Newest returns the version of a rule set every node runs after the live
// records published (those of the history topic, then those of the config
// topic, each in order; other records are skipped): the highest version
// accept takes. Among records of one version the later wins (Publish
// writes the history first, so the config topic's copy comes last): two
// publishers racing to one number still leave every node on one document.
// A record on both topics is tried once; a copy with another signature (or
// none) is another record, and refusing one does not skip the other.
// refused (nil: not told) is told of every record tried and refused; one
// refused is never picked. ok is false when none is accepted.
//
// A node that follows the config topic keeps to the same rule record by
// record: Replaces.
func Newest(published []Record, accept Accept, refused func(Record, error)) (c Record, rs *rules.RuleSet, ok bool) {
	var live []Record
	for _, c := range published {
		if !c.Shadow && !c.Retired {
			live = append(live, c)
		}
	}
	// The highest version first; among records of one version, the later
	// first.
	slices.Reverse(live)
	slices.SortStableFunc(live, func(a, b Record) int { return cmp.Compare(b.Version, a.Version) })
	type key struct {
		version        int64
		sha, body, sig string
	}
	tried := map[key]bool{}
	for _, c := range live {
		k := key{c.Version, c.SHA256, string(c.Document), ""}
		if c.Signature != nil {
			k.sig = c.Signature.KeyID + "/" + string(c.Signature.Sig)
		}
		if tried[k] {
			continue
		}
		tried[k] = true
		rs, err := accept(c)
		if err == nil {
			return c, rs, true
		}
		if refused != nil {
			refused(c, err)
		}
	}
	return Record{}, nil, false
}

// Replaces reports whether c, once accepted, replaces the version running
// (its number and sha256) on a node that follows the config topic: a
// higher version, or another record of the same version with another
// document (the later record wins). Folding the records of a topic with it
// gives what Newest gives for them.
func Replaces(running int64, runningSHA string, c Record) bool {
	return c.Version > running || c.Version == running && c.SHA256 != runningSHA
}

// Errors of Baseline.
var (
	// ErrNoValid: "live", and no live version is accepted (Newest finds
	// none).
	ErrNoValid = errors.New("no valid version")
	// ErrNoSuchVersion: no record has the version number asked for.
	ErrNoSuchVersion = errors.New("no such version")
)

// Baseline resolves a backtest's --baseline among published records: spec
// "live" is the version nodes run (Newest with accept, over the history's
// then the config topic's records); a version number in decimal is the
// last record published with that number, live or shadow (they share one
// numbering; retirements aside), compiled as it ran (Compile: the
// signature decided what ran then, not what it was). The errors wrap
// ErrNoValid or ErrNoSuchVersion, say spec is neither, or are Compile's.
func Baseline(published []Record, spec string, accept Accept) (Record, *rules.RuleSet, error) {
	if spec == "live" {
		c, rs, ok := Newest(published, accept, nil)
		if !ok {
			return Record{}, nil, ErrNoValid
		}
		return c, rs, nil
	}
	version, err := strconv.ParseInt(spec, 10, 64)
	if err != nil {
		return Record{}, nil, fmt.Errorf("%q is neither live nor a version number", spec)
	}
	for i := len(published) - 1; i >= 0; i-- {
		c := published[i]
		if c.Version != version || c.Retired {
			continue
		}
		rs, err := Compile(c)
		return c, rs, err
	}
	return Record{}, nil, ErrNoSuchVersion
}
