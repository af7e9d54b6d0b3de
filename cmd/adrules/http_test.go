package main

import (
	"bufio"
	"context"
	"fmt"
	"github.com/adrules/adrules/node"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/kafkatest"
)

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

// TestSlowBodies: on a node's own HTTP server, request bodies that trickle
// in are not held open. Without the token, validate answers 401 before
// reading the body; with it, the read timeout cuts the body. Headers past
// the limit are refused.
func TestSlowBodies(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	nc := testNodeConfig(addrs, topics, "http", t.TempDir())
	nc.http = node.DefaultHTTPLimits()
	nc.http.Read = 500 * time.Millisecond
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

	// Far beyond the read timeout, far below what a held request shows.
	deadline := time.Now().Add(20 * time.Second)
	const slow = 20
	var anon, authed []net.Conn
	for range slow {
		anon = append(anon, slowRequest(t, n.addr, "/api/config/validate", ""))
		authed = append(authed, slowRequest(t, n.addr, "/api/config/validate", "s3cret"))
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

	req, _ := http.NewRequest("GET", "http://"+n.addr+"/healthz", nil)
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
