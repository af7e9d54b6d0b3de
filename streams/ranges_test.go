package streams_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseBound(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{"", "", ""},
		{"2026-11-18T00:00:00Z", "2026-11-18T00:00:00Z", ""},
		{"2026-11-18T02:00:00+02:00", "2026-11-18T00:00:00Z", ""},
		{"0:1200,1:1187", "0:1200,1:1187", ""},
		{" 1:5 , 0:7", "0:7,1:5", ""},
		{"0:1,0:2", "", "names partition 0 twice"},
		{"0:-1", "", "neither"},
		{"yesterday", "", "neither"},
		{"2026-11-18", "", "neither"},
	} {
		b, err := streams.ParseBound(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseBound(%q): error %v, want one with %q", c.in, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("ParseBound(%q): %v", c.in, err)
		case c.err == "" && b.String() != c.want:
			t.Errorf("ParseBound(%q) = %q, want %q", c.in, b.String(), c.want)
		}
	}
}

// rangeTopic makes a topic of two partitions and returns its name:
// partition p holds n records stamped one minute apart from base. With txn
// they are produced in transactions of 7 records, with an aborted one in
// between, so that the log ends in a commit marker and holds aborted
// records. (Markers carry the time they were written: by timestamp, a
// marker written now comes before later records stamped in the past, so
// ranges by time are tested without transactions, as input topics are
// written.)
func rangeTopic(t *testing.T, n int, txn bool) (*kgo.Client, string, time.Time) {
	t.Helper()
	addrs, topics := kafkatest.Brokers(t)
	topic := kafkatest.Name(topics, "r")
	cl := kafkatest.Client(t, addrs)
	if err := streams.EnsureTopics(context.Background(), cl, []streams.TopicSpec{{Name: topic, Partitions: 2}}, -1); err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner())}
	if txn {
		opts = append(opts, kgo.TransactionalID(kafkatest.Name(topics, "ranges")))
	}
	tx := kafkatest.Client(t, addrs, opts...)
	base := time.Date(2026, 11, 18, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	produce := func(from, to int, commit bool) {
		if !txn {
			for i := from; i < to && commit; i++ {
				for p := int32(0); p < 2; p++ {
					if err := tx.ProduceSync(ctx, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d/%d", p, i), Timestamp: base.Add(time.Duration(i) * time.Minute)}).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
			}
			return
		}
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			for p := int32(0); p < 2; p++ {
				tx.Produce(ctx, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d/%d", p, i), Timestamp: base.Add(time.Duration(i) * time.Minute)}, nil)
			}
		}
		if err := tx.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 7 {
		produce(i, min(i+7, n), true)
		if i == 14 {
			produce(1000, 1003, false) // aborted: never read
		}
	}
	return cl, topic, base
}

func readAll(t *testing.T, cl *kgo.Client, rs streams.Ranges) []string {
	t.Helper()
	var out []string
	for _, r := range rs {
		err := streams.ReadRange(context.Background(), cl.Opts(), r, func(recs []engine.Record, _ []time.Time) error {
			for _, rec := range recs {
				out = append(out, string(rec.Value))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestRangesTransactional: a read ends at the end of the range even when
// the log ends in a transaction marker; aborted records are never read;
// offsets are taken as given.
func TestRangesTransactional(t *testing.T) {
	cl, r, _ := rangeTopic(t, 30, true)
	ctx := context.Background()

	all, err := streams.ResolveRange(ctx, cl, r, streams.Bound{}, streams.Bound{}, streams.Warm{})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, cl, all)
	if len(got) != 60 || got[0] != "0/0" || got[29] != "0/29" || got[59] != "1/29" {
		t.Fatalf("the whole topic: %d records %v", len(got), got)
	}
	for _, v := range got {
		if strings.HasSuffix(v, "/1000") || strings.HasSuffix(v, "/1001") {
			t.Fatalf("an aborted record was read: %s", v)
		}
	}

	// Offsets: partition 1 from its offset 3, partition 0 (not named) from
	// its start; to partition 0's offset 2 (partition 1 to its end).
	rs, err := streams.ResolveRange(ctx, cl, r, streams.Bound{Offsets: map[int32]int64{1: 3}}, streams.Bound{Offsets: map[int32]int64{0: 2}}, streams.Warm{})
	if err != nil {
		t.Fatal(err)
	}
	got = readAll(t, cl, rs)
	if len(got) < 3 || got[0] != "0/0" || got[1] != "0/1" || got[2] != "1/3" || got[len(got)-1] != "1/29" {
		t.Fatalf("offsets: %v", got)
	}
	if _, err := streams.ResolveRange(ctx, cl, r, streams.Bound{Offsets: map[int32]int64{7: 0}}, streams.Bound{}, streams.Warm{}); err == nil {
		t.Fatal("a partition the topic does not have was accepted")
	}
	if _, err := streams.ResolveRange(ctx, cl, r+"-nope", streams.Bound{}, streams.Bound{}, streams.Warm{}); err == nil {
		t.Fatal("a topic that does not exist was accepted")
	}
	if _, err := streams.ResolveRange(ctx, cl, r, streams.Bound{Offsets: map[int32]int64{0: 5}}, streams.Bound{Offsets: map[int32]int64{0: 4}}, streams.Warm{}); err == nil {
		t.Fatal("a range of offsets that ends before it starts was accepted")
	}
}

// TestRangesByTime: times find offsets by record timestamp, a warm-up
// reaches back by time, and Emitted keeps the range proper.
func TestRangesByTime(t *testing.T) {
	cl, r, base := rangeTopic(t, 30, false)
	ctx := context.Background()
	if _, err := streams.ResolveRange(ctx, cl, r, streams.Bound{Time: base.Add(time.Hour)}, streams.Bound{Time: base}, streams.Warm{}); err == nil {
		t.Fatal("a range of times that ends before it starts was accepted")
	}
	// [00:10, 00:20) with five minutes of warm-up.
	rs, err := streams.ResolveRange(ctx, cl, r, streams.Bound{Time: base.Add(10 * time.Minute)}, streams.Bound{Time: base.Add(20 * time.Minute)},
		streams.Warm{Before: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, cl, rs)
	if len(got) != 30 || got[0] != "0/5" || got[14] != "0/19" || got[15] != "1/5" {
		t.Fatalf("[00:05, 00:20): %v", got)
	}
	var kept []string
	for _, r := range rs {
		err := streams.ReadRange(ctx, cl.Opts(), r, func(recs []engine.Record, _ []time.Time) error {
			for _, rec := range recs {
				if rs.Emitted(rulesInput(rec)) {
					kept = append(kept, string(rec.Value))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(kept) != 20 || kept[0] != "0/10" || kept[10] != "1/10" {
		t.Fatalf("emitted in [00:10, 00:20): %v", kept)
	}

}

// TestRangeSource: the partitions one after the other, each in offset
// order, in batches no larger than asked; Read ends at the total.
func TestRangeSource(t *testing.T) {
	cl, r, _ := rangeTopic(t, 20, true)
	rs, err := streams.ResolveRange(context.Background(), cl, r, streams.Bound{}, streams.Bound{}, streams.Warm{})
	if err != nil {
		t.Fatal(err)
	}
	src := streams.NewRangeSource(cl.Opts(), rs, 6)
	var got []string
	for {
		recs, err := src.Poll(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 6 {
			t.Fatalf("a batch of %d, asked for 6", len(recs))
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
	}
	want := []string{}
	for p := 0; p < 2; p++ {
		for i := 0; i < 20; i++ {
			want = append(want, fmt.Sprintf("%d/%d", p, i))
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("read %v", got)
	}
	if src.Read() != rs.Len() {
		t.Fatalf("Read %d, want the ranges' %d offsets", src.Read(), rs.Len())
	}
}

// TestReadTopic: every record of every partition, each partition in
// offset order.
func TestReadTopic(t *testing.T) {
	cl, r, _ := rangeTopic(t, 5, true)
	var got []string
	if err := streams.ReadTopic(context.Background(), cl, cl.Opts(), r, func(v []byte) error {
		got = append(got, string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "0/0 0/1 0/2 0/3 0/4 1/0 1/1 1/2 1/3 1/4"; strings.Join(got, " ") != want {
		t.Fatalf("read %v, want %s", got, want)
	}
}

// TestRangesContains: [From, To) of the record's own partition; no other
// topic or partition (where Emitted keeps them).
func TestRangesContains(t *testing.T) {
	rs := streams.Ranges{{Topic: "m", Partition: 0, Warm: 0, From: 5, To: 10}, {Topic: "m", Partition: 1, From: 0, To: 0}}
	for _, c := range []struct {
		in   rules.Input
		want bool
	}{
		{rules.Input{Topic: "m", Partition: 0, Offset: 4}, false},
		{rules.Input{Topic: "m", Partition: 0, Offset: 5}, true},
		{rules.Input{Topic: "m", Partition: 0, Offset: 9}, true},
		{rules.Input{Topic: "m", Partition: 0, Offset: 10}, false},
		{rules.Input{Topic: "m", Partition: 1, Offset: 0}, false},
		{rules.Input{Topic: "m", Partition: 2, Offset: 7}, false},
		{rules.Input{Topic: "a", Partition: 0, Offset: 7}, false},
	} {
		if got := rs.Contains(c.in); got != c.want {
			t.Errorf("Contains(%+v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func rulesInput(r engine.Record) rules.Input {
	return rules.Input{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// BenchmarkRangeSource: reading a topic range through RangeSource, the
// input side of a topic backtest, from an in-process kfake broker (so it
// measures the client and the source, not a network).
func BenchmarkRangeSource(b *testing.B) {
	addrs, topics := kafkatest.Brokers(b)
	topic := kafkatest.Name(topics, "bench")
	cl := kafkatest.Client(b, addrs, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	if err := streams.EnsureTopics(context.Background(), cl, []streams.TopicSpec{{Name: topic, Partitions: 1}}, -1); err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	line := []byte(`{"event_id":"ad_1001_0001-17","ts":"2026-11-01T17:00:00Z","account_id":"act_1001","campaign_id":"cmp_1001_01","adset_id":"as_1001_01","ad_id":"ad_1001_0001","video_id":"vid_1001_001","impressions":1520,"clicks":31,"spend":12.5,"conversions":2,"revenue":40.1}`)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Value: line}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	rs, err := streams.ResolveRange(ctx, cl, topic, streams.Bound{}, streams.Bound{}, streams.Warm{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		src := streams.NewRangeSource(cl.Opts(), rs, 0)
		read := 0
		for {
			recs, err := src.Poll(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			read += len(recs)
		}
		if read != n {
			b.Fatalf("read %d of %d", read, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/record")
}

// TestRangesString: each partition's [From, To), and where its warm-up
// starts when it has one.
func TestRangesString(t *testing.T) {
	for _, c := range []struct {
		rs   streams.Ranges
		want string
	}{
		{nil, ""},
		{streams.Ranges{{Partition: 0, Warm: 5, From: 5, To: 9}}, "0:[5,9)"},
		{streams.Ranges{{Partition: 0, Warm: 0, From: 120, To: 480}, {Partition: 1, Warm: 118, From: 118, To: 118}},
			"0:[120,480) warm-up from 0 1:[118,118)"},
	} {
		if got := c.rs.String(); got != c.want {
			t.Errorf("%v: %q, want %q", []streams.PartRange(c.rs), got, c.want)
		}
		if got := fmt.Sprint(c.rs); got != c.want {
			t.Errorf("fmt.Sprint: %q, want %q", got, c.want)
		}
	}
}
