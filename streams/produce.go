package streams

import (
	"bufio"
	"context"
	"io"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"
)

// maxLine is the longest JSON line ProduceLines reads.
const maxLine = 16 << 20

// ProduceLines produces each non-empty line of r (JSON Lines) as one record
// of topic through c's client, keyed by the line's KeyOf field (ad_id, or
// account_id on the actions and proposals topics of c.Topics), and returns
// once every record is acknowledged. A line without that field (not JSON,
// or without it) is produced without a key and counted in unkeyed: a node
// sends it to the dead letters if it is bad. With eventTime, a record's
// timestamp is its line's ts (RecordTime), so that ranges by time find a
// history loaded later; else, and for a line without a valid ts, it is the
// time of producing.
//
// n counts the lines produced. The error is the first of reading r,
// flushing, or any record's produce.
func ProduceLines(ctx context.Context, c *Cluster, topic string, r io.Reader, eventTime bool) (n, unkeyed int, err error) {
	cl := c.Client()
	field := KeyOf(topic, c.Topics())
	var (
		mu    sync.Mutex
		first error
	)
	var p fastjson.Parser
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLine)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		line := append([]byte(nil), sc.Bytes()...)
		var key []byte
		if v, err := p.ParseBytes(line); err == nil {
			key = append(key, v.GetStringBytes(field)...)
		}
		if len(key) == 0 {
			unkeyed++
		}
		n++
		rec := &kgo.Record{Topic: topic, Key: key, Value: line}
		if eventTime {
			if ts, ok := RecordTime(line); ok {
				rec.Timestamp = ts
			}
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
		})
	}
	if err := sc.Err(); err != nil {
		return n, unkeyed, err
	}
	if err := cl.Flush(ctx); err != nil {
		return n, unkeyed, err
	}
	mu.Lock()
	defer mu.Unlock()
	return n, unkeyed, first
}
