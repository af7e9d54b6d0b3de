package streams_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitions is how many partitions kafkatest.Setup gives every topic.
const partitions = 4

// TestKeyPartition pins the partitioner adrules documents for producers,
// streams.KeyPartition, to the Java client's: murmur2 of the key, made
// positive, modulo the partition count. The hashes are the vectors of
// Kafka's own UtilsTest.testMurmur2; kgo's StickyKeyPartitioner(nil) must
// agree on every key. ad_0000 is the ad of issue 10: murmur2 puts it on
// partition 0 of four, librdkafka's CRC32 (kcat's default) on partition 3.
func TestKeyPartition(t *testing.T) {
	for _, c := range []struct {
		key  string
		hash int32 // org.apache.kafka.common.utils.Utils.murmur2
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
		{"ad_0000", 1793515748},
	} {
		for _, n := range []int32{1, 3, 4, 12, 100} {
			want := int32(uint32(c.hash)&0x7fffffff) % n // Utils.toPositive(murmur2(key)) % n
			if got := streams.KeyPartition([]byte(c.key), n); got != want {
				t.Errorf("KeyPartition(%q, %d) = %d, want %d (Java's murmur2)", c.key, n, got, want)
			}
			kgoP := kgo.StickyKeyPartitioner(nil).ForTopic("t").Partition(&kgo.Record{Key: []byte(c.key)}, int(n))
			if int32(kgoP) != want {
				t.Errorf("kgo's StickyKeyPartitioner(nil) puts %q on %d of %d, want %d", c.key, kgoP, n, want)
			}
		}
	}
	// Any key, of any length: the same partition as kgo's.
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		key := make([]byte, i%67)
		for j := range key {
			key[j] = byte(rnd.Uint32())
		}
		n := int32(1 + rnd.IntN(64))
		want := kgo.StickyKeyPartitioner(nil).ForTopic("t").Partition(&kgo.Record{Key: key}, int(n))
		if got := streams.KeyPartition(key, n); got != int32(want) {
			t.Fatalf("KeyPartition(%x, %d) = %d, kgo says %d", key, n, got, want)
		}
	}
	if got := streams.KeyPartition([]byte("ad_0000"), 4); got != 0 {
		t.Errorf("ad_0000 is on partition %d of 4, want 0 (murmur2)", got)
	}
	if got := crc32Partition([]byte("ad_0000"), 4); got != 3 {
		t.Errorf("CRC32 puts ad_0000 on partition %d of 4, want 3 (issue 10)", got)
	}
}

// crc32Partition is librdkafka's default partitioner for a keyed record
// (consistent_random, kcat's default): the CRC32 (IEEE) of the key modulo
// the partition count.
func crc32Partition(key []byte, n int) int { return int(crc32.ChecksumIEEE(key) % uint32(n)) }

// crc32Partitioner makes a kgo client produce as kcat does.
func crc32Partitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int { return crc32Partition(r.Key, n) }
	})
}

// TestPartitioner: KeyPartition for the topic it names, -1 (cannot tell)
// for another topic or an unknown partition count.
func TestPartitioner(t *testing.T) {
	p := streams.Partitioner("m", partitions)
	for _, key := range []string{"ad_0000", "21", "foobar"} {
		if got, want := p("m", []byte(key)), streams.KeyPartition([]byte(key), partitions); got != want {
			t.Errorf("Partitioner(m)(m, %s) = %d, want %d", key, got, want)
		}
		if got := p("other", []byte(key)); got != -1 {
			t.Errorf("Partitioner(m)(other, %s) = %d, want -1", key, got)
		}
		if got := streams.Partitioner("m", 0)("m", []byte(key)); got != -1 {
			t.Errorf("Partitioner(m, 0)(m, %s) = %d, want -1", key, got)
		}
	}
}

// TestForeignPartitioner: issue 10 defect 2. About half of each ad's events
// are produced as kcat produces them (CRC32), the rest as adrules produce
// does (murmur2), so an ad's events lie on two partitions. The node sends
// each misplaced event to its key's partition (same key and bytes, header
// adrules.rerouted_from) and processes it there: the decisions equal the
// file backtest's, no ad wins twice, and nothing is dead-lettered.
//
// A rerouted copy lands behind what its partition already holds, so an ad
// keeps its order only if the copy arrives before the ad's next event. The
// history is therefore produced in rounds: within a round each ad's events
// go through one partitioner (alternating from round to round), and the
// next round starts once the node has processed everything, copies
// included. Decisions depend on each ad's order, which the backtest fixes.
func TestForeignPartitioner(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	rs := kafkatest.DefaultRules(t, "..")
	lines := kafkatest.History(t, 10, gen.Options{Accounts: 4, DupPct: 2, EpochMsPct: 30})
	want, _ := kafkatest.Backtest(t, rs, lines)
	group := kafkatest.Group(topics)
	startRunner(t, addrs, topics, rs, runnerOptions{id: "n1", dir: t.TempDir(), group: group, partitioner: true})

	own := kafkatest.Client(t, addrs)                                             // murmur2: kgo's default, as adrules produce
	kcat := kafkatest.Client(t, addrs, kgo.RecordPartitioner(crc32Partitioner())) // CRC32
	const rounds = 8
	misplaced := map[string]bool{} // ads with events on a partition not theirs
	nMisplaced := 0
	for k := range rounds {
		var foreign, murmur [][]byte
		for _, l := range lines[k*len(lines)/rounds : (k+1)*len(lines)/rounds] {
			ad := adID(t, l)
			h := fnv.New32a()
			h.Write([]byte(ad))
			if (int(h.Sum32()%2)+k)%2 == 0 {
				murmur = append(murmur, l)
				continue
			}
			foreign = append(foreign, l)
			if crc32Partition([]byte(ad), partitions) != int(streams.KeyPartition([]byte(ad), partitions)) {
				misplaced[ad] = true
				nMisplaced++
			}
		}
		kafkatest.Produce(t, kcat, topics.Metrics, "ad_id", foreign)
		kafkatest.Produce(t, own, topics.Metrics, "ad_id", murmur)
		waitConsumed(t, addrs, group, topics.Metrics, time.Minute)
	}
	splitWinners := 0
	for _, d := range want {
		if dec := decision(t, d); dec.Type == "rag_index_winner" && misplaced[dec.AdID] {
			splitWinners++
		}
	}
	if nMisplaced == 0 || splitWinners == 0 {
		t.Fatalf("%d misplaced events, %d winners among the ads they split: the test would prove little", nMisplaced, splitWinners)
	}
	t.Logf("%d of %d events produced on a partition not their key's, splitting %d ads, %d of them winners", nMisplaced, len(lines), len(misplaced), splitWinners)

	// Everything is processed (waitConsumed): the decisions topic holds
	// all there will be.
	got := topicValues(t, addrs, topics.Decisions)
	winners := map[string]int{}
	for _, d := range got {
		if dec := decision(t, d); dec.Type == "rag_index_winner" {
			winners[dec.AdID]++
		}
	}
	for ad, n := range winners {
		if n > 1 {
			t.Errorf("ad %s has %d rag_index_winner decisions: its state lives in two partitions", ad, n)
		}
	}
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Errorf("the node made %d decisions that differ from the file backtest's %d:\n%s", len(g), len(w), firstDifference(g, w))
	}

	// Each misplaced event was produced again, once, on its key's
	// partition: its key and bytes, with where it lay.
	var copies int
	from := map[string]int{}
	metrics := topicRecords(t, addrs, topics.Metrics)
	if len(metrics) != len(lines)+nMisplaced {
		t.Errorf("%s holds %d records: want the %d produced and a copy of each of the %d misplaced", topics.Metrics, len(metrics), len(lines), nMisplaced)
	}
	at := map[string]*kgo.Record{}
	for _, r := range metrics {
		at[fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)] = r
	}
	for _, r := range metrics {
		for _, h := range r.Headers {
			if h.Key != "adrules.rerouted_from" {
				continue
			}
			copies++
			from[string(h.Value)]++
			if want := streams.KeyPartition(r.Key, partitions); r.Partition != want {
				t.Errorf("rerouted copy of %s (from %s) lies on partition %d, its key's is %d", r.Key, h.Value, r.Partition, want)
			}
			orig, ok := at[string(h.Value)]
			switch {
			case !ok || orig.Partition == r.Partition:
				t.Errorf("rerouted copy on partition %d says it came from %s, which holds no record of another partition", r.Partition, h.Value)
			case !bytes.Equal(orig.Key, r.Key) || !bytes.Equal(orig.Value, r.Value):
				t.Errorf("rerouted copy of %s is %s: %s, not %s: %s", h.Value, r.Key, r.Value, orig.Key, orig.Value)
			}
		}
	}
	if copies != nMisplaced {
		t.Errorf("%d rerouted copies on %s, want one for each of the %d misplaced events", copies, topics.Metrics, nMisplaced)
	}
	for at, n := range from {
		if n > 1 {
			t.Errorf("the event at %s was rerouted %d times", at, n)
		}
	}
	// No dead letters: the history has no bad line, and a misplaced event
	// is not one.
	if dl := topicValues(t, addrs, topics.DLQ); len(dl) > 0 {
		t.Errorf("%d dead letters, the first: %s", len(dl), dl[0])
	}
}

// firstDifference describes where two sorted lists first differ.
func firstDifference(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("  at %d:\n  node:     %s\n  backtest: %s", i, g, w)
		}
	}
	return ""
}

func adID(t *testing.T, line []byte) string {
	t.Helper()
	var ev struct {
		AdID string `json:"ad_id"`
	}
	if err := json.Unmarshal(line, &ev); err != nil || ev.AdID == "" {
		t.Fatalf("no ad_id in %s: %v", line, err)
	}
	return ev.AdID
}

func decision(t *testing.T, line []byte) rules.Decision {
	t.Helper()
	var d rules.Decision
	if err := json.Unmarshal(line, &d); err != nil {
		t.Fatalf("not a decision: %s: %v", line, err)
	}
	return d
}

// topicRecords returns every committed record of topic as it is now, with
// its headers, partition by partition.
func topicRecords(t *testing.T, addrs []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := streams.ResolveRange(ctx, kafkatest.Client(t, addrs), topic, streams.Bound{}, streams.Bound{}, streams.Warm{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*kgo.Record
	for _, r := range rs {
		if r.To <= r.From {
			continue
		}
		// Markers are kept so that a partition ending in one ends.
		cl := kafkatest.Client(t, addrs, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {r.Partition: kgo.NewOffset().At(r.From)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
		for done := false; !done; {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("%s/%d: not read to %d within a minute", topic, r.Partition, r.To)
			}
			fs.EachRecord(func(rec *kgo.Record) {
				if rec.Offset >= r.To {
					done = true
					return
				}
				done = done || rec.Offset+1 >= r.To
				if !rec.Attrs.IsControl() {
					out = append(out, rec)
				}
			})
		}
		cl.Close()
	}
	return out
}

// topicValues returns the values of topicRecords.
func topicValues(t *testing.T, addrs []string, topic string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, r := range topicRecords(t, addrs, topic) {
		out = append(out, r.Value)
	}
	return out
}

// waitConsumed waits until group has committed every partition of topic
// past its last committed record: every record there is processed, and
// what processing it wrote (rerouted copies included, which lie on the
// topic itself) is committed. kafkatest.CaughtUp compares with the end
// offsets instead, which a transaction's commit marker puts one past the
// last record: a topic the node writes to (rerouted copies) never gets
// there.
func waitConsumed(t *testing.T, addrs []string, group, topic string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl := kafkatest.Client(t, addrs)
	adm := kadm.NewClient(cl)
	last := map[int32]int64{} // the last record read per partition
	next := map[int32]int64{} // where reading goes on
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var behind string
	for {
		rs, err := streams.ResolveRange(ctx, cl, topic, streams.Bound{}, streams.Bound{}, streams.Warm{})
		if err == nil {
			for _, r := range rs {
				if n, ok := next[r.Partition]; ok {
					r.Warm = n
				}
				err = streams.ReadRange(ctx, cl.Opts(), r, func(recs []engine.Record, _ []time.Time) error {
					last[r.Partition] = recs[len(recs)-1].Offset
					return nil
				})
				if err != nil {
					break
				}
				next[r.Partition] = r.To
			}
		}
		var offs kadm.OffsetResponses
		if err == nil {
			offs, err = adm.FetchOffsets(ctx, group)
		}
		if err == nil {
			behind = ""
			for p, l := range last {
				if o, ok := offs.Lookup(topic, p); !ok || o.At <= l {
					behind += fmt.Sprintf(" %s/%d committed %d, last record %d;", topic, p, o.At, l)
				}
			}
			if behind == "" {
				return
			}
		}
		if err != nil && ctx.Err() == nil {
			behind = fmt.Sprintf(" %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s did not process %s within %s:%s", group, topic, timeout, behind)
		case <-tick.C:
		}
	}
}

// BenchmarkKeyPartition: the partition check of every event.
func BenchmarkKeyPartition(b *testing.B) {
	key := []byte("ad_000123")
	b.ReportAllocs()
	for b.Loop() {
		streams.KeyPartition(key, 6)
	}
}
