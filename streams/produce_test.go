package streams_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduceLines: one record a non-empty line, keyed by ad_id on the
// metrics topic and by account_id on the actions topic; a line without the
// key (or not JSON) goes without one and is counted; with eventTime the
// record's timestamp is the line's ts, else the time of producing.
func TestProduceLines(t *testing.T) {
	brokers, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, brokers, topics)
	ctx := context.Background()
	c, err := streams.Dial(ctx, streams.Connection{Brokers: brokers, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lines := `{"event_id":"1","ts":"2026-11-02T10:00:00Z","account_id":"acc1","ad_id":"a1"}

{"event_id":"2","ts":1793613600000,"account_id":"acc2","ad_id":"a2"}
{"event_id":"3","account_id":"acc3"}
not json
`
	for _, tc := range []struct {
		topic     string
		eventTime bool
		keys      []string
	}{
		{topics.Metrics, true, []string{"a1", "a2", "", ""}},
		{topics.Actions, false, []string{"acc1", "acc2", "acc3", ""}},
	} {
		before := time.Now().Add(-time.Minute)
		n, unkeyed, err := streams.ProduceLines(ctx, c, tc.topic, strings.NewReader(lines), tc.eventTime)
		if err != nil {
			t.Fatal(err)
		}
		wantUnkeyed := 0
		for _, k := range tc.keys {
			if k == "" {
				wantUnkeyed++
			}
		}
		if n != 4 || unkeyed != wantUnkeyed {
			t.Errorf("%s: %d produced, %d unkeyed; want 4 and %d", tc.topic, n, unkeyed, wantUnkeyed)
		}
		recs, err := c.ReadAll(ctx, tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 4 {
			t.Fatalf("%s holds %d records, want 4", tc.topic, len(recs))
		}
		byID := map[string]*kgo.Record{}
		for _, r := range recs {
			byID[string(r.Value)] = r
		}
		for i, line := range []string{
			`{"event_id":"1","ts":"2026-11-02T10:00:00Z","account_id":"acc1","ad_id":"a1"}`,
			`{"event_id":"2","ts":1793613600000,"account_id":"acc2","ad_id":"a2"}`,
			`{"event_id":"3","account_id":"acc3"}`,
			`not json`,
		} {
			r := byID[line]
			if r == nil {
				t.Fatalf("%s: no record of %s", tc.topic, line)
			}
			if string(r.Key) != tc.keys[i] {
				t.Errorf("%s: %s keyed %q, want %q", tc.topic, line, r.Key, tc.keys[i])
			}
			want, ok := streams.RecordTime([]byte(line))
			if ok != (i < 2) {
				t.Fatalf("RecordTime(%s): ok %v", line, ok)
			}
			switch {
			case tc.eventTime && ok:
				if !r.Timestamp.Equal(want) {
					t.Errorf("%s: %s at %s, want its ts %s", tc.topic, line, r.Timestamp, want)
				}
			case r.Timestamp.Before(before):
				t.Errorf("%s: %s at %s, want the time of producing", tc.topic, line, r.Timestamp)
			}
		}
	}
}

// TestProduceLinesTooLong: a line longer than the scanner's 16 MiB limit
// fails the call.
func TestProduceLinesTooLong(t *testing.T) {
	brokers, topics := kafkatest.Brokers(t)
	c, err := streams.Open(streams.Connection{Brokers: brokers, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := streams.ProduceLines(context.Background(), c, topics.Metrics, strings.NewReader(strings.Repeat("x", 17<<20)), false); err == nil {
		t.Fatal("a 17 MiB line was accepted")
	}
}
