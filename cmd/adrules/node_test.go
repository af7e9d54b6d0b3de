package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
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

// syncBuffer is a log sink several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun: `adrules run` end to end, in-process (package node tests what
// a node does): it turns its flags into a node that bootstraps the rules
// file, serves /healthz and /readyz, processes what is produced and counts
// it on /metrics, the live and shadow pipelines told apart by a label and
// the node's own families beside them; cancelled, it exits 0.
func TestRun(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	lines := kafkatest.History(t, 8, gen.Options{Accounts: 1, BadPct: 2})
	want, sum := kafkatest.Backtest(t, kafkatest.DefaultRules(t, "../.."), lines)
	key, trust := testKeyFiles(t)
	args := append([]string{"run", "--group", kafkatest.Group(topics), "--node-id", "smoke", "--data-dir", t.TempDir(),
		"--signing-key", key, "--trust", trust, "--http-addr", "127.0.0.1:0", "--rules", "../../examples/rules.yaml",
		"--idle-after", "1s"}, topicFlags(addrs, topics)...)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), io.Discard, &logs, nil) }()
	defer func() {
		cancel()
		if err := <-done; exitCode(err) != 0 {
			t.Errorf("adrules run exited %d: %v", exitCode(err), err)
		}
		if t.Failed() {
			t.Logf("its log:\n%s", logs.String())
		}
	}()
	addr := regexp.MustCompile(`msg="node starting" .* http=(\S+)`)
	eventually(t, "the node's HTTP server", func() bool {
		select {
		case err := <-done:
			t.Fatalf("adrules run: %v\n%s", err, logs.String())
		default:
		}
		return addr.MatchString(logs.String())
	})
	base := "http://" + addr.FindStringSubmatch(logs.String())[1]
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	kafkatest.Produce(t, kafkatest.Client(t, addrs), topics.Metrics, "ad_id", lines)
	got, _ := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want), time.Minute)
	if !slices.Equal(kafkatest.Normalize(t, got), kafkatest.Normalize(t, want)) {
		t.Fatal("decisions differ from the backtest's")
	}
	// The counters trail the commits: poll them.
	var fams map[string]bool
	var series map[string]float64
	eventually(t, "/metrics counting every event", func() bool {
		fams, series = scrape(t, base+"/metrics")
		ready, _ := get(t, base+"/readyz")
		return ready == http.StatusOK && series[`adrules_records_in_total{pipeline="live",stage="1"}`] == float64(len(lines)) &&
			series[`adrules_records_rejected_total{pipeline="live",stage="1"}`] == float64(sum.Rejected)
	})
	for _, name := range []string{"adrules_decisions_total", "adrules_batch_seconds", "adrules_eval_seconds", "adrules_commit_seconds",
		"adrules_consumer_lag", "adrules_config_version", "adrules_state_bytes", "adrules_config_refused_total",
		"adrules_partitions_rebuilding", "go_goroutines", "process_cpu_seconds_total"} {
		if !fams[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if live, ok := series[`adrules_config_version{pipeline="live"}`]; !ok || live != 1 {
		t.Errorf("adrules_config_version of the live pipeline: %v, want 1", live)
	}
	if shadow, ok := series[`adrules_config_version{pipeline="shadow"}`]; !ok || shadow != 0 {
		t.Errorf("adrules_config_version of the shadow pipeline: %v (present %v), want 0", shadow, ok)
	}
}

// scrape parses the Prometheus text at url: the families it holds, and
// the value of each counter and gauge series, as name{label="value",...}
// with the labels in order.
func scrape(t *testing.T, url string) (map[string]bool, map[string]float64) {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("%s: %d", url, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s does not parse: %v", url, err)
	}
	fams, series := map[string]bool{}, map[string]float64{}
	for name, mf := range parsed {
		fams[name] = true
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				series[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				series[key] = m.GetGauge().GetValue()
			}
		}
	}
	return fams, series
}

// TestKillNode: a node process killed with SIGKILL three times mid-stream,
// at different points, and restarted each time writes each decision and
// verdict exactly once, and all of them, and each dead letter once: the
// read_committed output equals one file backtest's.
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
	group := kafkatest.Group(topics)
	lines := kafkatest.History(t, 12, gen.Options{Accounts: 3, DupPct: 1, BadPct: 1, Events: 40000})
	var b bytes.Buffer
	if _, err := gen.Proposals(&b, gen.ProposalOptions{Seed: 12, Accounts: 3, Count: 400}); err != nil {
		t.Fatal(err)
	}
	actions := bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
	actions = append(actions, []byte(`{"action_id":"broken","ts":"2026-11-02T00:00:00Z","account_id":"act_1001"}`))
	want := kafkatest.BacktestAll(t, kafkatest.DefaultRules(t, "../.."), lines, actions)
	if len(want.Verdicts) == 0 || len(want.DLQ) == 0 {
		t.Fatalf("%d verdicts and %d dead letters: the test would prove little", len(want.Verdicts), len(want.DLQ))
	}
	cl := kafkatest.Client(t, addrs)
	kafkatest.Produce(t, cl, topics.Actions, "account_id", actions)
	// A good event keyed by something else than its ad: a dead letter too.
	kafkatest.Produce(t, cl, topics.Metrics, "account_id", lines[len(lines)-1:])

	data := t.TempDir()
	key, trust := testKeyFiles(t)
	start := func() (*exec.Cmd, *bytes.Buffer) {
		args := append([]string{"run", "--group", group, "--node-id", "k", "--data-dir", data, "--signing-key", key, "--trust", trust,
			"--http-addr", "127.0.0.1:0", "--rules", "../../examples/rules.yaml", "--idle-after", "1s"}, topicFlags(addrs, topics)...)
		cmd := exec.Command(bin, args...)
		var logs bytes.Buffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &logs
	}
	adm := kadm.NewClient(cl)
	committed := func() int64 {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return 0 // the group is not there yet
		}
		var done int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topics.Metrics && o.At > 0 {
				done += o.At
			}
		})
		return done
	}
	// Three times: feed a quarter of the events in chunks, at most 1,500
	// ahead of what the node has committed, and kill it once it has
	// committed half of them: each time mid-stream, at another point.
	total := int64(len(lines) + 1)
	quarter := len(lines) / 4
	for k := range 3 {
		before := committed()
		cmd, _ := start()
		part := lines[k*quarter : (k+1)*quarter]
		stop, fed := make(chan struct{}), make(chan int, 1)
		go func() {
			n := 0
			defer func() { fed <- n }()
			for n < len(part) {
				select {
				case <-stop:
					return
				default:
				}
				if int64(n) > committed()-before+1000 {
					continue // the node is behind: wait for it
				}
				kafkatest.Produce(t, cl, topics.Metrics, "ad_id", part[n:min(n+500, len(part))])
				n = min(n+500, len(part))
			}
		}()
		eventually(t, "half of the quarter committed", func() bool { return committed()-before >= int64(len(part)/2) })
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		close(stop)
		n := <-fed
		done := committed()
		t.Logf("kill %d with %d of %d events committed, %d of this quarter fed", k+1, done, total, n)
		if done-before >= int64(len(part)) {
			t.Logf("kill %d: the node had processed all it was fed", k+1)
		}
		kafkatest.Produce(t, cl, topics.Metrics, "ad_id", part[n:])
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[3*quarter:])

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
	kafkatest.CaughtUp(t, addrs, group, topics, 2*time.Minute)
	got, _ := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want.Decisions), time.Minute)
	if dup := kafkatest.Duplicates(kafkatest.IDs(t, got, "decision_id")); len(dup) > 0 {
		t.Fatalf("decisions written twice after kill -9: %v", dup)
	}
	if !slices.Equal(kafkatest.Normalize(t, got), kafkatest.Normalize(t, want.Decisions)) {
		t.Fatalf("after kill -9 and restart: %d decisions differ from the backtest's %d", len(got), len(want.Decisions))
	}
	verdicts := kafkatest.Verdicts(t, kafkatest.Consume(t, addrs, topics.Verdicts, len(want.Verdicts), 2*time.Minute))
	if d := kafkatest.DiffVerdicts(verdicts, kafkatest.Verdicts(t, want.Verdicts), 10); d != "" {
		t.Fatalf("after kill -9 and restart: %s", d)
	}
	dlq := kafkatest.ConsumeRecords(t, addrs, topics.DLQ, len(want.DLQ)+1, time.Minute)
	seen := map[string]bool{}
	for _, d := range dlq {
		var reason, where string
		for _, h := range d.Headers {
			switch h.Key {
			case "adrules.reason":
				reason = string(h.Value)
			case "adrules.offset":
				where += "@" + string(h.Value)
			case "adrules.topic", "adrules.partition":
				where += "/" + string(h.Value)
			}
		}
		if reason == "" || seen[where] {
			t.Fatalf("dead letter %s without a reason or written twice: %q", where, d.Value)
		}
		seen[where] = true
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
