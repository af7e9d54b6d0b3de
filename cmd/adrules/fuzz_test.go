package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
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
