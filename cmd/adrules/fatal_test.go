package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestNodeExitsOnFatalError: a node whose engine stops on an error (here
// the broker refuses every decision: the decisions topic takes no record
// of more than 100 bytes) ends runNode with that error, so the process
// exits non-zero and its supervisor restarts it, instead of hanging on to
// its partitions while nothing is processed.
func TestNodeExitsOnFatalError(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	adm := kadm.NewClient(kafkatest.Client(t, addrs))
	resp, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("100")}}, topics.Decisions)
	if err == nil {
		_, err = resp.On(topics.Decisions, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", kafkatest.History(t, 8, gen.Options{Accounts: 1, Events: 300}))

	nc := testNodeConfig(addrs, topics, "fatal", t.TempDir())
	var logs syncBuffer
	done := make(chan error, 1)
	started := make(chan *node, 1)
	go func() { done <- runNode(context.Background(), nc, &logs, nil, func(n *node) { started <- n }) }()
	const deadline = time.Minute
	var n *node
	select {
	case n = <-started:
	case err := <-done:
		t.Fatalf("the node did not start: %v", err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "MESSAGE_TOO_LARGE") {
			t.Fatalf("runNode returned %v, want the broker's refusal", err)
		}
	case <-time.After(deadline):
		t.Fatalf("the node did not stop within %s of a fatal error; its log:\n%s", deadline, logs.String())
	}
	if !strings.Contains(logs.String(), `level=ERROR msg="node stopping on a fatal error`) || !strings.Contains(logs.String(), "MESSAGE_TOO_LARGE") {
		t.Errorf("the log does not say why the node stopped:\n%s", logs.String())
	}
	// A node that stopped is neither healthy nor ready.
	for path, h := range map[string]http.HandlerFunc{"/healthz": n.healthz, "/readyz": n.readyz} {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s of a stopped node: %d, want 503", path, rec.Code)
		}
	}
	// Everything the node started stopped with it: the config follower,
	// the shadow's watcher, the heartbeats (their last word a tombstone).
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"main.follow(", "main.watchShadow(", "main.heartbeat.func", "main.(*shadowRunner).run("} {
		if strings.Contains(stacks, fn) {
			t.Errorf("%s still runs after runNode returned", strings.TrimSuffix(fn, "("))
		}
	}
	recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.Status)
	if err != nil {
		t.Fatal(err)
	}
	var last *kgo.Record
	for _, r := range recs {
		if string(r.Key) == nc.nodeID {
			last = r
		}
	}
	if last == nil || last.Value != nil {
		t.Errorf("the node's last heartbeat is not a tombstone: %v", last)
	}
}
