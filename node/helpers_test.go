package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
)

// The tests of package node drive nodes through the package's API
// (Start, Wait, Ready, Status, Handler) against an in-process kfake (or
// $KAFKA_BROKERS), and see what a node does through an Observer of their
// own (recorder), never through Prometheus. Wall-clock loops run on a
// fakeClock the test advances, or inside a synctest bubble.

// signed returns c signed by testSigner, as a trusted publisher would
// publish it.
func signed(t testing.TB, c versions.Record) versions.Record {
	t.Helper()
	return signedBy(t, kafkatest.TestSigner(), c)
}

func signedBy(t testing.TB, s *versions.Signer, c versions.Record) versions.Record {
	t.Helper()
	sig, err := s.Sign(c.Signed())
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	return c
}

// rulesFile is the shipped rules file, the bootstrap document of the
// test nodes.
const rulesFile = "../examples/rules.yaml"

// document loads the shipped rules file with each old string of
// replacements (old, new, old, new...) replaced once by its new one.
func document(t testing.TB, replacements ...string) *config.Document {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	for i := 0; i+1 < len(replacements); i += 2 {
		if !strings.Contains(src, replacements[i]) {
			t.Fatalf("%s holds no %q", rulesFile, replacements[i])
		}
		src = strings.Replace(src, replacements[i], replacements[i+1], 1)
	}
	doc, err := config.Load(rulesFile, []byte(src), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// ruleSet compiles document(replacements...).
func ruleSet(t testing.TB, replacements ...string) *rules.RuleSet {
	t.Helper()
	rs, err := rules.Compile(document(t, replacements...), 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// versionRecord is the default rule set with its CTR threshold set to ctr,
// as published version v, signed by testSigner: valid, and a document of
// its own for each ctr.
func versionRecord(t testing.TB, v int64, ctr string) versions.Record {
	t.Helper()
	doc := document(t, "ctr_threshold: 0.03", "ctr_threshold: "+ctr)
	return signed(t, versions.Record{Name: "default", Version: v, SHA256: doc.SHA256(), Author: "test", Document: doc.Canonical()})
}

// options are a test node's options: the test's topics and group, its own
// data directory and HTTP port, the shipped rules file as the bootstrap
// document, testKeys, a recorder as its observers, and a fakeClock (all of
// which the test may change before Start).
func options(t testing.TB, addrs []string, topics streams.Topics, id string) node.Options {
	return node.Options{
		Connection: streams.Connection{Brokers: addrs, Topics: topics},
		Group:      kafkatest.Group(topics), NodeID: id, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0",
		Bootstrap: func() (*rules.RuleSet, error) {
			data, err := os.ReadFile(rulesFile)
			if err != nil {
				return nil, err
			}
			doc, err := config.Load(rulesFile, data, config.Options{})
			if err != nil {
				return nil, err
			}
			return rules.Compile(doc, 0)
		},
		BootstrapName: rulesFile, Partitions: 4, CreateTopics: true,
		// Stage 2 judges the last proposals once every source is idle: soon.
		IdleAfter: time.Second,
		Keys:      kafkatest.TestKeys(),
		Observer:  &recorder{}, ShadowObserver: &recorder{},
		Clock: newFakeClock(),
	}
}

// testNode is a node a test started (start): its observers, its clock and
// its log are at hand, and it is stopped (and checked for leaked
// goroutines) when the test ends, unless the test stopped it before.
type testNode struct {
	*node.Node
	o      node.Options
	obs    *recorder // the live pipeline's and the node's observer
	shadow *recorder // the shadow pipeline's
	clock  *fakeClock
	log    *syncBuffer
	cancel context.CancelFunc
	label  string
	once   sync.Once
}

// nodeSeq numbers the nodes the tests start, for their goroutine labels.
var nodeSeq atomic.Int64

// start starts a node with o (node.Start), failing the test when it does
// not start. Every goroutine the node starts carries a pprof label of its
// own, so that stop can tell whether they are gone, however many other
// nodes the (parallel) tests run.
func start(t testing.TB, o node.Options) *testNode {
	t.Helper()
	n, err := startNode(t, o)
	if err != nil {
		t.Fatalf("node %s: %v\n%s", o.NodeID, err, n.log)
	}
	return n
}

// startNode is start that returns Start's error (the testNode then has
// its log only).
func startNode(t testing.TB, o node.Options) (*testNode, error) {
	t.Helper()
	n := &testNode{o: o, log: &syncBuffer{}, label: fmt.Sprintf("%s#%d", o.NodeID, nodeSeq.Add(1))}
	n.obs, _ = o.Observer.(*recorder)
	n.shadow, _ = o.ShadowObserver.(*recorder)
	n.clock, _ = o.Clock.(*fakeClock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	var err error
	pprof.Do(ctx, pprof.Labels(leakLabel, n.label), func(ctx context.Context) {
		n.Node, err = node.Start(ctx, o)
	})
	if err != nil {
		cancel()
		noLeaks(t, n.label)
		return n, err
	}
	t.Cleanup(func() {
		n.stop(t)
		if t.Failed() {
			t.Logf("node %s's log:\n%s", o.NodeID, n.log)
		}
	})
	return n, nil
}

// stop ends the node's context and waits for it: Wait returns nil (the
// current batch was committed), and every goroutine it started is gone.
func (n *testNode) stop(t testing.TB) {
	t.Helper()
	n.once.Do(func() {
		n.cancel()
		if err := n.Wait(); err != nil {
			t.Errorf("node %s: %v", n.o.NodeID, err)
		}
		noLeaks(t, n.label)
	})
}

// stopped waits until the node stopped by itself and returns Wait's
// error, once every goroutine it started is gone.
func (n *testNode) stopped(t testing.TB) error {
	t.Helper()
	err := n.Wait()
	n.once.Do(func() { noLeaks(t, n.label) })
	return err
}

// leakLabel is the pprof label of every goroutine a test node started.
const leakLabel = "adrules_test_node"

// noLeaks waits (up to 10 seconds) until no goroutine carries the label of
// the node label: after Wait returns, everything a node started, down to
// the Kafka clients' and Pebble's goroutines, has ended (Wait joins its
// own; a client or a database it closed ends theirs as it returns). It
// fails the test with the stacks of those left.
func noLeaks(t testing.TB, label string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		left := labelled(label)
		if left == "" {
			return
		}
		select {
		case <-deadline:
			t.Errorf("goroutines of node %s still run after it stopped:\n%s", label, left)
			return
		case <-tick.C:
		}
	}
}

// labelled returns the stacks of the goroutines that carry the label
// value, "" when none does.
func labelled(value string) string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	want := fmt.Sprintf("%q:%q", leakLabel, value)
	var out []string
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "# labels: ") && strings.Contains(g, want) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// eventually waits for cond, failing the test after a minute.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
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

// count is how many times s occurs in the log.
func (s *syncBuffer) count(sub string) int { return strings.Count(s.String(), sub) }

// get returns the status and body of a request to the node's handler.
func get(h http.Handler, path string) (int, string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	return w.Code, w.Body.String()
}

// httpGet returns the status and body of an HTTP GET.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// recorder is an Observer that keeps what it is told, for the tests to
// read: what a metrics adapter would count.
type recorder struct {
	node.NopObserver
	mu         sync.Mutex
	records    map[int]int    // by stage
	rejected   map[int]int    // by stage
	decisions  map[string]int // by rule
	refused    []string
	ruleSets   []int64 // the versions told, 0 for none
	judged     []*node.Judgement
	promoted   [][2]int64
	heartbeats int
	rebuilt    map[string]int // partitions whose state rebuild ended, by topic
}

var _ node.Observer = (*recorder)(nil)

func (r *recorder) Observe(s engine.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.records == nil {
		r.records, r.rejected, r.decisions = map[int]int{}, map[int]int{}, map[string]int{}
	}
	r.records[s.Stage] += s.Records
	r.rejected[s.Stage] += s.Rejected
	for rule, n := range s.Decisions {
		r.decisions[rule] += n
	}
}

func (r *recorder) Rebuilding(topic string, _ int32, done bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if done {
		if r.rebuilt == nil {
			r.rebuilt = map[string]int{}
		}
		r.rebuilt[topic]++
	}
}

func (r *recorder) RuleSet(rs *rules.RuleSet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var v int64
	if rs != nil {
		v = rs.Version
	}
	r.ruleSets = append(r.ruleSets, v)
}

func (r *recorder) ConfigRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, reason)
}

func (r *recorder) ShadowJudged(j *node.Judgement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.judged = append(r.judged, j)
}

func (r *recorder) Promoted(shadow, live int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.promoted = append(r.promoted, [2]int64{shadow, live})
}

func (r *recorder) Heartbeat(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.heartbeats++
	}
}

// stage returns the records and dead letters of stage so far.
func (r *recorder) stage(stage int) (records, rejected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records[stage], r.rejected[stage]
}

// decided returns the decisions of rule so far.
func (r *recorder) decided(rule string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.decisions[rule]
}

// decidedAll returns the decisions of every rule so far.
func (r *recorder) decidedAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.decisions {
		n += k
	}
	return n
}

// rebuilds returns how many rebuilds of a partition of topic's state
// ended.
func (r *recorder) rebuilds(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rebuilt[topic]
}

// refusals is how many records or versions the node refused.
func (r *recorder) refusals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.refused)
}

// version is the version of the last rule set the observer was told of.
func (r *recorder) version() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ruleSets) == 0 {
		return -1
	}
	return r.ruleSets[len(r.ruleSets)-1]
}

// judgements returns the judgements so far.
func (r *recorder) judgements() []*node.Judgement {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*node.Judgement(nil), r.judged...)
}

// fakeClock is a node.Clock whose time moves only when the test says
// (Advance): its tickers tick then, never by themselves.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers map[*fakeTicker]bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), tickers: map[*fakeTicker]bool{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) node.Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{c: c, d: d, next: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.tickers[t] = true
	return t
}

// Advance moves the clock d on: every ticker whose period passed ticks
// (once at most, dropping a tick its reader has not taken, as a
// time.Ticker does).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.tickers {
		if c.now.Before(t.next) {
			continue
		}
		for !c.now.Before(t.next) {
			t.next = t.next.Add(t.d)
		}
		select {
		case t.ch <- c.now:
		default:
		}
	}
}

// tickers is how many tickers of period d run.
func (c *fakeClock) running(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for t := range c.tickers {
		if t.d == d {
			n++
		}
	}
	return n
}

type fakeTicker struct {
	c    *fakeClock
	d    time.Duration
	next time.Time
	ch   chan time.Time
}

func (t *fakeTicker) C() <-chan time.Time { return t.ch }

func (t *fakeTicker) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	delete(t.c.tickers, t)
}

// promotions returns the promotions told so far: shadow, live version.
func (r *recorder) promotions() [][2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]int64(nil), r.promoted...)
}
