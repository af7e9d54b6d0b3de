package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fuzzSeeds are rules documents the fuzz targets start from: the shipped
// ones, and the hostile ones of issue 11.
func fuzzSeeds(f *testing.F) {
	for _, path := range []string{"../../examples/rules.yaml", "../../../shared/predecessor/learning_config.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: default\nrules:\n  - id: deep\n    when: " + strings.Repeat("(", 5000) + "true" + strings.Repeat(")", 5000) + "\n"))
	f.Add([]byte("name: default\nrules:\n  - id: big\n    when: len(repeat(repeat(\"x\", 99999), 1000000)) > 0\n"))
	f.Add([]byte("name: default\nparams:\n  a: &a \"" + strings.Repeat("x", 1000) + "\"\n  b: [*a, *a, *a, *a, *a, *a, *a, *a]\n"))
	f.Add([]byte(`{"name":"default","rules":[{"id":"r","when":"true"}]}`))
}

// FuzzValidate: whatever body POST /api/config/validate gets (with the
// token), it answers 200 or a 4xx with a JSON body, in bounded time,
// without crashing: the handler is an input surface of every node.
func FuzzValidate(f *testing.F) {
	fuzzSeeds(f)
	a := &admin{token: "t"}
	mux := http.NewServeMux()
	a.routes(mux)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/config/validate", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer t")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusOK && (w.Code < 400 || w.Code > 499) {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("the answer is not JSON: %q", w.Body)
		}
	})
}

// FuzzConfigRecord: a config record as a node reads it from the topic,
// decoded (streams.Configs), its signature checked, its document loaded,
// hashed and compiled (keyring.accept), never crashes a node, whatever the
// record's bytes; and a document signed by a trusted publisher (a key
// that leaked, or a careless one) is either accepted or refused with an
// error, never a crash or a hang.
func FuzzConfigRecord(f *testing.F) {
	fuzzSeeds(f)
	keys := testKeys()
	f.Fuzz(func(t *testing.T, data []byte) {
		// The bytes as a record's value.
		good, _ := streams.Configs([]*kgo.Record{{Key: []byte("default"), Value: data}}, "default")
		for _, c := range good {
			keys.accept(c)
		}
		// The bytes as a document, published and signed as a trusted
		// publisher would.
		c := streams.ConfigRecord{Name: "default", Version: 7, Author: "fuzz", Document: data}
		if doc, err := config.Load("fuzz", data, config.Options{}); err == nil {
			c.Name, c.SHA256, c.Document = doc.Name, doc.SHA256(), doc.Canonical()
		}
		sig, err := keys.signer.Sign(c.Signed())
		if err != nil {
			return // a name the signature refuses (a line break)
		}
		c.Signature = sig
		v, err := json.Marshal(c)
		if err != nil {
			return // a document that is not JSON: no record carries it
		}
		good, _ = streams.Configs([]*kgo.Record{{Key: []byte(c.Name), Value: v}}, c.Name)
		for _, c := range good {
			if rs, err := keys.accept(c); err == nil && rs == nil {
				t.Fatal("accepted without a rule set")
			}
		}
	})
}
