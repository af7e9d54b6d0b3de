package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
	started := make(chan *nodeRun, 1)
	go func() { done <- runNode(context.Background(), nc, &logs, nil, func(n *nodeRun) { started <- n }) }()
	const deadline = time.Minute
	var n *nodeRun
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
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		n.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s of a stopped node: %d, want 503", path, rec.Code)
		}
	}
	// Everything the node started stopped with it: the config follower,
	// the shadow's watcher, the heartbeats (their last word a tombstone).
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"node.(*Node).follow(", "node.(*Node).watchShadow(", "node.(*Node).heartbeat.func", "node.(*shadowRunner).run("} {
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

// TestNodeSurvivesBrokerRestarts: `adrules run`'s node (engine, config
// follower, heartbeats, shadow watcher) goes on by itself while its broker
// (with its data) goes down and comes back three times mid-stream, each
// time answering the node's first heartbeat as a broker that lost the
// group's members does; the node never stops, and its decisions and
// verdicts are the file backtest's.
func TestNodeSurvivesBrokerRestarts(t *testing.T) {
	if kafkatest.Shared() {
		t.Skip("restarts the in-process broker; a real cluster is restarted by its operators")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := start()
	defer func() { broker.Close() }()
	addrs, topics := broker.ListenAddrs(), streams.DefaultTopics()
	kafkatest.Setup(t, addrs, topics)
	lines := kafkatest.History(t, 14, gen.Options{Accounts: 2, DupPct: 1, BadPct: 1, Events: 6000})
	var b bytes.Buffer
	if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: 14, Accounts: 2, Count: 200}); err != nil {
		t.Fatal(err)
	}
	actions := bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
	want := kafkatest.BacktestAll(t, kafkatest.DefaultRules(t, "../.."), lines, actions)
	cl := kafkatest.Client(t, addrs, kgo.ProducerBatchMaxBytes(2<<10))
	kafkatest.Produce(t, cl, topics.Actions, "account_id", actions)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines)

	nc := testNodeConfig(addrs, topics, "survivor", t.TempDir())
	// Small fetches: many small batches, so a restart lands mid-stream.
	nc.clientOpts = []kgo.Opt{kgo.FetchMaxPartitionBytes(4 << 10)}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runNode(ctx, nc, &logs, nil, nil) }()
	running := true
	defer func() {
		cancel()
		if running {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.Logf("the node's log:\n%s", logs.String())
		}
	}()
	alive := func() {
		t.Helper()
		select {
		case err := <-done:
			running = false
			t.Fatalf("the node stopped: %v", err)
		default:
		}
	}
	adm := kadm.NewClient(kafkatest.Client(t, addrs))
	progress := func() float64 { // the share of the metric events the group committed
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topics.Metrics)
		if err != nil {
			return -1
		}
		offs, err := adm.FetchOffsets(ctx, nc.group)
		if err != nil {
			return -1
		}
		var done, all int64
		ends.Each(func(o kadm.ListedOffset) {
			all += o.Offset
			if c, ok := offs.Lookup(o.Topic, o.Partition); ok && c.At > 0 {
				done += min(c.At, o.Offset)
			}
		})
		return float64(done) / float64(max(all, 1))
	}
	answers := []*kerr.Error{kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.UnknownMemberID}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	for i, answer := range answers {
		at := float64(i+1) / float64(len(answers)+1)
		for p := progress(); p < at; p = progress() {
			alive()
			select {
			case <-deadline:
				t.Fatalf("restart %d: the group committed %.0f%% of the events, waiting for %.0f%%", i+1, 100*p, 100*at)
			case <-tick.C:
			}
		}
		t.Logf("restart %d at %.0f%% of the events; the first heartbeat after it gets %s", i+1, 100*at, answer.Message)
		broker.Close()
		broker = start()
		h := broker.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: nc.group, Err: answer})
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		err := h.Wait(wctx, 1)
		wcancel()
		if err != nil {
			t.Fatalf("restart %d: no heartbeat came: %v", i+1, err)
		}
		alive()
	}
	kafkatest.CaughtUp(t, addrs, nc.group, topics, 2*time.Minute)
	got, _ := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want.Decisions), time.Minute)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, got, "decision_id")); len(dup) > 0 {
		t.Fatalf("decisions written twice: %v", dup)
	}
	if !slices.Equal(kafkatest.Normalize(t, got), kafkatest.Normalize(t, want.Decisions)) {
		t.Fatalf("%d decisions differ from the backtest's %d", len(got), len(want.Decisions))
	}
	verdicts := kafkatest.Verdicts(t, kafkatest.Consume(t, addrs, topics.Verdicts, len(want.Verdicts), 2*time.Minute))
	if d := kafkatest.DiffVerdicts(verdicts, kafkatest.Verdicts(t, want.Verdicts), 10); d != "" {
		t.Fatal(d)
	}
	alive()
}
