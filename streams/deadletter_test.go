package streams_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// TestDeadLetterFits: a malformed record just under the broker's limit on
// the metrics topic, whose original bytes and headers do not fit a record
// of the dead-letter topic (the producer's batch limit, 1,000,012 bytes by
// default, is below the broker's 1,048,588; or the topic's own
// max.message.bytes is lower), is dead-lettered as a prefix of its value
// with its sha256 and size in headers; a small one keeps its bytes. The
// node never stops and goes on with the good events.
func TestDeadLetterFits(t *testing.T) {
	for _, c := range []struct {
		name   string
		dlqMax int // the dead-letter topic's max.message.bytes; 0 leaves the broker's
	}{
		{"same-limit", 0},
		{"lower-dlq-limit", 200_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			addrs, topics := kafkatest.Brokers(t)
			kafkatest.Setup(t, addrs, topics)
			adm := kadm.NewClient(kafkatest.Client(t, addrs))
			ctx := context.Background()
			if c.dlqMax > 0 {
				resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr(strconv.Itoa(c.dlqMax))}}, topics.DLQ)
				if err == nil {
					_, err = resp.On(topics.DLQ, nil)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			limit := maxMessageBytes(t, adm, topics.Metrics)
			dlqLimit := maxMessageBytes(t, adm, topics.DLQ)
			t.Logf("max.message.bytes: %d on the metrics topic, %d on the dead-letter topic", limit, dlqLimit)

			rs := kafkatest.DefaultRules(t, "..")
			lines := kafkatest.History(t, 31, gen.Options{Accounts: 1, Events: 600})
			want, _ := kafkatest.Backtest(t, rs, lines)
			// Malformed: a JSON object that never ends. The big one fills a
			// batch of the metrics topic to within 128 bytes of its limit.
			const key = "ad_big"
			big := []byte(`{"event_id":"big","ad_id":"` + strings.Repeat("x", limit-128-len(key)-27))
			small := []byte(`{"event_id":"small","ad_id":"` + strings.Repeat("y", 5000))
			cl := kafkatest.Client(t, addrs, kgo.ProducerBatchMaxBytes(int32(limit)))
			kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[:len(lines)/2])
			for _, v := range [][]byte{big, small} {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Metrics, Key: []byte(key), Value: v}).FirstErr(); err != nil {
					t.Fatalf("a record of %d bytes: %v", len(v), err)
				}
			}
			kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[len(lines)/2:])

			startNode(t, addrs, topics, "n", t.TempDir(), rs)
			dlq := kafkatest.ConsumeRecords(t, addrs, topics.DLQ, 2, time.Minute)
			// The node went on: the good events' decisions are the backtest's.
			got := kafkatest.Consume(t, addrs, topics.Decisions, len(want), time.Minute)
			if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
				t.Errorf("decisions differ from the backtest's: %d vs %d", len(g), len(w))
			}
			for _, d := range dlq {
				h := map[string]string{}
				for _, x := range d.Headers {
					h[x.Key] = string(x.Value)
				}
				if h["adrules.reason"] == "" || h["adrules.topic"] != topics.Metrics {
					t.Errorf("dead letter of %d bytes: headers %v lack the reason or the source", len(d.Value), h)
				}
				switch {
				case strings.HasPrefix(string(d.Value), `{"event_id":"small"`):
					if string(d.Value) != string(small) || h["adrules.truncated"] != "" {
						t.Errorf("the small record's dead letter: %d bytes, headers %v; want its %d bytes as they were", len(d.Value), h, len(small))
					}
				case strings.HasPrefix(string(d.Value), `{"event_id":"big"`):
					sum := sha256.Sum256(big)
					if h["adrules.truncated"] != "true" || h["adrules.sha256"] != hex.EncodeToString(sum[:]) || h["adrules.size"] != fmt.Sprint(len(big)) {
						t.Errorf("the big record's dead letter: headers %v; want truncated=true, its sha256 and size %d", h, len(big))
					}
					if len(d.Value) >= len(big) || string(big[:len(d.Value)]) != string(d.Value) {
						t.Errorf("the big record's dead letter holds %d bytes, not a prefix of its %d", len(d.Value), len(big))
					}
					if len(d.Value) < dlqLimit/2 {
						t.Errorf("the big record's dead letter keeps %d bytes of %d where %d fit", len(d.Value), len(big), dlqLimit)
					}
				default:
					t.Errorf("unexpected dead letter of %d bytes: %.40q", len(d.Value), d.Value)
				}
			}
		})
	}
}

// maxMessageBytes returns a topic's max.message.bytes.
func maxMessageBytes(t *testing.T, adm *kadm.Client, topic string) int {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("%s: no max.message.bytes", topic)
	return 0
}

// TestDeadLetterRecord: a dead letter that fits its limit is the original
// record; one that does not keeps prefixes of its key and value that fit,
// with the original sizes and hashes; a long reason is cut.
func TestDeadLetterRecord(t *testing.T) {
	in := rules.Input{Topic: "ad-metrics", Partition: 3, Offset: 77}
	hash := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for _, c := range []struct {
		name               string
		key, value, reason int
		limit              int
		truncated, keyCut  bool
	}{
		{"fits", 10, 5000, 20, 1 << 20, false, false},
		{"value", 10, 1 << 20, 20, 1_000_012, true, false},
		{"value-and-key", 300_000, 1 << 20, 20, 200_000, true, true},
		{"smallest-limit", 10, 5000, 20, 512, true, false},
		{"long-reason", 10, 100, 5000, 1 << 20, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &engine.DeadLetter{Input: in, Key: bytes.Repeat([]byte("k"), c.key), Value: bytes.Repeat([]byte("v"), c.value), Reason: strings.Repeat("r", c.reason)}
			r := streams.DeadLetter(d, "adrules.dlq", c.limit)
			if n := streams.RecordBytes(r); n > c.limit {
				t.Fatalf("the dead letter takes up to %d bytes, over the limit of %d", n, c.limit)
			}
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if h["adrules.topic"] != "ad-metrics" || h["adrules.partition"] != "3" || h["adrules.offset"] != "77" || h["adrules.reason"] == "" {
				t.Errorf("headers %v lack where it came from or why", h)
			}
			if len(h["adrules.reason"]) > 1024 || !strings.HasPrefix(d.Reason, strings.TrimSuffix(h["adrules.reason"], "…")) {
				t.Errorf("reason of %d bytes is not a prefix of at most 1 KiB of the reason", len(h["adrules.reason"]))
			}
			if !bytes.HasPrefix(d.Value, r.Value) || !bytes.HasPrefix(d.Key, r.Key) {
				t.Errorf("key or value is not a prefix of the original's")
			}
			if !c.truncated {
				if h["adrules.truncated"] != "" || !bytes.Equal(r.Value, d.Value) || !bytes.Equal(r.Key, d.Key) {
					t.Errorf("a dead letter that fits is not the original record: headers %v", h)
				}
				return
			}
			if h["adrules.truncated"] != "true" || h["adrules.size"] != fmt.Sprint(c.value) || h["adrules.sha256"] != hash(d.Value) {
				t.Errorf("headers %v: want truncated, size %d and the value's sha256", h, c.value)
			}
			if len(r.Value) >= len(d.Value) || c.limit > 10_000 && len(r.Value) < c.limit/3 {
				t.Errorf("keeps %d bytes of a value of %d under a limit of %d", len(r.Value), len(d.Value), c.limit)
			}
			if c.keyCut != (len(r.Key) < len(d.Key)) || c.keyCut != (h["adrules.key_size"] == fmt.Sprint(c.key)) || c.keyCut != (h["adrules.key_sha256"] == hash(d.Key)) {
				t.Errorf("key cut to %d bytes of %d, headers %v", len(r.Key), len(d.Key), h)
			}
		})
	}
}
