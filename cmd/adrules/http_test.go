package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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
	nc.http = defaultHTTPLimits()
	nc.http.read = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *node, 1)
	go func() {
		done <- runNode(ctx, nc, io.Discard, map[string]string{"ADRULES_ADMIN_TOKEN": "s3cret"}, func(n *node) { started <- n })
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

// TestUnauthenticatedCap: a real HTTP server with the node's limits serves
// at most N requests without the admin token at once: the N+1th is
// refused with 503 at once, while requests with the token and the probes
// still get through; once one ends, the next is served.
func TestUnauthenticatedCap(t *testing.T) {
	const most = 4
	a := &admin{token: "s3cret"}
	release := make(chan struct{})
	var entered sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		<-release
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/quick", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "quick") })
	limits := defaultHTTPLimits()
	limits.unauthenticated = most
	srv := limits.server(a.capUnauthenticated(mux, limits.unauthenticated, "/healthz"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	status := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	entered.Add(most)
	var held sync.WaitGroup
	for range most {
		held.Go(func() {
			if code := status("/block", ""); code != http.StatusOK {
				t.Errorf("a held request: %d", code)
			}
		})
	}
	entered.Wait() // most requests without a token are in their handlers
	if code := status("/quick", ""); code != http.StatusServiceUnavailable {
		t.Errorf("request %d without a token: %d, want 503", most+1, code)
	}
	if code := status("/quick", "wrong"); code != http.StatusServiceUnavailable {
		t.Errorf("request %d with a wrong token: %d, want 503", most+1, code)
	}
	if code := status("/quick", "s3cret"); code != http.StatusOK {
		t.Errorf("a request with the token: %d, want 200", code)
	}
	if code := status("/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	close(release)
	held.Wait()
	if code := status("/quick", ""); code != http.StatusOK {
		t.Errorf("once the held requests ended: %d, want 200", code)
	}
}
