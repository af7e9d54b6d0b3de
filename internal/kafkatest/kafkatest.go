package kafkatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"
)

// Brokers returns the cluster to test against: $KAFKA_BROKERS when set (a
// cluster other tests share; every topic name gets a prefix of the test's
// own), else an in-process kfake that the test closes (the default names).
// Name and Group give the test's other names the same prefix.
func Brokers(t testing.TB) ([]string, streams.Topics) {
	t.Helper()
	topics := streams.DefaultTopics()
	if Shared() {
		prefix := fmt.Sprintf("%s-%d-", topicSafe.ReplaceAllString(t.Name(), "_"), time.Now().UnixNano())
		// Every field, so that a topic added to Topics gets the prefix too.
		v := reflect.ValueOf(&topics).Elem()
		for i := range v.NumField() {
			if f := v.Field(i); f.Kind() == reflect.String && f.String() != "" {
				f.SetString(prefix + f.String())
			}
		}
		return strings.Split(os.Getenv("KAFKA_BROKERS"), ","), topics
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs(), topics
}

// topicSafe matches what a topic name may not hold.
var topicSafe = regexp.MustCompile(`[^a-zA-Z0-9._-]`)

// Shared reports whether the tests run against $KAFKA_BROKERS, a cluster
// other tests share, rather than a kfake of their own: tests that need
// their own broker (to restart it, to inject faults) skip then.
func Shared() bool { return os.Getenv("KAFKA_BROKERS") != "" }

// Name returns name with the prefix of the test whose topics these are
// (none on a kfake of the test's own): for the topics, consumer groups and
// transactional ids a test makes up beside the topics of Brokers.
func Name(topics streams.Topics, name string) string {
	return strings.TrimSuffix(topics.Metrics, streams.DefaultTopics().Metrics) + name
}

// Group returns the test's consumer group: streams' default "adrules" with
// the test's prefix. A node's transactional id is GROUP-NODEID and its
// shadows' groups GROUP.shadow.vN, so they get the prefix too.
func Group(topics streams.Topics) string { return Name(topics, "adrules") }

// Setup creates the topics with 4 partitions.
func Setup(t testing.TB, addrs []string, topics streams.Topics) {
	t.Helper()
	if err := streams.EnsureTopics(context.Background(), Client(t, addrs), topics.Specs(4, 7), -1); err != nil {
		t.Fatal(err)
	}
}

// Client returns a client the test closes.
func Client(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// DefaultRules compiles examples/rules.yaml; root is the path to the
// repository's root from the test's directory.
func DefaultRules(t testing.TB, root string) *rules.RuleSet {
	t.Helper()
	data, err := os.ReadFile(root + "/examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("examples/rules.yaml", data, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Produce writes lines to topic keyed by their JSON field, synchronously.
func Produce(t testing.TB, cl *kgo.Client, topic, field string, lines [][]byte) {
	t.Helper()
	produce(t, cl, topic, field, lines, false)
}

// ProduceAtEventTime is Produce with each record's timestamp taken from
// its line's ts, as `adrules produce --timestamp event` does, so that
// ranges by time find the records.
func ProduceAtEventTime(t testing.TB, cl *kgo.Client, topic, field string, lines [][]byte) {
	t.Helper()
	produce(t, cl, topic, field, lines, true)
}

func produce(t testing.TB, cl *kgo.Client, topic, field string, lines [][]byte, eventTime bool) {
	t.Helper()
	var p fastjson.Parser
	var recs []*kgo.Record
	for _, l := range lines {
		var key []byte
		if v, err := p.ParseBytes(l); err == nil {
			key = append(key, v.GetStringBytes(field)...)
		}
		r := &kgo.Record{Topic: topic, Key: key, Value: append([]byte(nil), l...)}
		if ts, ok := streams.RecordTime(l); ok && eventTime {
			r.Timestamp = ts
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Consume reads topic from its start as a read_committed consumer until want
// records arrived, and fails the test after timeout. It then polls once more
// for a moment and fails if more arrive: a duplicate written late must not
// go unseen.
func Consume(t testing.TB, addrs []string, topic string, want int, timeout time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	for _, r := range ConsumeRecords(t, addrs, topic, want, timeout) {
		out = append(out, r.Value)
	}
	return out
}

// WaitFor waits until topic holds at least n committed records.
func WaitFor(t testing.TB, addrs []string, topic string, n int, timeout time.Duration) {
	t.Helper()
	cl := Client(t, addrs, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records after %s, want at least %d", topic, got, timeout, n)
		}
		got += fs.NumRecords()
	}
}

// Committed returns how many records of topic group has committed, summed
// over partitions, and how many the topic holds.
func Committed(t testing.TB, addrs []string, group, topic string) (committed, end int64) {
	t.Helper()
	adm := kadm.NewClient(Client(t, addrs))
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		end += o.Offset
		if c, ok := offs.Lookup(o.Topic, o.Partition); ok && c.At > 0 {
			committed += c.At
		}
	})
	return committed, end
}

// ConsumeDecisions is Consume for a decisions topic: it leaves out the
// config_applied records (where a partition switched rule set versions),
// and returns them apart.
func ConsumeDecisions(t testing.TB, addrs []string, topic string, want int, timeout time.Duration) (decisions, applied [][]byte) {
	t.Helper()
	for _, r := range consumeKept(t, addrs, topic, "decisions", want, timeout, func(r *kgo.Record) bool {
		if bytes.Contains(r.Value, []byte(`"type":"`+engine.TypeConfigApplied+`"`)) {
			applied = append(applied, r.Value)
			return false
		}
		return true
	}) {
		decisions = append(decisions, r.Value)
	}
	return decisions, applied
}

// consumeKept reads topic from its start as a read_committed consumer
// until want records that keep accepts arrived, failing the test after
// timeout, then polls once more for a moment and fails if more arrive.
func consumeKept(t testing.TB, addrs []string, topic, what string, want int, timeout time.Duration, keep func(*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl := Client(t, addrs, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	add := func(r *kgo.Record) {
		if keep(r) {
			out = append(out, r)
		}
	}
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d %s after %s, want %d", topic, len(out), what, timeout, want)
		}
		fs.EachRecord(add)
	}
	more, cancelMore := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelMore()
	cl.PollFetches(more).EachRecord(add)
	if len(out) != want {
		t.Fatalf("%s: %d %s, want exactly %d", topic, len(out), what, want)
	}
	return out
}

// ConsumeRecords is Consume with the whole records.
func ConsumeRecords(t testing.TB, addrs []string, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl := Client(t, addrs, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records after %s, want %d", topic, len(out), timeout, want)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	more, cancelMore := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelMore()
	extra := 0
	cl.PollFetches(more).EachRecord(func(*kgo.Record) { extra++ })
	if extra > 0 || len(out) > want {
		t.Fatalf("%s: %d records, want exactly %d", topic, len(out)+extra, want)
	}
	return out
}

// CaughtUp waits until group has committed every partition of the metrics
// and actions topics to its end: everything produced to them is processed
// and its output committed. (The proposals topic is written in
// transactions, whose commit markers follow the last record: a consumer's
// committed offset stops before them. Its progress shows in the verdicts.)
func CaughtUp(t testing.TB, addrs []string, group string, topics streams.Topics, timeout time.Duration) {
	t.Helper()
	adm := kadm.NewClient(Client(t, addrs))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ends, err := adm.ListEndOffsets(ctx, topics.Metrics, topics.Actions)
		if err == nil {
			committed, ferr := adm.FetchOffsets(ctx, group)
			done := ferr == nil
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				switch {
				case o.Offset == 0 || !done:
				case !ok || c.At < 0:
					done = false
				case c.At < o.Offset:
					// Behind the end: caught up if what lies between is
					// only transaction markers (a node reroutes misplaced
					// events into the metrics topic in its transactions).
					more, err := streams.HoldsRecords(ctx, []kgo.Opt{kgo.SeedBrokers(addrs...)}, o.Topic, o.Partition, c.At, o.Offset)
					done = err == nil && !more
				}
			})
			if done {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s did not catch up within %s", group, timeout)
		case <-tick.C:
		}
	}
}

// Normalize strips the input position (file line or topic offset) and the
// rule set's version number from outputs and sorts them, so outputs of
// different partitionings compare, and a node's (running a published
// version) with a file backtest's (version 0). The rule set's sha256 stays.
func Normalize(t testing.TB, lines [][]byte) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "input")
		delete(m, "ruleset_version")
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// IDs returns the string field of each JSON line.
func IDs(t testing.TB, lines [][]byte, field string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		id, _ := m[field].(string)
		out = append(out, id)
	}
	return out
}

// Duplicates returns the ids that appear more than once.
func Duplicates(ids []string) []string {
	seen := map[string]bool{}
	var dup []string
	for _, id := range ids {
		if seen[id] {
			dup = append(dup, id)
		}
		seen[id] = true
	}
	return dup
}

// History generates a synthetic history as lines.
func History(t testing.TB, seed uint64, o gen.Options) [][]byte {
	t.Helper()
	var b bytes.Buffer
	o.Seed = seed
	if _, err := gen.Events(&b, o); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
}

// Backtest runs the file backtest over lines and returns its decisions.
func Backtest(t testing.TB, rs *rules.RuleSet, lines [][]byte) ([][]byte, *backtest.Summary) {
	t.Helper()
	dir := t.TempDir()
	sum, err := backtest.Run(context.Background(), backtest.Options{
		RuleSet: rs, Input: bytes.NewReader(append(bytes.Join(lines, []byte("\n")), '\n')), InputName: "file", OutDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dir + "/decisions.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, sum
	}
	return bytes.Split(bytes.TrimSpace(data), []byte("\n")), sum
}

// ConsumeProposals is ConsumeRecords for a proposals topic: it leaves out
// the sources' progress records (rules.Progress), which stage 2 reads
// beside the proposals.
func ConsumeProposals(t testing.TB, addrs []string, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	return consumeKept(t, addrs, topic, "proposals", want, timeout, func(r *kgo.Record) bool { return !rules.IsProgress(r.Value) })
}
