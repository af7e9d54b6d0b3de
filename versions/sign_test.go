package versions

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"math"
	"strings"
	"testing"
)

// testSigner is a signer made from a fixed seed: the same key in every run.
func testSigner(t *testing.T, name string, seed byte) *Signer {
	t.Helper()
	s, err := NewSigner(name, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const sha = "24e17cd20dc9a0b6c2d4e1f3a5b7c9d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2"

func TestMessageIsFixed(t *testing.T) {
	got, err := Version{Name: "default", Number: 7, SHA256: sha}.Message()
	if err != nil {
		t.Fatal(err)
	}
	want := "adrules signed rule set version 1\nname: default\nversion: 7\nsha256: " + sha + "\nkind: live\n"
	if string(got) != want {
		t.Fatalf("message:\n%s\nwant:\n%s", got, want)
	}
	sh, _ := Version{Name: "default", Number: 7, SHA256: sha, Shadow: true}.Message()
	if !strings.HasSuffix(string(sh), "kind: shadow\n") {
		t.Fatalf("shadow message: %s", sh)
	}
	for _, v := range []Version{
		{Name: "a\nversion: 9", Number: 7, SHA256: sha},
		{Name: "default", Number: 7, SHA256: sha + "\nkind: live"},
		{Name: "default", Number: 0, SHA256: sha},
		{Name: "default", Number: math.MaxInt64, SHA256: sha},
	} {
		if _, err := v.Message(); err == nil {
			t.Errorf("%q: signed", v)
		}
	}
}

// TestVerify: a signature verifies for the version it was made for, under a
// trusted key, and for nothing else.
func TestVerify(t *testing.T) {
	alice, mallory := testSigner(t, "alice", 1), testSigner(t, "mallory", 2)
	trust, err := NewTrustList(alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	v := Version{Name: "default", Number: 7, SHA256: sha}
	sig, err := alice.Sign(v)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := trust.Verify(v, sig); err != nil || k.Name != "alice" {
		t.Fatalf("a good signature: %v %v", k, err)
	}
	bad, _ := mallory.Sign(v)
	lying := *bad
	lying.KeyID, lying.Signer = sig.KeyID, "alice" // mallory's signature under alice's key id
	tampered := *sig
	tampered.Sig = bytes.Clone(sig.Sig)
	tampered.Sig[0] ^= 1
	short := *sig
	short.Sig = sig.Sig[:10]
	for _, tc := range []struct {
		what string
		v    Version
		sig  *Signature
		want error
	}{
		{"unsigned", v, nil, ErrUnsigned},
		{"an untrusted key", v, bad, ErrUntrusted},
		{"another key's signature under a trusted key's id", v, &lying, ErrBadSignature},
		{"a changed signature", v, &tampered, ErrBadSignature},
		{"a short signature", v, &short, ErrBadSignature},
		{"replayed under another number", Version{Name: "default", Number: 8, SHA256: sha}, sig, ErrBadSignature},
		{"replayed for another document", Version{Name: "default", Number: 7, SHA256: strings.Repeat("0", 64)}, sig, ErrBadSignature},
		{"replayed for another rule set", Version{Name: "other", Number: 7, SHA256: sha}, sig, ErrBadSignature},
		{"a live signature replayed as a shadow", Version{Name: "default", Number: 7, SHA256: sha, Shadow: true}, sig, ErrBadSignature},
		{"out of range", Version{Name: "default", Number: math.MaxInt64, SHA256: sha}, sig, ErrVersionRange},
	} {
		if _, err := trust.Verify(tc.v, tc.sig); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
	}
	// A shadow's signature does not make it live.
	sv := Version{Name: "default", Number: 9, SHA256: sha, Shadow: true}
	ssig, _ := alice.Sign(sv)
	if _, err := trust.Verify(sv, ssig); err != nil {
		t.Fatal(err)
	}
	sv.Shadow = false
	if _, err := trust.Verify(sv, ssig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a shadow's signature as live: %v", err)
	}
}

// TestKeyFiles: a private key and its public line read back as they were
// written; a trust list of two keys (a rotation) trusts both.
func TestKeyFiles(t *testing.T) {
	s := testSigner(t, "alice", 1)
	back, err := ParseSigner(s.MarshalPEM(), "ignored")
	if err != nil || back.Name() != "alice" || !back.key.Equal(s.key) {
		t.Fatalf("private key round trip: %v %v", back, err)
	}
	// Without a Name line (openssl genpkey writes none), the name given.
	noName := bytes.Replace(s.MarshalPEM(), []byte("Name: alice\n"), nil, 1)
	if !bytes.HasPrefix(noName, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("the key file:\n%s", s.MarshalPEM())
	}
	if back, err := ParseSigner(noName, "publisher"); err != nil || back.Name() != "publisher" {
		t.Fatalf("a key without a Name line: %v %v", back, err)
	}
	// A Name header of the block names it too.
	block, _ := pem.Decode(noName)
	block.Headers = map[string]string{"Name": "carol"}
	if back, err := ParseSigner(pem.EncodeToMemory(block), "publisher"); err != nil || back.Name() != "carol" {
		t.Fatalf("a key with a Name header: %v %v", back, err)
	}
	if _, err := ParseSigner([]byte("not a key"), "x"); err == nil {
		t.Fatal("parsed garbage")
	}

	next := testSigner(t, "alice-2027", 3)
	file := "# publishers\n\n" + s.Public().String() + "\n  " + next.Public().String() + "  \n"
	keys, err := ParseTrustList([]byte(file))
	if err != nil || len(keys) != 2 {
		t.Fatalf("trust list: %v %v", keys, err)
	}
	trust, err := NewTrustList(append(keys, s.Public())...) // listed twice: once
	if err != nil || len(trust.Keys()) != 2 {
		t.Fatalf("trust list of two keys: %v %v", trust, err)
	}
	for _, signer := range []*Signer{s, next} {
		v := Version{Name: "default", Number: 3, SHA256: sha}
		sig, _ := signer.Sign(v)
		if k, err := trust.Verify(v, sig); err != nil || k.Name != signer.Name() {
			t.Fatalf("%s: %v %v", signer.Name(), k, err)
		}
	}
	if id := s.Public().ID(); len(id) != 16 {
		t.Fatalf("key id %q", id)
	}

	for _, bad := range []string{
		"ed25519 AAAA alice", // short key
		"rsa " + strings.Fields(s.Public().String())[1] + " alice", // another type
		"ed25519 " + strings.Fields(s.Public().String())[1],        // no name
		"ed25519 " + strings.Fields(s.Public().String())[1] + " a b",
	} {
		if _, err := ParseTrustList([]byte("# x\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v, want an error on line 2", bad, err)
		}
	}
	renamed := s.Public()
	renamed.Name = "bob"
	if _, err := NewTrustList(s.Public(), renamed); err == nil {
		t.Error("one key under two names was accepted")
	}
	if _, err := NewTrustList(); err == nil {
		t.Error("an empty trust list was accepted")
	}
}

func TestVersionRange(t *testing.T) {
	for _, v := range []int64{1, 2, MaxVersion} {
		if err := CheckVersion(v); err != nil {
			t.Errorf("%d: %v", v, err)
		}
	}
	for _, v := range []int64{0, -1, MaxVersion + 1, math.MaxInt64, math.MinInt64} {
		if err := CheckVersion(v); !errors.Is(err, ErrVersionRange) {
			t.Errorf("%d: %v", v, err)
		}
	}
	if n, err := NextAfter(0); n != 1 || err != nil {
		t.Errorf("NextAfter(0) = %d, %v", n, err)
	}
	if n, err := NextAfter(MaxVersion - 1); n != MaxVersion || err != nil {
		t.Errorf("NextAfter(MaxVersion-1) = %d, %v", n, err)
	}
	for _, h := range []int64{MaxVersion, math.MaxInt64, -1} {
		if n, err := NextAfter(h); !errors.Is(err, ErrVersionRange) {
			t.Errorf("NextAfter(%d) = %d, %v: want an error, never a wrap", h, n, err)
		}
	}
}
