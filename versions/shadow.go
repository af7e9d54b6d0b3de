package versions

import "github.com/adrules/adrules/rules"

// Shadow is a shadow version in force: its record, compiled.
type Shadow struct {
	Record  Record
	RuleSet *rules.RuleSet
}

// NextShadow returns the shadow in force after record r, given the one in
// force before it (nil: none), as every node decides it: a retirement ends
// it; a version newer than it (or of its number with another document: the
// newest record wins, as for live versions) that accept takes replaces
// it; an older one changes nothing; one accept refuses (invalid, unsigned,
// signed by an untrusted key) is refused (the error) and cur stays.
func NextShadow(cur *Shadow, r Record, accept Accept) (*Shadow, error) {
	if r.Retired {
		return nil, nil
	}
	if cur != nil && (r.Version < cur.Record.Version || r.Version == cur.Record.Version && r.SHA256 == cur.Record.SHA256) {
		return cur, nil
	}
	rs, err := accept(r)
	if err != nil {
		return cur, err
	}
	return &Shadow{Record: r, RuleSet: rs}, nil
}

// ShadowInForce folds the shadow records of one topic (Shadows), in order,
// with NextShadow: it returns the shadow in force after them (nil: none)
// and the last record (nil: none). refused (nil: not told) is told of each
// version refused.
//
// When the config topic's fold ends on a record that is not in force
// (NeedsHistory), compaction may have removed the valid version before
// it: every node then folds the history topic instead.
func ShadowInForce(records []Record, accept Accept, refused func(Record, error)) (cur *Shadow, last *Record) {
	for i, c := range records {
		var err error
		if cur, err = NextShadow(cur, c, accept); err != nil && refused != nil {
			refused(c, err)
		}
		last = &records[i]
	}
	return cur, last
}

// NeedsHistory reports whether the shadow in force must be taken from the
// history topic, after folding the config topic gave cur and last
// (ShadowInForce): no shadow is in force, yet the last record is not a
// retirement (it was refused, and compaction left no valid one before it).
func NeedsHistory(cur *Shadow, last *Record) bool {
	return cur == nil && last != nil && !last.Retired
}
