package kafkatest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Forgeries are five records of the rule set "default" that a node trusting
// only the key that signed its versions must refuse (Forge). Each holds a
// valid document, so that only its signature or its number can refuse it.
type Forgeries struct {
	Unsigned     versions.Record // v3 without a signature, by "mallory"
	Untrusted    versions.Record // v3 signed by Stranger
	Replayed     versions.Record // the history's v2, its record and signature, as v4
	ShadowAsLive versions.Record // v5, live, with a signature made for a shadow
	Overflow     versions.Record // v9223372036854775807, unsigned
	// Stranger is the key that signed Untrusted: "mallory", made from a
	// fixed seed (66), so its ID is the same in every run.
	Stranger *versions.Signer
}

// Records returns the five records in the order above: the order the tests
// publish them in.
func (f Forgeries) Records() []versions.Record {
	return []versions.Record{f.Unsigned, f.Untrusted, f.Replayed, f.ShadowAsLive, f.Overflow}
}

// Forge builds the Forgeries of a cluster whose config history holds v1
// and v2 of "default", both signed by signer: it reads v2 from the history
// (opts are given to the client that reads it). The documents are
// examples/rules.yaml's with another CTR threshold; root is the path to the
// repository's root, as for DefaultRules.
func Forge(t testing.TB, addrs []string, topics streams.Topics, root string, signer *versions.Signer, opts ...kgo.Opt) Forgeries {
	t.Helper()
	record := func(v int64, ctr string) versions.Record {
		data, err := os.ReadFile(root + "/examples/rules.yaml")
		if err != nil {
			t.Fatal(err)
		}
		const old = "ctr_threshold: 0.03"
		if !strings.Contains(string(data), old) {
			t.Fatalf("examples/rules.yaml holds no %q", old)
		}
		doc, err := config.Load("rules.yaml", []byte(strings.Replace(string(data), old, "ctr_threshold: "+ctr, 1)), config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return sign(t, signer, versions.Record{Name: "default", Version: v, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()})
	}
	stranger, err := versions.NewSigner("mallory", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{66}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	f := Forgeries{Stranger: stranger}
	loose := record(3, "0.01") // signed by signer: a starting point
	f.Unsigned = loose
	f.Unsigned.Signature, f.Unsigned.Author = nil, "mallory"
	f.Untrusted = sign(t, stranger, loose)
	recs, err := streams.ReadAll(context.Background(), addrs, opts, topics.ConfigHistory)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := versions.Live(streams.Entries(recs), "default")
	if len(live) == 0 {
		t.Fatal("the config history holds no live version of default")
	}
	f.Replayed = live[len(live)-1] // v2, signed by signer for number 2
	if f.Replayed.Version != 2 || f.Replayed.Signature == nil {
		t.Fatalf("the history's last version: v%d, signed %v; want v2, signed", f.Replayed.Version, f.Replayed.Signature != nil)
	}
	f.Replayed.Version = 4
	f.ShadowAsLive = record(5, "0.02")
	f.ShadowAsLive.Shadow = true
	f.ShadowAsLive = sign(t, signer, f.ShadowAsLive) // a shadow's signature...
	f.ShadowAsLive.Shadow = false                    // ...on a live record
	f.Overflow = loose
	f.Overflow.Version, f.Overflow.Signature = math.MaxInt64, nil
	return f
}
