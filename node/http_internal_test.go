package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

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
	limits := DefaultHTTPLimits()
	limits.Unauthenticated = most
	srv := limits.server(a.capUnauthenticated(mux, limits.Unauthenticated, "/healthz"))
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
