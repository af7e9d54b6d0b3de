package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
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

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAdminAPI: reads are open; writes and validate need the bearer token
// (compared in constant time), bodies are capped, errors are JSON with the
// same positions as adrules check, and PUT publishes to the config topic,
// signed with the node's key, which the node then runs.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	o := options(t, addrs, topics, "api")
	o.AdminToken = "s3cret"
	n := start(t, o)
	api := "http://" + n.Addr() + "/api/config"
	base, _ := os.ReadFile(rulesFile)
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
	eventually(t, "the node on the version PUT published", func() bool { return n.RuleSet().Version == 2 })
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
	// Signed with the node's own key.
	recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.ConfigHistory)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := versions.Live(streams.Entries(recs), "default")
	if len(live) != 2 || live[1].Author != "api" || live[1].Signature == nil || live[1].Signature.KeyID != kafkatest.TestSigner().Public().ID() {
		t.Fatalf("the history: %+v", live)
	}
}

// TestAdminPutNeedsASigningKey: a node without a signing key refuses PUT
// /api/config, since every node would refuse the version it published.
func TestAdminPutNeedsASigningKey(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	o := options(t, addrs, topics, "api")
	o.AdminToken = "s3cret"
	// Bootstrap first with the key, then run without it.
	start(t, o).stop(t)
	o.Keys.Signer = nil
	o.Observer, o.Clock = &recorder{}, newFakeClock()
	n := start(t, o)
	body, _ := os.ReadFile(rulesFile)
	v2 := bytes.Replace(body, []byte("ctr_threshold: 0.03"), []byte("ctr_threshold: 0.04"), 1)
	if code, m := request(t, "PUT", "http://"+n.Addr()+"/api/config", "s3cret", v2); code != http.StatusForbidden || !strings.Contains(toJSON(m), "no signing key") {
		t.Fatalf("PUT without a signing key: %d %v, want 403", code, m)
	}
}

// slowRequest opens a connection to addr and sends a request's headers
// and the start of a body of a million bytes, then nothing more.
func slowRequest(t *testing.T, addr, path, token string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: 1000000\r\n\r\nrules:\n", path, auth)
	return c
}

// answer waits until the server answers on c or closes it, and returns the
// status (0 for a connection closed without an answer); it fails the test
// if c is still held open at deadline.
func answer(t *testing.T, c net.Conn, deadline time.Time) int {
	t.Helper()
	c.SetReadDeadline(deadline)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a slow request is still held open after %s", time.Until(deadline).Round(time.Second))
	}
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSlowBodies: on a node's own HTTP server (Options.HTTP), request
// bodies that trickle in are not held open. Without the token, validate
// answers 401 before reading the body; with it, the read timeout cuts the
// body. Headers past the limit are refused. (A real server and real
// timeouts: the deadline is far beyond the read timeout, and nothing
// asserts how long the cut took.)
func TestSlowBodies(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	o := options(t, addrs, topics, "http")
	o.AdminToken = "s3cret"
	o.HTTP = node.DefaultHTTPLimits()
	o.HTTP.Read = 500 * time.Millisecond
	n := start(t, o)

	// Far beyond the read timeout, far below what a held request shows.
	deadline := time.Now().Add(20 * time.Second)
	const slow = 20
	var anon, authed []net.Conn
	for range slow {
		anon = append(anon, slowRequest(t, n.Addr(), "/api/config/validate", ""))
		authed = append(authed, slowRequest(t, n.Addr(), "/api/config/validate", "s3cret"))
	}
	for _, c := range anon {
		if code := answer(t, c, deadline); code != http.StatusUnauthorized {
			t.Errorf("validate without a token: %d, want 401", code)
		}
	}
	for _, c := range authed {
		if code := answer(t, c, deadline); code != 0 && code != http.StatusBadRequest {
			t.Errorf("a slow body with the token: %d, want it cut (400, or the connection closed)", code)
		}
	}

	req, _ := http.NewRequest("GET", "http://"+n.Addr()+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", 40<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("40 KiB of headers: %d, want 431", resp.StatusCode)
	}
}
