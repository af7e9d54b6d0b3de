package versions_test

import (
	"fmt"
	"testing"

	"github.com/adrules/adrules/versions"
)

func shadowRec(v int64, sha string) versions.Record {
	c := rec(v, sha)
	c.Shadow = true
	return c
}

func retired(v int64) versions.Record {
	return versions.Record{Name: "default", Version: v, Shadow: true, Retired: true}
}

// TestShadowInForce: each rule of the shadow in force, folded over one
// topic's shadow records.
func TestShadowInForce(t *testing.T) {
	for _, tc := range []struct {
		what    string
		recs    []versions.Record
		want    string // "" when none
		refused []string
		history bool // NeedsHistory
	}{
		{"none published", nil, "", nil, false},
		{"a newer version replaces it", []versions.Record{shadowRec(2, "a"), shadowRec(3, "b")}, "v3/b", nil, false},
		{"an older one changes nothing", []versions.Record{shadowRec(3, "b"), shadowRec(2, "a")}, "v3/b", nil, false},
		{"another document of its number replaces it", []versions.Record{shadowRec(3, "a"), shadowRec(3, "b")}, "v3/b", nil, false},
		{"a refused one is refused and the shadow stays", []versions.Record{shadowRec(2, "a"), shadowRec(3, "bad")}, "v2/a", []string{"v3/bad"}, false},
		{"a retirement ends it", []versions.Record{shadowRec(2, "a"), retired(2)}, "", nil, false},
		{"a refused one alone: the history decides", []versions.Record{shadowRec(3, "bad")}, "", []string{"v3/bad"}, true},
		{"after a retirement, a refused one: the history decides", []versions.Record{shadowRec(2, "a"), retired(2), shadowRec(3, "bad")}, "", []string{"v3/bad"}, true},
	} {
		t.Run(tc.what, func(t *testing.T) {
			var f fakeAccept
			var refused []string
			cur, last := versions.ShadowInForce(tc.recs, f.accept, func(c versions.Record, err error) { refused = append(refused, id(c)) })
			got := ""
			if cur != nil {
				got = id(cur.Record)
				if cur.RuleSet.Version != cur.Record.Version {
					t.Errorf("the rule set is not the record's")
				}
			}
			if got != tc.want || fmt.Sprint(refused) != fmt.Sprint(tc.refused) {
				t.Errorf("got %q refused %v, want %q refused %v", got, refused, tc.want, tc.refused)
			}
			if len(tc.recs) > 0 && (last == nil || id(*last) != id(tc.recs[len(tc.recs)-1])) {
				t.Errorf("last %v", last)
			}
			if versions.NeedsHistory(cur, last) != tc.history {
				t.Errorf("NeedsHistory: %v", !tc.history)
			}
		})
	}
}

// TestNextShadowSameRecord: the record in force again (read on both
// topics) is not compiled again.
func TestNextShadowSameRecord(t *testing.T) {
	var f fakeAccept
	cur, err := versions.NextShadow(nil, shadowRec(2, "a"), f.accept)
	if err != nil {
		t.Fatal(err)
	}
	next, err := versions.NextShadow(cur, shadowRec(2, "a"), f.accept)
	if err != nil || next != cur || len(f.tried) != 1 {
		t.Fatalf("next %v err %v tried %v", next, err, f.tried)
	}
}
