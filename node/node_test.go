package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestNodeReady: /readyz is 503 until the node owns its partitions, then
// 200; the node ignores rule parameters in its environment (its decisions
// are the file backtest's), records its switch points, and tells its
// observer of every event and dead letter of stage 1; Status counts them.
func TestNodeReady(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	lines := kafkatest.History(t, 8, gen.Options{Accounts: 1, BadPct: 2})
	want, sum := kafkatest.Backtest(t, kafkatest.DefaultRules(t, ".."), lines)

	o := options(t, addrs, topics, "h")
	o.Env = map[string]string{"WINNER_CTR_THRESHOLD": "0.5"}
	notReady, healthy := 0, 0
	o.Started = func(n *node.Node) {
		// The HTTP server listens; the node owns nothing yet.
		notReady, _ = httpGet(t, "http://"+n.Addr()+"/readyz")
		healthy, _ = httpGet(t, "http://"+n.Addr()+"/healthz")
	}
	n := start(t, o)
	if notReady != http.StatusServiceUnavailable || healthy != http.StatusOK {
		t.Fatalf("before the node owns partitions: /readyz %d, /healthz %d; want 503, 200", notReady, healthy)
	}
	if labelled(n.label) == "" {
		t.Fatal("the goroutine-leak check sees no goroutine of a running node: it would prove nothing")
	}
	if !strings.Contains(n.log.String(), "WINNER_CTR_THRESHOLD") {
		t.Errorf("the node does not warn that it ignores WINNER_CTR_THRESHOLD:\n%s", n.log)
	}
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines)
	// The node ignored WINNER_CTR_THRESHOLD: its decisions are the file's.
	got, applied := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want), time.Minute)
	if !slices.Equal(kafkatest.Normalize(t, got), kafkatest.Normalize(t, want)) {
		t.Fatal("decisions differ from the backtest's")
	}
	if len(applied) == 0 {
		t.Fatal("no config_applied record: the switch points are not recorded")
	}
	kafkatest.CaughtUp(t, addrs, o.Group, topics, time.Minute)
	// The observer is told after the commits: wait for it.
	eventually(t, "every event observed", func() bool {
		in, rejected := n.obs.stage(1)
		return in == len(lines) && rejected == int(sum.Rejected) && n.Ready()
	})
	if code, _ := httpGet(t, "http://"+n.Addr()+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz of a ready node: %d", code)
	}
	if st := n.Status(); st.Events != int64(len(lines)) || !st.Ready || st.RuleSet.Version != 1 || st.Shadow != 0 {
		t.Fatalf("status: %+v; want %d events, ready, v1, no shadow", st, len(lines))
	}
	if v := n.obs.version(); v != 1 {
		t.Fatalf("the observer was told of v%d, want v1", v)
	}
}

// TestHeartbeats: a node says which version it runs on the status topic
// at start and then every HeartbeatEvery (on its clock); after a swap the
// next heartbeat names the new version; its last word is a tombstone.
func TestHeartbeats(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	o := options(t, addrs, topics, "beat")
	o.HeartbeatEvery = time.Hour
	n := start(t, o)
	beats := func() []streams.Heartbeat {
		recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.Status)
		if err != nil {
			t.Fatal(err)
		}
		var out []streams.Heartbeat
		for _, r := range recs {
			var h streams.Heartbeat
			if string(r.Key) == o.NodeID && r.Value != nil && json.Unmarshal(r.Value, &h) == nil {
				out = append(out, h)
			}
		}
		return out
	}
	eventually(t, "the first heartbeat", func() bool { return len(beats()) == 1 })
	h := beats()[0]
	if h.Version != 1 || h.Group != o.Group || h.HTTP != n.Addr() || h.At != n.clock.Now().Format(time.RFC3339) {
		t.Fatalf("first heartbeat %+v", h)
	}
	pub, err := streams.PublishDocument(context.Background(), clusterOf(t, addrs, topics), kafkatest.TestKeys(),
		document(t, "ctr_threshold: 0.03", "ctr_threshold: 0.045"), "test", false)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node on v2", func() bool { return n.RuleSet().Version == pub.Version })
	if len(beats()) != 1 {
		t.Fatal("a heartbeat before the clock said so")
	}
	n.clock.Advance(o.HeartbeatEvery)
	eventually(t, "the second heartbeat", func() bool { return len(beats()) == 2 })
	if h := beats()[1]; h.Version != 2 || h.At != n.clock.Now().Format(time.RFC3339) {
		t.Fatalf("the heartbeat after the swap: %+v, want v2 at the clock's time", h)
	}
	n.stop(t)
	recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.Status)
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; string(last.Key) != o.NodeID || last.Value != nil {
		t.Fatalf("the node's last word is not a tombstone: %q %q", last.Key, last.Value)
	}
}

// clusterOf is a Cluster of the test's, closed when it ends.
func clusterOf(t testing.TB, addrs []string, topics streams.Topics, opts ...kgo.Opt) *streams.Cluster {
	t.Helper()
	cl, err := streams.Open(streams.Connection{Brokers: addrs, Topics: topics, ClientOpts: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestNodeExitsOnFatalError: a node whose engine stops on an error (here
// the broker refuses every decision: the decisions topic takes no record
// of more than 100 bytes) ends with that error from Wait, so the process
// exits non-zero and its supervisor restarts it, instead of hanging on to
// its partitions while nothing is processed. Everything it started
// stopped with it (the goroutine-leak check), the heartbeats' last word a
// tombstone.
func TestNodeExitsOnFatalError(t *testing.T) {
	t.Parallel()
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

	o := options(t, addrs, topics, "fatal")
	n := start(t, o)
	const deadline = time.Minute
	select {
	case <-n.Done():
	case <-time.After(deadline):
		t.Fatalf("the node did not stop within %s of a fatal error; its log:\n%s", deadline, n.log)
	}
	if err := n.stopped(t); err == nil || !strings.Contains(err.Error(), "MESSAGE_TOO_LARGE") {
		t.Fatalf("Wait returned %v, want the broker's refusal", err)
	}
	logs := n.log.String()
	if !strings.Contains(logs, `level=ERROR msg="node stopping on a fatal error`) || !strings.Contains(logs, "MESSAGE_TOO_LARGE") {
		t.Errorf("the log does not say why the node stopped:\n%s", logs)
	}
	// A node that stopped is neither healthy nor ready.
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(n.Handler(), path); code != http.StatusServiceUnavailable {
			t.Errorf("%s of a stopped node: %d, want 503", path, code)
		}
	}
	if n.Ready() || n.Status().Ready {
		t.Error("a stopped node says it is ready")
	}
	recs, err := streams.ReadAll(context.Background(), addrs, nil, topics.Status)
	if err != nil {
		t.Fatal(err)
	}
	var last *kgo.Record
	for _, r := range recs {
		if string(r.Key) == o.NodeID {
			last = r
		}
	}
	if last == nil || last.Value != nil {
		t.Errorf("the node's last heartbeat is not a tombstone: %v", last)
	}
}

// TestNodeSurvivesBrokerRestarts: a node (engine, config follower,
// heartbeats, shadow watcher) goes on by itself while its broker (with its
// data) goes down and comes back three times mid-stream, each time
// answering the node's first heartbeat as a broker that lost the group's
// members does; the node never stops, and its decisions and verdicts are
// the file backtest's.
func TestNodeSurvivesBrokerRestarts(t *testing.T) {
	if kafkatest.Shared() {
		t.Skip("restarts the in-process broker; a real cluster is restarted by its operators")
	}
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := startBroker()
	t.Cleanup(func() { broker.Close() })
	addrs, topics := broker.ListenAddrs(), streams.DefaultTopics()
	kafkatest.Setup(t, addrs, topics)
	lines := kafkatest.History(t, 14, gen.Options{Accounts: 2, DupPct: 1, BadPct: 1, Events: 6000})
	var b bytes.Buffer
	if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: 14, Accounts: 2, Count: 200}); err != nil {
		t.Fatal(err)
	}
	actions := bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
	want := kafkatest.BacktestAll(t, kafkatest.DefaultRules(t, ".."), lines, actions)
	cl := kafkatest.Client(t, addrs, kgo.ProducerBatchMaxBytes(2<<10))
	kafkatest.Produce(t, cl, topics.Actions, "account_id", actions)
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines)

	o := options(t, addrs, topics, "survivor")
	// Small fetches: many small batches, so a restart lands mid-stream.
	o.Connection.ClientOpts = []kgo.Opt{kgo.FetchMaxPartitionBytes(4 << 10)}
	n := start(t, o)
	alive := func() {
		t.Helper()
		select {
		case <-n.Done():
			t.Fatalf("the node stopped: %v", n.stopped(t))
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
		offs, err := adm.FetchOffsets(ctx, o.Group)
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
	for i, answer := range answers {
		at := float64(i+1) / float64(len(answers)+1)
		eventually(t, "the group past the next restart point", func() bool { alive(); return progress() >= at })
		t.Logf("restart %d at %.0f%% of the events; the first heartbeat after it gets %s", i+1, 100*at, answer.Message)
		broker.Close()
		broker = startBroker()
		h := broker.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: o.Group, Err: answer})
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		err := h.Wait(wctx, 1)
		wcancel()
		if err != nil {
			t.Fatalf("restart %d: no heartbeat came: %v", i+1, err)
		}
		alive()
	}
	kafkatest.CaughtUp(t, addrs, o.Group, topics, 2*time.Minute)
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
