package versions_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/versions"
)

// fakeAccept accepts every record whose sha256 does not start with "bad",
// with a rule set that names the record (version and sha256), and counts
// what it was asked.
type fakeAccept struct{ tried []string }

func (f *fakeAccept) accept(c versions.Record) (*rules.RuleSet, error) {
	f.tried = append(f.tried, id(c))
	if len(c.SHA256) >= 3 && c.SHA256[:3] == "bad" {
		return nil, errors.New("refused")
	}
	return &rules.RuleSet{Version: c.Version, SHA256: c.SHA256}, nil
}

func id(c versions.Record) string { return fmt.Sprintf("v%d/%s", c.Version, c.SHA256) }

func rec(v int64, sha string) versions.Record {
	return versions.Record{Name: "default", Version: v, SHA256: sha, Document: []byte(`{"sha":"` + sha + `"}`)}
}

// TestNewest: each rule of the version nodes run, given the records of the
// history then the config topic.
func TestNewest(t *testing.T) {
	shadow := rec(9, "s")
	shadow.Shadow = true
	for _, tc := range []struct {
		what    string
		recs    []versions.Record
		want    string // "" when none is valid
		refused []string
	}{
		{"a higher version beats a later record", []versions.Record{rec(1, "a"), rec(3, "c"), rec(2, "b")}, "v3/c", nil},
		{"the later record wins within a version", []versions.Record{rec(2, "a"), rec(2, "b"), rec(1, "c")}, "v2/b", nil},
		{"a refused record is never picked", []versions.Record{rec(2, "a"), rec(3, "bad1")}, "v2/a", []string{"v3/bad1"}},
		{"a refused later record of a version leaves the earlier one", []versions.Record{rec(2, "a"), rec(2, "bad2")}, "v2/a", []string{"v2/bad2"}},
		{"a record on both topics is tried once", []versions.Record{rec(2, "a"), rec(3, "bad3"), rec(3, "bad3")}, "v2/a", []string{"v3/bad3"}},
		{"none valid", []versions.Record{rec(1, "bad1"), rec(2, "bad2")}, "", []string{"v2/bad2", "v1/bad1"}},
		{"nothing published", nil, "", nil},
		{"shadows and retirements are not live", []versions.Record{rec(1, "a"), shadow}, "v1/a", nil},
	} {
		t.Run(tc.what, func(t *testing.T) {
			var f fakeAccept
			var refused []string
			c, rs, ok := versions.Newest(tc.recs, f.accept, func(c versions.Record, err error) { refused = append(refused, id(c)) })
			got := ""
			if ok {
				got = id(c)
				if rs.Version != c.Version || rs.SHA256 != c.SHA256 {
					t.Errorf("the rule set %d/%s is not the record's", rs.Version, rs.SHA256)
				}
			}
			if got != tc.want || fmt.Sprint(refused) != fmt.Sprint(tc.refused) {
				t.Errorf("got %q refused %v, want %q refused %v", got, refused, tc.want, tc.refused)
			}
		})
	}
}

// TestNewestCopiesWithAnotherSignature: a copy of a record with another
// signature (or none) is another record: refusing one does not skip the
// other.
func TestNewestCopiesWithAnotherSignature(t *testing.T) {
	s := seeded(t, "alice", 1)
	trust, err := versions.NewTrustList(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	signed := rec(2, "a")
	sig, err := s.Sign(signed.Signed())
	if err != nil {
		t.Fatal(err)
	}
	signed.Signature = sig
	p := versions.Policy{Trust: trust}
	var tried []string
	accept := func(c versions.Record) (*rules.RuleSet, error) {
		if _, err := p.Check(c); err != nil {
			return nil, err
		}
		tried = append(tried, id(c))
		return &rules.RuleSet{Version: c.Version, SHA256: c.SHA256}, nil
	}
	// The unsigned copy comes later: it is tried first, refused, and the
	// signed one still is.
	c, _, ok := versions.Newest([]versions.Record{signed, rec(2, "a")}, accept, nil)
	if !ok || c.Signature == nil {
		t.Fatalf("got %+v %v, want the signed copy", c, ok)
	}
}

// TestReplacesFoldsAsNewest: a node that follows the topic record by
// record (Replaces, accepting each record that would replace the running
// one) ends on the version Newest picks over the same records.
func TestReplacesFoldsAsNewest(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(0, seed))
	for range 2000 {
		var recs []versions.Record
		for range 1 + r.IntN(8) {
			sha := []string{"a", "b", "c", "bad1", "bad2"}[r.IntN(5)]
			recs = append(recs, rec(1+r.Int64N(4), sha))
		}
		var f fakeAccept
		var cur *rules.RuleSet
		for _, c := range recs {
			if cur != nil && !versions.Replaces(cur.Version, cur.SHA256, c) {
				continue
			}
			if rs, err := f.accept(c); err == nil {
				cur = rs
			}
		}
		c, _, ok := versions.Newest(recs, f.accept, nil)
		switch {
		case ok != (cur != nil):
			t.Fatalf("%v: Newest %v, the fold %v", ids(recs), ok, cur)
		case ok && (c.Version != cur.Version || c.SHA256 != cur.SHA256):
			t.Fatalf("%v: Newest %s, the fold v%d/%s", ids(recs), id(c), cur.Version, cur.SHA256)
		}
	}
}

func ids(recs []versions.Record) []string {
	var out []string
	for _, c := range recs {
		out = append(out, id(c))
	}
	return out
}

// TestBaseline: "live" is Newest; a number the last record of that
// number, live or shadow, compiled as it ran.
func TestBaseline(t *testing.T) {
	var f fakeAccept
	recs := []versions.Record{rec(1, "a"), rec(2, "bad")}
	if c, _, err := versions.Baseline(recs, "live", f.accept); err != nil || id(c) != "v1/a" {
		t.Fatalf("live: %s %v", id(c), err)
	}
	if _, _, err := versions.Baseline([]versions.Record{rec(2, "bad")}, "live", f.accept); !errors.Is(err, versions.ErrNoValid) {
		t.Fatalf("live, none valid: %v", err)
	}
	if _, _, err := versions.Baseline(recs, "9", f.accept); !errors.Is(err, versions.ErrNoSuchVersion) {
		t.Fatalf("9: %v", err)
	}
	if _, _, err := versions.Baseline(recs, "0", f.accept); !errors.Is(err, versions.ErrNoSuchVersion) {
		t.Fatalf("0: %v", err)
	}
	// A number is compiled (versions.Compile): these documents do not.
	if _, _, err := versions.Baseline(recs, "1", f.accept); err == nil || errors.Is(err, versions.ErrNoSuchVersion) {
		t.Fatalf("1: %v", err)
	}
}
