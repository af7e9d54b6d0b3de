package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/kafkatest"
)

func request(t *testing.T, method, url, token string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s: content type %q", method, url, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, m
}

// TestAdminAPI: reads are open; writes and validate need the bearer token
// (compared in constant time), bodies are capped, errors are JSON with the same
// positions as adrules check, and PUT publishes to the config topic, which
// the node then runs.
func TestAdminAPI(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	nc := testNodeConfig(addrs, topics, "api", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *nodeRun, 1)
	go func() {
		done <- runNode(ctx, nc, io.Discard, map[string]string{"ADRULES_ADMIN_TOKEN": "s3cret"}, func(n *nodeRun) { started <- n })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	n := <-started
	api := "http://" + n.addr + "/api/config"
	base, _ := os.ReadFile("../../examples/rules.yaml")
	v2 := []byte(strings.Replace(string(base), "ctr_threshold: 0.03", "ctr_threshold: 0.04", 1))

	if code, m := request(t, "GET", api, "", nil); code != 200 || m["version"] != 1.0 {
		t.Fatalf("GET /api/config: %d %v", code, m)
	}
	for _, tok := range []string{"", "wrong", "s3cre"} {
		if code, m := request(t, "PUT", api, tok, v2); code != http.StatusUnauthorized || m["error"] == "" {
			t.Fatalf("PUT with token %q: %d %v, want 401", tok, code, m)
		}
	}
	if code, _ := request(t, "PUT", api, "s3cret", bytes.Repeat([]byte("#"), 2<<20)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d, want 413", code)
	}
	bad := []byte(strings.Replace(string(base), "ad.ctr >", "ad.ctx >", 1))
	code, m := request(t, "POST", api+"/validate", "s3cret", bad)
	if code != http.StatusUnprocessableEntity || !strings.Contains(toJSON(m["errors"]), "body:") || !strings.Contains(toJSON(m["errors"]), "rule winner") {
		t.Fatalf("validate an invalid document: %d %v", code, m)
	}
	if code, m := request(t, "POST", api+"/validate", "s3cret", v2); code != 200 || m["valid"] != true {
		t.Fatalf("validate: %d %v", code, m)
	}
	// A dry run changes nothing, but compiles what it is sent: it needs
	// the token too.
	if code, m := request(t, "POST", api+"/validate", "", v2); code != http.StatusUnauthorized {
		t.Fatalf("validate without a token: %d %v, want 401", code, m)
	}
	if code, m := request(t, "PUT", api, "s3cret", bad); code != http.StatusUnprocessableEntity {
		t.Fatalf("PUT an invalid document: %d %v", code, m)
	}
	if code, m := request(t, "PUT", api, "s3cret", v2); code != 200 || m["version"] != 2.0 {
		t.Fatalf("PUT: %d %v", code, m)
	}
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n.ruleSet().Version != 2 {
		select {
		case <-deadline:
			t.Fatal("the node did not switch to the version PUT published")
		case <-tick.C:
		}
	}
	if code, m := request(t, "GET", api, "", nil); code != 200 || m["version"] != 2.0 || !strings.Contains(toJSON(m["document"]), `"ctr_threshold":0.04`) {
		t.Fatalf("GET after PUT: %d %v", code, m)
	}
	if code, m := request(t, "POST", api+"/learning/reload", "s3cret", nil); code != 200 || m["version"] != 2.0 {
		t.Fatalf("reload: %d %v", code, m)
	}
	resp, err := http.Get(api + "/history")
	if err != nil {
		t.Fatal(err)
	}
	var hist []map[string]any
	json.NewDecoder(resp.Body).Decode(&hist)
	resp.Body.Close()
	if len(hist) != 2 || hist[1]["author"] != "api" {
		t.Fatalf("history: %v", hist)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
