package rules

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// Order places a proposal in stage 2's judging order (docs/guards.md,
// "The order of judgement"). Stage 1 sets it on the rules' proposals, the
// relay on external ones; stage 2 judges the proposals of an account in the
// order of OrderKey, each once every source partition has passed its At.
type Order struct {
	// At is the event time its source partition had reached when the
	// proposal was made: the largest ts read on that partition so far, the
	// triggering record included. Every later proposal of the same source
	// has an At at least as large.
	At int64 `json:"at"`
	// Ext marks an external proposal (relayed from the actions topic);
	// at equal At, external proposals go first.
	Ext bool `json:"ext,omitempty"`
	// Seq is its place among the proposals of one input record (rule
	// order).
	Seq int `json:"seq,omitempty"`
}

// OrderKey returns the bytes whose order is stage 2's judging order: At,
// external before the rules', then a hash of the entity that made the
// proposal (the account of an external one, the ad of a rule's) and the
// entity itself, then its input record and Seq. Everything in it but the
// input position is the same however the inputs are partitioned, and the
// position only orders the proposals of one entity, whose records all lie
// in one partition in their own order: so the order does not depend on
// partitioning. The hash spreads ties at equal At fairly over entities
// instead of by name. A proposal without Order sorts by its ts and input.
func OrderKey(p *Proposal) []byte {
	var o Order
	if p.Order != nil {
		o = *p.Order
	} else {
		o.At = int64(p.TS)
	}
	group := p.AdID
	kind := byte(1)
	if o.Ext {
		group, kind = p.AccountID, 0
	}
	b := make([]byte, 0, 64+len(group))
	b = binary.BigEndian.AppendUint64(b, uint64(o.At)^(1<<63))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, IDHash(group))
	b = binary.AppendUvarint(b, uint64(len(group)))
	b = append(b, group...)
	if p.Input != nil {
		b = binary.AppendUvarint(b, uint64(len(p.Input.Topic)))
		b = append(b, p.Input.Topic...)
		b = binary.BigEndian.AppendUint32(b, uint32(p.Input.Partition))
		b = binary.BigEndian.AppendUint64(b, uint64(p.Input.Offset)^(1<<63))
	}
	return binary.BigEndian.AppendUint32(b, uint32(o.Seq))
}

// Progress is a source partition's progress as stage 2 sees it: written by
// stage 1 (and the relay) to every partition of stage 2's input after each
// batch, in the same transaction as the batch's proposals. Every later
// proposal of the source has Order.At >= At.
type Progress struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	At        int64  `json:"at"`
	// Sources is how many source partitions there are (the partitions of
	// the metrics and actions topics): stage 2 judges nothing until it has
	// heard of all of them.
	Sources int `json:"sources"`
	// Idle says the source had no record for a while (a wall-clock
	// setting of the node): stage 2 stops waiting for it until it has
	// records again. The one place where timing can change verdicts.
	Idle bool `json:"idle,omitempty"`
}

// progressPrefix starts the value of a progress record; proposals start with
// {"action_id", so the two never mix.
var progressPrefix = []byte(`{"progress":`)

// IsProgress reports whether a record of stage 2's input is a progress
// record.
func IsProgress(value []byte) bool { return bytes.HasPrefix(value, progressPrefix) }

// EncodeProgress returns the record value of m.
func EncodeProgress(m Progress) []byte {
	b, _ := json.Marshal(struct {
		Progress Progress `json:"progress"`
	}{m})
	return b
}

// DecodeProgress parses a progress record.
func DecodeProgress(value []byte) (Progress, error) {
	var v struct {
		Progress *Progress `json:"progress"`
	}
	if err := json.Unmarshal(value, &v); err != nil || v.Progress == nil {
		return Progress{}, &DecodeError{Reason: "not a valid progress record"}
	}
	return *v.Progress, nil
}

// Queue is what stage 2 keeps of one partition of its input to judge
// proposals in order: the progress of each source partition, and the
// proposals waiting for the slowest of them. The engine adds what it reads
// and judges what Ready returns; the store persists the Queue with the
// partition's offset.
type Queue struct {
	// Expect is the number of source partitions to wait for.
	Expect int
	// Sources is the progress of each source heard of.
	Sources map[Source]SourceProgress
	// Frontier: every proposal with At below it has been judged; one that
	// arrives below it is late and is judged at once.
	Frontier int64
	// Lag is how far (ms of event time) an idle source may lie behind the
	// most advanced active one and still hold the others back; further
	// behind, it is passed by. Set by the engine, not stored.
	Lag     int64
	pending []Pending // sorted by Key

	// What changed since the store last wrote the Queue.
	Added   []Pending // proposals queued
	Removed [][]byte  // keys of queued proposals that were judged
	Changed bool      // Expect, Sources or Frontier changed
}

// Source names a source partition.
type Source struct {
	Topic     string
	Partition int32
}

// SourceProgress is the progress of one source.
type SourceProgress struct {
	At   int64
	Idle bool
}

// Pending is a queued proposal and its OrderKey.
type Pending struct {
	Key []byte
	P   Proposal
}

// NewQueue returns an empty Queue.
func NewQueue() *Queue {
	return &Queue{Sources: map[Source]SourceProgress{}, Frontier: math.MinInt64}
}

// Load puts back a queued proposal read from the store (in any order).
func (q *Queue) Load(p Pending) {
	i, _ := slices.BinarySearchFunc(q.pending, p.Key, func(x Pending, k []byte) int { return bytes.Compare(x.Key, k) })
	q.pending = slices.Insert(q.pending, i, p)
}

// Len is the number of proposals waiting.
func (q *Queue) Len() int { return len(q.pending) }

// Progress records a source's progress.
func (q *Queue) Progress(m Progress) {
	src := Source{m.Topic, m.Partition}
	cur, ok := q.Sources[src]
	next := SourceProgress{At: m.At, Idle: m.Idle}
	if ok {
		next.At = max(cur.At, m.At)
	}
	if m.Sources > q.Expect {
		q.Expect, q.Changed = m.Sources, true
	}
	if !ok || next != cur {
		q.Sources[src], q.Changed = next, true
	}
}

// Add takes a proposal read from stage 2's input. It returns true when the
// proposal is late (it has no Order, or its At is below the Frontier: its
// source was idle): the caller judges it at once. Otherwise it waits in the
// Queue until Ready returns it.
func (q *Queue) Add(p Proposal) (late bool) {
	if p.Order == nil {
		return true
	}
	if p.Input != nil {
		src := Source{p.Input.Topic, p.Input.Partition}
		// The source has reached At, and a proposal says it is not idle.
		cur, ok := q.Sources[src]
		next := SourceProgress{At: p.Order.At}
		if ok {
			next.At = max(cur.At, p.Order.At)
		}
		if !ok || next != cur {
			q.Sources[src], q.Changed = next, true
		}
	}
	if p.Order.At < q.Frontier {
		return true
	}
	e := Pending{Key: OrderKey(&p), P: p}
	q.Load(e)
	q.Added = append(q.Added, e)
	return false
}

// frontier is the At below which no proposal can arrive any more (but late
// ones): the least At of the sources, where an idle source counts only
// while it is within Lag of the most advanced active one (one that never
// had a record counts not at all); math.MaxInt64 when every source is idle
// (nothing more is coming: judge what waits); math.MinInt64 until a
// progress record said how many sources there are and every one of them
// was heard of.
func (q *Queue) frontier() int64 {
	if q.Expect == 0 || len(q.Sources) < q.Expect {
		return math.MinInt64
	}
	top, active := int64(math.MinInt64), false
	for _, m := range q.Sources {
		if !m.Idle {
			top, active = max(top, m.At), true
		}
	}
	if !active {
		return math.MaxInt64
	}
	f := int64(math.MaxInt64)
	for _, m := range q.Sources {
		if m.Idle && (m.At == math.MinInt64 || m.At < top-q.Lag) {
			continue // gone quiet far behind: waiting for it would stall the rest
		}
		f = min(f, m.At)
	}
	return f
}

// Ready removes and returns, in order, the proposals whose turn has come:
// those whose At lies below every source's progress.
func (q *Queue) Ready() []Proposal {
	f := q.frontier()
	n := 0
	for n < len(q.pending) && q.pending[n].P.Order.At < f {
		n++
	}
	if f > q.Frontier && f != math.MaxInt64 {
		q.Frontier, q.Changed = f, true
	}
	if n == 0 {
		return nil
	}
	out := make([]Proposal, n)
	for i := range n {
		out[i] = q.pending[i].P
		q.Removed = append(q.Removed, q.pending[i].Key)
	}
	if f == math.MaxInt64 {
		// Every source is idle: what was judged sets the frontier.
		if last := q.pending[n-1].P.Order.At; last > q.Frontier {
			q.Frontier, q.Changed = last, true
		}
	}
	q.pending = slices.Delete(q.pending, 0, n)
	return out
}

// Clean forgets what changed; the store calls it after writing.
func (q *Queue) Clean() {
	q.Added, q.Removed, q.Changed = q.Added[:0], q.Removed[:0], false
}

// String names a source as topic/partition.
func (s Source) String() string {
	return s.Topic + "/" + strconv.Itoa(int(s.Partition))
}
