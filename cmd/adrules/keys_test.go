package main

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/adrules/adrules/versions"
)

// seededSigner is a publisher key made from a fixed seed: the same key in
// every run, so tests need no randomness and no shared state.
func seededSigner(name string, seed byte) *versions.Signer {
	s, err := versions.NewSigner(name, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		panic(err)
	}
	return s
}

// testSigner is the tests' publisher: the key every test node trusts and
// signs with, and the key adrules() publishes with.
func testSigner() *versions.Signer { return seededSigner("tester", 7) }

// testKeys is a test node's keyring: it signs with testSigner and trusts
// it alone.
func testKeys() versions.Keys {
	s := testSigner()
	trust, err := versions.NewTrustList(s.Public())
	if err != nil {
		panic(err)
	}
	return versions.Keys{Policy: versions.Policy{Trust: trust}, Signer: s}
}

// writeKeyFiles writes s's private key file and a trust list of the keys
// trusted into dir, and returns their paths.
func writeKeyFiles(t *testing.T, dir string, s *versions.Signer, trusted ...*versions.Signer) (key, trust string) {
	t.Helper()
	key, trust = filepath.Join(dir, s.Name()+".key"), filepath.Join(dir, "trusted.keys")
	var lines []byte
	for _, k := range trusted {
		lines = append(lines, k.Public().String()+"\n"...)
	}
	if err := os.WriteFile(key, s.MarshalPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trust, lines, 0o644); err != nil {
		t.Fatal(err)
	}
	return key, trust
}

// testKeyFiles writes testSigner's key and a trust list of it alone.
func testKeyFiles(t *testing.T) (key, trust string) {
	t.Helper()
	s := testSigner()
	return writeKeyFiles(t, t.TempDir(), s, s)
}

// signed returns c signed by testSigner, as a trusted publisher would
// publish it.
func signed(t *testing.T, c versions.Record) versions.Record {
	t.Helper()
	return signedBy(t, testSigner(), c)
}

func signedBy(t *testing.T, s *versions.Signer, c versions.Record) versions.Record {
	t.Helper()
	sig, err := s.Sign(c.Signed())
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	return c
}
