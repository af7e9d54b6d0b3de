package kafkatest

import (
	"bytes"
	"crypto/ed25519"

	"github.com/adrules/adrules/versions"
)

// SeededSigner is a publisher key made from a fixed seed: the same key in
// every run, so tests need no randomness and no shared state.
func SeededSigner(name string, seed byte) *versions.Signer {
	s, err := versions.NewSigner(name, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		panic(err)
	}
	return s
}

// TestSigner is the tests' publisher: the key every test node trusts and
// signs with, and the key the command tests publish with.
func TestSigner() *versions.Signer { return SeededSigner("tester", 7) }

// TestKeys are a test node's keys: it signs with TestSigner and trusts it
// alone.
func TestKeys() versions.Keys {
	s := TestSigner()
	trust, err := versions.NewTrustList(s.Public())
	if err != nil {
		panic(err)
	}
	return versions.Keys{Policy: versions.Policy{Trust: trust}, Signer: s}
}
