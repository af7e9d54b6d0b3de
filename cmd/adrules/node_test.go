package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// get returns the status and body of an HTTP GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNodeHTTP: /readyz is 503 until the node owns its partitions, then 200;
// /metrics parses as Prometheus text and counts what the node did.
func TestNodeHTTP(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	lines := kafkatest.History(t, 8, gen.Options{Accounts: 1, BadPct: 2})
	want, sum := kafkatest.Backtest(t, kafkatest.DefaultRules(t, "../.."), lines)

	nc := testNodeConfig(addrs, topics, "h", t.TempDir())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *node, 1)
	var notReady int
	go func() {
		done <- runNode(ctx, nc, io.Discard, map[string]string{"WINNER_CTR_THRESHOLD": "0.5"}, func(n *node) {
			// Before the engine runs, the node owns nothing yet.
			notReady, _ = get(t, "http://"+n.addr+"/readyz")
			started <- n
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	n := <-started
	if notReady != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the node owns partitions: %d, want 503", notReady)
	}
	if code, _ := get(t, "http://"+n.addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
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
	kafkatest.CaughtUp(t, addrs, nc.group, topics, time.Minute)
	deadline := time.After(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond) // the counters trail the commits: poll them
	defer tick.Stop()
	for {
		code, body := get(t, "http://"+n.addr+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		in, rejected := 0.0, 0.0
		for _, m := range fams["adrules_records_in_total"].GetMetric() {
			if m.GetLabel()[0].GetValue() == "1" {
				in = m.GetCounter().GetValue()
			}
		}
		for _, m := range fams["adrules_records_rejected_total"].GetMetric() {
			if m.GetLabel()[0].GetValue() == "1" {
				rejected = m.GetCounter().GetValue()
			}
		}
		ready, _ := get(t, "http://"+n.addr+"/readyz")
		if int(in) == len(lines) && int(rejected) == int(sum.Rejected) && ready == http.StatusOK {
			for _, name := range []string{"adrules_decisions_total", "adrules_batch_seconds", "adrules_eval_seconds", "adrules_commit_seconds",
				"adrules_consumer_lag", "adrules_config_version", "adrules_state_bytes", "adrules_rule_errors_total"} {
				if name != "adrules_rule_errors_total" && fams[name] == nil {
					t.Errorf("/metrics lacks %s", name)
				}
			}
			return
		}
		select {
		case <-deadline:
			t.Fatalf("metrics: %v events in, %v rejected, readyz %d; want %d, %d, 200", in, rejected, ready, len(lines), sum.Rejected)
		case <-tick.C:
		}
	}
}

// TestKillNode: a node process killed with SIGKILL mid-stream and restarted
// writes each decision exactly once, and all of them.
func TestKillNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "adrules")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	lines := kafkatest.History(t, 12, gen.Options{Accounts: 3, DupPct: 1, BadPct: 1, Events: 40000})
	want, _ := kafkatest.Backtest(t, kafkatest.DefaultRules(t, "../.."), lines)
	data := t.TempDir()
	start := func() (*exec.Cmd, *bytes.Buffer) {
		args := append([]string{"run", "--group", kafkatest.Group(topics), "--node-id", "k", "--data-dir", data,
			"--http-addr", "127.0.0.1:0", "--rules", "../../examples/rules.yaml"}, topicFlags(addrs, topics)...)
		cmd := exec.Command(bin, args...)
		var logs bytes.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}
	cmd, _ := start()
	// Produce in chunks while the node runs, and kill it as soon as some
	// output is committed: mid-stream.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		cl := kafkatest.Client(t, addrs)
		for i := 0; i < len(lines); i += 1000 {
			kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[i:min(i+1000, len(lines))])
		}
	}()
	kafkatest.WaitFor(t, addrs, topics.Decisions, 1, time.Minute)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	done, _ := kafkatest.Committed(t, addrs, kafkatest.Group(topics), topics.Metrics)
	<-produced
	if done >= int64(len(lines)) {
		t.Fatalf("the node had processed all %d events when it was killed: the test would prove nothing", len(lines))
	}
	t.Logf("killed with %d of %d events committed", done, len(lines))

	cmd, logs := start()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			sc := bufio.NewScanner(logs)
			for sc.Scan() {
				t.Log(sc.Text())
			}
		}
	}()
	kafkatest.CaughtUp(t, addrs, kafkatest.Group(topics), topics, 2*time.Minute)
	got, _ := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want), time.Minute)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, got, "decision_id")); len(dup) > 0 {
		t.Fatalf("decisions written twice after kill -9: %v", dup)
	}
	if !slices.Equal(kafkatest.Normalize(t, got), kafkatest.Normalize(t, want)) {
		t.Fatalf("after kill -9 and restart: %d decisions differ from the backtest's %d", len(got), len(want))
	}
}

// TestProduceTail: produce keys each line by ad_id (account_id on the
// actions topic); tail prints what a topic holds.
func TestProduceTail(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	actions := filepath.Join(dir, "actions.jsonl")
	if _, _, err := adrules(t, "", nil, "gen", "--events", "300", "--out", events, "--actions", actions, "--proposals", "20"); err != nil {
		t.Fatal(err)
	}
	// The topic flags tell produce which topic is the actions topic.
	produce := append([]string{"produce"}, topicFlags(addrs, topics)...)
	if _, stderr, err := adrules(t, "", nil, append(produce, "--topic", topics.Metrics, events)...); err != nil || !strings.Contains(stderr, "produced 300 records") {
		t.Fatalf("produce: %v %s", err, stderr)
	}
	if _, _, err := adrules(t, "", nil, append(produce, "--topic", topics.Actions, actions)...); err != nil {
		t.Fatal(err)
	}
	for _, r := range kafkatest.ConsumeRecords(t, addrs, topics.Metrics, 300, time.Minute) {
		if want := kafkatest.IDs(t, [][]byte{r.Value}, "ad_id")[0]; string(r.Key) != want {
			t.Fatalf("metric event keyed %q, want its ad_id %q", r.Key, want)
		}
	}
	for _, r := range kafkatest.ConsumeRecords(t, addrs, topics.Actions, 20, time.Minute) {
		if want := kafkatest.IDs(t, [][]byte{r.Value}, "account_id")[0]; string(r.Key) != want {
			t.Fatalf("proposal keyed %q, want its account_id %q", r.Key, want)
		}
	}
	out, _, err := adrules(t, "", nil, "tail", "--brokers", strings.Join(addrs, ","), "--topic", topics.Actions, "--from-beginning", "-n", "20")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(actions)
	got := strings.Split(strings.TrimSpace(out), "\n")
	want := strings.Split(strings.TrimSpace(string(data)), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tail printed %d lines that are not the %d produced", len(got), len(want))
	}
}
