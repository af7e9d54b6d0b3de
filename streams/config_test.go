package streams_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConfigVersionRange: issue 11 row 9. A record whose version is outside
// 1..versions.MaxVersion (9223372036854775807, one past the range, 0, -1)
// is refused where it is decoded, live or shadow, with the reason; the
// bounds themselves are versions.
func TestConfigVersionRange(t *testing.T) {
	rec := func(key string, v string, shadow bool) *kgo.Record {
		val := `{"name":"default","version":` + v + `,"document":{"name":"default"}`
		if shadow {
			val += `,"shadow":true`
		}
		return &kgo.Record{Key: []byte(key), Value: []byte(val + "}")}
	}
	over := []string{"9223372036854775807", "9007199254740992", "0", "-1", "-9223372036854775808"}
	var recs []*kgo.Record
	for _, v := range over {
		recs = append(recs, rec("default", v, false), rec("default.shadow", v, true))
	}
	recs = append(recs, rec("default", "1", false), rec("default", "9007199254740991", false), rec("default.shadow", "9007199254740991", true))
	live, bad := streams.Configs(recs, "default")
	if len(live) != 2 || live[0].Version != 1 || live[1].Version != versions.MaxVersion || len(bad) != len(over) {
		t.Fatalf("Configs: %+v, bad %q", live, bad)
	}
	if !strings.Contains(bad[0], "out of range") {
		t.Fatalf("the reason: %q", bad[0])
	}
	sh, bad := streams.Shadows(recs, "default")
	if len(sh) != 1 || sh[0].Version != versions.MaxVersion || len(bad) != len(over) {
		t.Fatalf("Shadows: %+v, bad %q", sh, bad)
	}
}

// TestConfigSignature: a record's signature is a field of its value, left
// out when unsigned, and covers its name, version, sha256 and kind.
func TestConfigSignature(t *testing.T) {
	c := streams.ConfigRecord{Name: "default", Version: 3, SHA256: "abc", Document: json.RawMessage(`{}`), Shadow: true}
	if b, _ := json.Marshal(c); strings.Contains(string(b), "signature") {
		t.Fatalf("an unsigned record: %s", b)
	}
	c.Signature = &versions.Signature{KeyID: "0011223344556677", Signer: "alice", Sig: []byte{1, 2, 3}}
	b, _ := json.Marshal(c)
	if !strings.Contains(string(b), `"signature":{"key_id":"0011223344556677","signer":"alice","sig":"AQID"}`) {
		t.Fatalf("a signed record: %s", b)
	}
	var back streams.ConfigRecord
	if err := json.Unmarshal(b, &back); err != nil || back.Signature == nil || back.Signature.Signer != "alice" {
		t.Fatalf("decoded: %+v %v", back, err)
	}
	if got := c.Signed(); got != (versions.Version{Name: "default", Number: 3, SHA256: "abc", Shadow: true}) {
		t.Fatalf("Signed: %+v", got)
	}
}
