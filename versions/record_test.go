package versions_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/adrules/adrules/versions"
)

// TestRecordVersionRange: issue 11 row 9. A record whose version is
// outside 1..versions.MaxVersion (9223372036854775807, one past the range,
// 0, -1) is refused where it is decoded, live or shadow, with the reason;
// the bounds themselves are versions.
func TestRecordVersionRange(t *testing.T) {
	rec := func(key string, v string, shadow bool) versions.Entry {
		val := `{"name":"default","version":` + v + `,"document":{"name":"default"}`
		if shadow {
			val += `,"shadow":true`
		}
		return versions.Entry{Key: []byte(key), Value: []byte(val + "}")}
	}
	over := []string{"9223372036854775807", "9007199254740992", "0", "-1", "-9223372036854775808"}
	var recs []versions.Entry
	for _, v := range over {
		recs = append(recs, rec("default", v, false), rec("default.shadow", v, true))
	}
	recs = append(recs, rec("default", "1", false), rec("default", "9007199254740991", false), rec("default.shadow", "9007199254740991", true))
	live, bad := versions.Live(recs, "default")
	if len(live) != 2 || live[0].Version != 1 || live[1].Version != versions.MaxVersion || len(bad) != len(over) {
		t.Fatalf("Live: %+v, bad %q", live, bad)
	}
	if !strings.Contains(bad[0], "out of range") {
		t.Fatalf("the reason: %q", bad[0])
	}
	sh, bad := versions.Shadows(recs, "default")
	if len(sh) != 1 || sh[0].Version != versions.MaxVersion || len(bad) != len(over) {
		t.Fatalf("Shadows: %+v, bad %q", sh, bad)
	}
}

// TestRecordSignature: a record's signature is a field of its value, left
// out when unsigned, and covers its name, version, sha256 and kind.
func TestRecordSignature(t *testing.T) {
	c := versions.Record{Name: "default", Version: 3, SHA256: "abc", Document: json.RawMessage(`{}`), Shadow: true}
	if b, _ := json.Marshal(c); strings.Contains(string(b), "signature") {
		t.Fatalf("an unsigned record: %s", b)
	}
	c.Signature = &versions.Signature{KeyID: "0011223344556677", Signer: "alice", Sig: []byte{1, 2, 3}}
	b, _ := json.Marshal(c)
	if !strings.Contains(string(b), `"signature":{"key_id":"0011223344556677","signer":"alice","sig":"AQID"}`) {
		t.Fatalf("a signed record: %s", b)
	}
	var back versions.Record
	if err := json.Unmarshal(b, &back); err != nil || back.Signature == nil || back.Signature.Signer != "alice" {
		t.Fatalf("decoded: %+v %v", back, err)
	}
	if got := c.Signed(); got != (versions.Version{Name: "default", Number: 3, SHA256: "abc", Shadow: true}) {
		t.Fatalf("Signed: %+v", got)
	}
}

// TestRecordEncoding: the JSON of a record, field by field, as it is on
// the topics: the bytes every node and publisher agree on.
func TestRecordEncoding(t *testing.T) {
	c := versions.Record{Name: "default", Version: 7, SHA256: "ab", Author: "alice", PublishedAt: "2024-05-01T10:00:00.000Z",
		Document: json.RawMessage(`{"name":"default"}`), Shadow: true, Retired: true,
		Signature: &versions.Signature{KeyID: "k", Sig: []byte{1}}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"default","version":7,"sha256":"ab","author":"alice","published_at":"2024-05-01T10:00:00.000Z","document":{"name":"default"},"shadow":true,"retired":true,"signature":{"key_id":"k","sig":"AQ=="}}`
	if string(b) != want {
		t.Fatalf("encoded:\n%s\nwant:\n%s", b, want)
	}
	if ms, err := c.PublishedMilli(); err != nil || ms != 1714557600000 {
		t.Fatalf("PublishedMilli: %d %v", ms, err)
	}
	if c.Key() != "default.shadow" || versions.ShadowKey("x") != "x.shadow" {
		t.Fatalf("Key: %q", c.Key())
	}
}

func TestLiveAndShadows(t *testing.T) {
	rec := func(key, value string) versions.Entry {
		r := versions.Entry{Key: []byte(key)}
		if value != "" {
			r.Value = []byte(value)
		}
		return r
	}
	recs := []versions.Entry{
		rec("default", `{"name":"default","version":1,"document":{"name":"default"}}`),
		rec("default.shadow", `{"name":"default","version":2,"document":{"name":"default"},"shadow":true}`),
		rec("default.shadow/promote", `{"claim":"n1"}`),                                              // another key: skipped
		rec("default", `{"name":"default","version":3,"document":{"name":"default"},"shadow":true}`), // a shadow under the live key: bad
		rec("default.shadow", `{"name":"default","version":2,"shadow":true,"retired":true}`),
		rec("default.shadow", ""), // a tombstone: retired
		rec("default.shadow", `{"name":"default","version":4,"document":{"name":"default"}}`), // no shadow flag: bad
		rec("other.shadow", `{"name":"other","version":5,"document":{"name":"other"},"shadow":true}`),
	}
	live, bad := versions.Live(recs, "default")
	if len(live) != 1 || live[0].Version != 1 || len(bad) != 1 {
		t.Fatalf("Live: %+v, bad %q", live, bad)
	}
	sh, bad := versions.Shadows(recs, "default")
	if len(sh) != 3 || sh[0].Version != 2 || sh[0].Retired || !sh[1].Retired || !sh[2].Retired || len(bad) != 1 {
		t.Fatalf("Shadows: %+v, bad %q", sh, bad)
	}
	// Published: live and shadow records in the order they came, the bad
	// ones left out.
	var got []int64
	for _, c := range versions.Published(recs, "default") {
		got = append(got, c.Version)
	}
	if want := []int64{1, 2, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("Published: %v, want %v", got, want)
	}
}
