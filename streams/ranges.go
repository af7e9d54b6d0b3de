package streams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"
)

// Bound is one end of a range of a topic: a time (offsets are found by
// record timestamp), or an offset per partition. The zero Bound is open:
// the start of the log for --from, its end for --to.
type Bound struct {
	Time    time.Time
	Offsets map[int32]int64
}

// IsZero reports whether b is open.
func (b Bound) IsZero() bool { return b.Time.IsZero() && b.Offsets == nil }

func (b Bound) String() string {
	switch {
	case !b.Time.IsZero():
		return b.Time.UTC().Format(time.RFC3339)
	case b.Offsets != nil:
		var parts []string
		for _, p := range slices.Sorted(mapsKeys(b.Offsets)) {
			parts = append(parts, fmt.Sprintf("%d:%d", p, b.Offsets[p]))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

func mapsKeys(m map[int32]int64) func(func(int32) bool) {
	return func(yield func(int32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// ParseBound reads an RFC 3339 time ("2026-11-18T00:00:00Z") or a list of
// partition:offset pairs ("0:1200,1:1187"). The empty string is the open
// Bound.
func ParseBound(s string) (Bound, error) {
	if s == "" {
		return Bound{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Bound{Time: t}, nil
	}
	offs := map[int32]int64{}
	for pair := range strings.SplitSeq(s, ",") {
		ps, os, ok := strings.Cut(strings.TrimSpace(pair), ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		o, oerr := strconv.ParseInt(os, 10, 64)
		if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
			return Bound{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-18T00:00:00Z) nor partition:offset pairs (0:1200,1:1187)", s)
		}
		if _, dup := offs[int32(p)]; dup {
			return Bound{}, fmt.Errorf("%q names partition %d twice", s, p)
		}
		offs[int32(p)] = o
	}
	return Bound{Offsets: offs}, nil
}

// PartRange is the slice of one partition a replay reads: records in
// [Warm, To). Those before From only bring state up to date; output is kept
// for [From, To).
type PartRange struct {
	Topic     string
	Partition int32
	Warm      int64
	From      int64
	To        int64
}

// Len is the number of offsets the range reads.
func (r PartRange) Len() int64 { return max(r.To-r.Warm, 0) }

// Ranges are the partition ranges of one topic, by partition.
type Ranges []PartRange

// Span is the number of offsets in [From, To) of the ranges: what they
// emit for, warm-up left out.
func (rs Ranges) Span() int64 {
	var n int64
	for _, r := range rs {
		n += r.To - r.From
	}
	return n
}

// Len is the number of offsets the ranges read.
func (rs Ranges) Len() int64 {
	var n int64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

// String says which offsets the ranges read, per partition:
// "0:[120,480) warm-up from 0 1:[118,470)".
func (rs Ranges) String() string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:[%d,%d)", r.Partition, r.From, r.To)
		if r.Warm < r.From {
			fmt.Fprintf(&b, " warm-up from %d", r.Warm)
		}
	}
	return b.String()
}

// Emitted reports whether output for in is kept: its record lies in
// [From, To) of its partition's range. Records of other topics are kept.
func (rs Ranges) Emitted(in rules.Input) bool {
	for _, r := range rs {
		if r.Topic == in.Topic && r.Partition == in.Partition {
			return in.Offset >= r.From && in.Offset < r.To
		}
	}
	return true
}

// Contains reports whether in lies in [From, To) of its partition's range.
// Unlike Emitted, records of topics and partitions without a range are not
// contained.
func (rs Ranges) Contains(in rules.Input) bool {
	for _, r := range rs {
		if r.Topic == in.Topic && r.Partition == in.Partition {
			return in.Offset >= r.From && in.Offset < r.To
		}
	}
	return false
}

// Warm says where a range starts reading before its From.
type Warm struct {
	// Start reads from the start of the log (an exact replay).
	Start bool
	// Before reads the records of this much time (by record timestamp)
	// before From.
	Before time.Duration
}

// ResolveRange finds the offsets of [from, to) in every partition of topic:
// a time is the first offset whose record timestamp is at or after it (the
// end of the log when there is none), offsets are taken as given, and a
// partition a list does not name is read from its start (from) or to its end
// (to). The end is never past the last stable offset: a read_committed
// consumer sees nothing beyond it.
func ResolveRange(ctx context.Context, cl *kgo.Client, topic string, from, to Bound, warm Warm) (Ranges, error) {
	if !from.Time.IsZero() && !to.Time.IsZero() && to.Time.Before(from.Time) {
		return nil, fmt.Errorf("the range ends (%s) before it starts (%s)", to, from)
	}
	for p, o := range to.Offsets {
		if f, ok := from.Offsets[p]; ok && o < f {
			return nil, fmt.Errorf("the range of partition %d ends (offset %d) before it starts (offset %d)", p, o, f)
		}
	}
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", topic, err)
	}
	at := func(b Bound, open func(p int32) int64) (map[int32]int64, error) {
		out := map[int32]int64{}
		var lo kadm.ListedOffsets
		if !b.Time.IsZero() {
			var err error
			if lo, err = adm.ListOffsetsAfterMilli(ctx, b.Time.UnixMilli(), topic); err == nil {
				err = lo.Error()
			}
			if err != nil {
				return nil, fmt.Errorf("%s: offsets at %s: %w", topic, b, err)
			}
		}
		for p := range ends[topic] {
			switch {
			case !b.Time.IsZero():
				l, _ := lo.Lookup(topic, p)
				out[p] = l.Offset
			case b.Offsets != nil:
				if o, ok := b.Offsets[p]; ok {
					out[p] = o
				} else {
					out[p] = open(p)
				}
			default:
				out[p] = open(p)
			}
		}
		for p := range b.Offsets {
			if _, ok := ends[topic][p]; !ok {
				return nil, fmt.Errorf("%s has no partition %d", topic, p)
			}
		}
		return out, nil
	}
	startOf := func(p int32) int64 { s, _ := starts.Lookup(topic, p); return s.Offset }
	endOf := func(p int32) int64 { e, _ := ends.Lookup(topic, p); return e.Offset }
	f, err := at(from, startOf)
	if err != nil {
		return nil, err
	}
	t, err := at(to, endOf)
	if err != nil {
		return nil, err
	}
	w := map[int32]int64{}
	switch {
	case warm.Start:
		for p := range f {
			w[p] = startOf(p)
		}
	case warm.Before > 0 && !from.Time.IsZero():
		if w, err = at(Bound{Time: from.Time.Add(-warm.Before)}, startOf); err != nil {
			return nil, err
		}
	case warm.Before > 0 && from.Offsets != nil:
		// Offsets have no time: the warm-up starts at the timestamp of
		// each partition's From record less the duration.
		for p, o := range f {
			w[p] = o
			if o <= startOf(p) || o >= endOf(p) {
				continue
			}
			ts, err := timestampAt(ctx, cl, topic, p, o)
			if err != nil {
				return nil, err
			}
			lo, err := adm.ListOffsetsAfterMilli(ctx, ts.Add(-warm.Before).UnixMilli(), topic)
			if err == nil {
				err = lo.Error()
			}
			if err != nil {
				return nil, err
			}
			if l, ok := lo.Lookup(topic, p); ok {
				w[p] = l.Offset
			}
		}
	default:
		w = f
	}
	var out Ranges
	for _, p := range slices.Sorted(func(yield func(int32) bool) {
		for p := range ends[topic] {
			if !yield(p) {
				return
			}
		}
	}) {
		end, start := endOf(p), startOf(p)
		r := PartRange{Topic: topic, Partition: p, From: clamp(f[p], start, end), To: clamp(t[p], start, end)}
		r.Warm = min(clamp(w[p], start, end), r.From)
		r.To = max(r.To, r.From)
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s does not exist", topic)
	}
	return out, nil
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// timestampAt returns the timestamp of the record at offset off.
func timestampAt(ctx context.Context, cl *kgo.Client, topic string, p int32, off int64) (time.Time, error) {
	var ts time.Time
	err := ReadRange(ctx, cl.Opts(), PartRange{Topic: topic, Partition: p, Warm: off, From: off, To: off + 1}, func(recs []engine.Record, stamps []time.Time) error {
		ts = stamps[0]
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return ts, err
}

var errStop = errors.New("stop")

// ReadRanges reads the committed records of every range of rs (ReadRange),
// one range after another, and returns them all.
func ReadRanges(ctx context.Context, opts []kgo.Opt, rs Ranges) ([]engine.Record, error) {
	var out []engine.Record
	for _, r := range rs {
		err := ReadRange(ctx, opts, r, func(recs []engine.Record, _ []time.Time) error {
			out = append(out, recs...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadRange reads the committed records of r, [r.Warm, r.To), in offset
// order (r.Warm -1: from the start of the log), handing them to fn in
// chunks with their timestamps; fn must not keep the slice. It consumes the
// partition directly: no group, no offsets committed anywhere. Transaction
// markers are read (and skipped) so that a range ending in one ends.
func ReadRange(ctx context.Context, opts []kgo.Opt, r PartRange, fn func(recs []engine.Record, ts []time.Time) error) error {
	if r.Len() == 0 {
		return nil
	}
	start := kgo.NewOffset().AtStart()
	if r.Warm >= 0 {
		start = kgo.NewOffset().At(r.Warm)
	}
	// A consumer of its own: never a group, never committing. An offset
	// that retention has removed reads from the start of the log.
	cl, err := kgo.NewClient(append(slices.Clip(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.Topic: {r.Partition: start}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []engine.Record
	var stamps []time.Time
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("%s/%d: %w", r.Topic, r.Partition, ferr)
		}
		recs, stamps = recs[:0], stamps[:0]
		done := false
		fs.EachRecord(func(k *kgo.Record) {
			if done || k.Offset >= r.To {
				done = true
				return
			}
			if k.Offset+1 >= r.To {
				done = true
			}
			if k.Attrs.IsControl() || k.Offset < r.Warm {
				return
			}
			recs = append(recs, engine.Record{Topic: k.Topic, Partition: k.Partition, Offset: k.Offset, Key: k.Key, Value: k.Value})
			stamps = append(stamps, k.Timestamp)
		})
		if len(recs) > 0 {
			if err := fn(recs, stamps); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// RangeSource is an engine.Source over ranges of topics: one partition after
// the other, in the order given, each in offset order. The order is fixed,
// so a replay's output is too.
type RangeSource struct {
	opts   []kgo.Opt
	ranges []PartRange
	batch  int

	ch     chan rangeBatch
	cancel context.CancelFunc
	read   atomic.Int64
}

type rangeBatch struct {
	recs []engine.Record
	err  error
}

// NewRangeSource reads ranges with a client made of opts (seed brokers,
// TLS, SASL), in batches of at most batch records (default 8192 when <= 0).
func NewRangeSource(opts []kgo.Opt, ranges []PartRange, batch int) *RangeSource {
	if batch <= 0 {
		batch = 8192
	}
	return &RangeSource{opts: opts, ranges: ranges, batch: batch}
}

// Read is the number of records (and transaction markers) read so far; it
// may be called from any goroutine.
func (s *RangeSource) Read() int64 { return s.read.Load() }

// Poll returns the next chunk of the current partition, io.EOF when all
// ranges are read.
func (s *RangeSource) Poll(ctx context.Context) ([]engine.Record, error) {
	if s.ch == nil {
		rctx, cancel := context.WithCancel(ctx)
		s.ch, s.cancel = make(chan rangeBatch, 4), cancel
		go s.run(rctx)
	}
	select {
	case b, ok := <-s.ch:
		if !ok {
			s.cancel()
			return nil, io.EOF
		}
		if b.err != nil {
			s.cancel()
			return nil, b.err
		}
		return b.recs, nil
	case <-ctx.Done():
		s.cancel()
		return nil, ctx.Err()
	}
}

// Commit does nothing: a replay commits no offsets.
func (s *RangeSource) Commit(context.Context) error { return nil }

func (s *RangeSource) run(ctx context.Context) {
	defer close(s.ch)
	var base int64 // offsets of the ranges done
	for _, r := range s.ranges {
		err := ReadRange(ctx, s.opts, r, func(recs []engine.Record, _ []time.Time) error {
			s.read.Store(base + recs[len(recs)-1].Offset + 1 - r.Warm)
			for len(recs) > 0 {
				n := min(len(recs), s.batch)
				// fn's slice is reused: hand over a copy of it (the
				// records' bytes are the client's and are never reused).
				chunk := slices.Clone(recs[:n])
				select {
				case s.ch <- rangeBatch{recs: chunk}:
				case <-ctx.Done():
					return ctx.Err()
				}
				recs = recs[n:]
			}
			return nil
		})
		if err != nil {
			if ctx.Err() == nil {
				select {
				case s.ch <- rangeBatch{err: err}:
				case <-ctx.Done():
				}
			}
			return
		}
		// Count every offset the range spans (markers, aborted records)
		// once it is done, so progress ends at its total.
		base += r.Len()
		s.read.Store(base)
	}
}

// RecordTime returns the time in a metric event's or proposal's "ts" field,
// for producing it with that record timestamp (so that replays by time find
// it); ok is false when the line has no valid ts.
func RecordTime(line []byte) (time.Time, bool) {
	v, err := fastjson.ParseBytes(line)
	if err != nil {
		return time.Time{}, false
	}
	ts := v.Get("ts")
	if ts == nil {
		return time.Time{}, false
	}
	var ms int64
	switch ts.Type() {
	case fastjson.TypeString:
		b, _ := ts.StringBytes()
		var ok bool
		if ms, ok = rules.ParseTime(string(b)); !ok {
			return time.Time{}, false
		}
	case fastjson.TypeNumber:
		n, err := ts.Int64()
		if err != nil || n < 0 {
			return time.Time{}, false
		}
		ms = n
	default:
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// ReadTopic hands fn the value of every committed record of topic that
// exists now, partition after partition, each in offset order, with
// clients made of opts (seed brokers, TLS, SASL); cl finds the ends.
func ReadTopic(ctx context.Context, cl *kgo.Client, opts []kgo.Opt, topic string, fn func([]byte) error) error {
	rs, err := ResolveRange(ctx, cl, topic, Bound{}, Bound{}, Warm{})
	if err != nil {
		return err
	}
	for _, r := range rs {
		err := ReadRange(ctx, opts, r, func(recs []engine.Record, _ []time.Time) error {
			for _, rec := range recs {
				if err := fn(rec.Value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
	}
	return nil
}

// HoldsRecords reports whether [from, to) of a partition holds a committed
// record, not only transaction markers: a consumer's committed offset stops
// before the markers that follow a transaction's last record.
func HoldsRecords(ctx context.Context, opts []kgo.Opt, topic string, partition int32, from, to int64) (bool, error) {
	found := false
	err := ReadRange(ctx, opts, PartRange{Topic: topic, Partition: partition, Warm: from, From: from, To: to},
		func(recs []engine.Record, _ []time.Time) error {
			found = found || len(recs) > 0
			return nil
		})
	return found, err
}
