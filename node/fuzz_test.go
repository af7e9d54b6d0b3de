package node

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"github.com/adrules/adrules/versions"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// fuzzSeeds are rules documents the fuzz targets start from: the shipped
// ones, and the hostile ones of issue 11.
func fuzzSeeds(f *testing.F) {
	for _, path := range []string{"../examples/rules.yaml", "../../shared/predecessor/learning_config.yaml"} {
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
	a := &admin{n: &Node{}, token: "t"}
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

// TestAdminWithoutToken: a node without a configured token refuses writes.
func TestAdminWithoutToken(t *testing.T) {
	a := &admin{}
	rec := httptest.NewRecorder()
	a.write(func(http.ResponseWriter, *http.Request) { t.Fatal("the handler ran") })(rec, httptest.NewRequest("PUT", "/api/config", nil))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "ADRULES_ADMIN_TOKEN") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// TestAdminPutWithoutSigningKey: a node without a signing key refuses PUT
// /api/config, since every node would refuse the version it published.
// (cmd/adrules TestAdminPutSigns: a node with one publishes signed.)
func TestAdminPutWithoutSigningKey(t *testing.T) {
	s, err := versions.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	trust, err := versions.NewTrustList(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	a := &admin{n: &Node{o: Options{Ruleset: "default", Keys: versions.Keys{Policy: versions.Policy{Trust: trust}}}}}
	body, _ := os.ReadFile("../examples/rules.yaml")
	rec := httptest.NewRecorder()
	a.put(rec, httptest.NewRequest("PUT", "/api/config", bytes.NewReader(body)))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "no signing key") {
		t.Fatalf("PUT on a node without a signing key: %d %s", rec.Code, rec.Body)
	}
}
