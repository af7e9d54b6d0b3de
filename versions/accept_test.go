package versions_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/versions"
)

// seeded is a signer made from a fixed seed: the same key in every run.
func seeded(t testing.TB, name string, seed byte) *versions.Signer {
	t.Helper()
	s, err := versions.NewSigner(name, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// published returns the record of the example rules as version v.
func published(t testing.TB, v int64) versions.Record {
	t.Helper()
	b, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("rules.yaml", b, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return versions.Record{Name: doc.Name, Version: v, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()}
}

func sign(t testing.TB, s *versions.Signer, c versions.Record) versions.Record {
	t.Helper()
	sig, err := s.Sign(c.Signed())
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	return c
}

// TestCompile: a record compiles when its document loads, hashes to its
// sha256 and compiles, under its number.
func TestCompile(t *testing.T) {
	c := published(t, 7)
	rs, err := versions.Compile(c)
	if err != nil || rs.Version != 7 || rs.SHA256 != c.SHA256 {
		t.Fatalf("Compile: %+v %v", rs, err)
	}
	c.SHA256 = strings.Repeat("0", 64)
	if _, err := versions.Compile(c); err == nil || !strings.Contains(err.Error(), "v7: the document hashes to") {
		t.Fatalf("a wrong sha256: %v", err)
	}
	c.Shadow = true
	if _, err := versions.Compile(c); err == nil || !strings.Contains(err.Error(), c.Name+".shadow v7") {
		t.Fatalf("a shadow's errors name its key: %v", err)
	}
	c.Document = json.RawMessage(`{"name":"default","rules":[{"id":"r","when":"ad.nope","emit":{"type":"t"}}]}`)
	if _, err := versions.Compile(c); err == nil {
		t.Fatal("a document that does not compile compiled")
	}
}

// TestPolicy: with a trust list, only versions a trusted key signed are
// accepted, and the signature is checked before the document is looked
// at; without one, or accepting unsigned versions, every valid one is.
func TestPolicy(t *testing.T) {
	alice, mallory := seeded(t, "alice", 1), seeded(t, "mallory", 2)
	trust, err := versions.NewTrustList(alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := versions.Policy{Trust: trust}
	good := sign(t, alice, published(t, 3))
	if !p.Checks() {
		t.Fatal("a trust list does not check")
	}
	if rs, err := p.Accept(good); err != nil || rs.Version != 3 {
		t.Fatalf("signed by alice: %v", err)
	}
	unsigned := published(t, 3)
	if _, err := p.Accept(unsigned); !errors.Is(err, versions.ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
	if _, err := p.Accept(sign(t, mallory, published(t, 3))); !errors.Is(err, versions.ErrUntrusted) {
		t.Fatalf("signed by mallory: %v", err)
	}
	// Signed, but not a document: refused on its signature first.
	junk := good
	junk.Document = json.RawMessage(`{`)
	junk.SHA256 = "x"
	if _, err := p.Accept(junk); !errors.Is(err, versions.ErrBadSignature) {
		t.Fatalf("changed after signing: %v", err)
	}
	for _, open := range []versions.Policy{{}, {Trust: trust, AcceptUnsigned: true}, {AcceptUnsigned: true}} {
		if open.Checks() {
			t.Errorf("%+v checks", open)
		}
		if _, err := open.Accept(unsigned); err != nil {
			t.Errorf("%+v refuses an unsigned valid version: %v", open, err)
		}
	}
}

// TestNextNeverWraps: the next number comes after the versions published
// before the first trusted one and after the trusted ones since, never
// after an untrusted one since; at versions.MaxVersion there is none.
func TestNextNeverWraps(t *testing.T) {
	alice := seeded(t, "alice", 1)
	trust, err := versions.NewTrustList(alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	keys := versions.Policy{Trust: trust}
	rec := func(v int64, signed bool) versions.Record {
		c := versions.Record{Name: "default", Version: v, SHA256: strings.Repeat("a", 64)}
		if signed {
			c = sign(t, alice, c)
		}
		return c
	}
	for _, tc := range []struct {
		what string
		hist []versions.Record
		keys versions.Policy
		want int64
	}{
		{"nothing published", nil, keys, 1},
		{"unsigned versions before signatures", []versions.Record{rec(1, false), rec(7, false)}, keys, 8},
		{"then trusted ones", []versions.Record{rec(1, false), rec(7, false), rec(8, true)}, keys, 9},
		{"an untrusted version since is left out", []versions.Record{rec(1, true), rec(versions.MaxVersion, false), rec(2, true)}, keys, 3},
		{"without a trust list, every version counts", []versions.Record{rec(1, true), rec(40, false)}, versions.Policy{}, 41},
		{"a retirement counts for nothing", []versions.Record{rec(1, true), {Name: "default", Version: 90, Shadow: true, Retired: true}}, keys, 2},
	} {
		if got, err := tc.keys.Next(tc.hist); got != tc.want || err != nil {
			t.Errorf("%s: %d %v, want %d", tc.what, got, err, tc.want)
		}
	}
	if got, err := keys.Next([]versions.Record{rec(versions.MaxVersion, true)}); !errors.Is(err, versions.ErrVersionRange) {
		t.Fatalf("after MaxVersion: %d %v, want an error and never a wrap", got, err)
	}
}

// FuzzConfigRecord: a config record as a node reads it from the topic,
// decoded (Live), its signature checked, its document loaded, hashed and
// compiled (Policy.Accept), never crashes a node, whatever the record's
// bytes; and a document signed by a trusted publisher (a key that leaked,
// or a careless one) is either accepted or refused with an error, never a
// crash or a hang.
func FuzzConfigRecord(f *testing.F) {
	for _, path := range []string{"../examples/rules.yaml", "../../shared/predecessor/learning_config.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: default\nrules:\n  - id: deep\n    when: " + strings.Repeat("(", 5000) + "true" + strings.Repeat(")", 5000) + "\n"))
	f.Add([]byte("name: default\nrules:\n  - id: big\n    when: len(repeat(repeat(\"x\", 99999), 1000000)) > 0\n"))
	f.Add([]byte("name: default\nparams:\n  a: &a \"" + strings.Repeat("x", 1000) + "\"\n  b: [*a, *a, *a, *a, *a, *a, *a, *a]\n"))
	f.Add([]byte(`{"name":"default","rules":[{"id":"r","when":"true"}]}`))
	s := seeded(f, "tester", 7)
	trust, err := versions.NewTrustList(s.Public())
	if err != nil {
		f.Fatal(err)
	}
	keys := versions.Policy{Trust: trust}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The bytes as a record's value.
		good, _ := versions.Live([]versions.Entry{{Key: []byte("default"), Value: data}}, "default")
		for _, c := range good {
			keys.Accept(c)
		}
		// The bytes as a document, published and signed as a trusted
		// publisher would.
		c := versions.Record{Name: "default", Version: 7, Author: "fuzz", Document: data}
		if doc, err := config.Load("fuzz", data, config.Options{}); err == nil {
			c.Name, c.SHA256, c.Document = doc.Name, doc.SHA256(), doc.Canonical()
		}
		sig, err := s.Sign(c.Signed())
		if err != nil {
			return // a name the signature refuses (a line break)
		}
		c.Signature = sig
		v, err := json.Marshal(c)
		if err != nil {
			return // a document that is not JSON: no record carries it
		}
		good, _ = versions.Live([]versions.Entry{{Key: []byte(c.Name), Value: v}}, c.Name)
		for _, c := range good {
			if rs, err := keys.Accept(c); err == nil && rs == nil {
				t.Fatal("accepted without a rule set")
			}
		}
	})
}
