package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/versions"
)

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
	s := kafkatest.TestSigner()
	return writeKeyFiles(t, t.TempDir(), s, s)
}

// signed returns c signed by testSigner, as a trusted publisher would
// publish it.
func signed(t *testing.T, c versions.Record) versions.Record {
	t.Helper()
	return signedBy(t, kafkatest.TestSigner(), c)
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
