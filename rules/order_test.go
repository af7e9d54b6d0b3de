package rules

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func orderedProposal(id, account, ad string, topic string, partition int32, offset int64, o Order) Proposal {
	return Proposal{ActionID: id, AccountID: account, AdID: ad, TS: Time(o.At), Type: "pause",
		Input: &Input{Topic: topic, Partition: partition, Offset: offset}, Order: &o}
}

// TestOrderKey: by At; external first at equal At; one entity's proposals
// by their input position and Seq; the key does not depend on the
// partition numbers of different entities.
func TestOrderKey(t *testing.T) {
	a := orderedProposal("a", "acc", "ad1", "m", 3, 900, Order{At: 1000})
	b := orderedProposal("b", "acc", "ad1", "m", 3, 901, Order{At: 1000})
	c := orderedProposal("c", "acc", "ad1", "m", 3, 901, Order{At: 1000, Seq: 1})
	x := orderedProposal("x", "acc", "", "act", 0, 5, Order{At: 1000, Ext: true})
	early := orderedProposal("e", "acc", "ad9", "m", 0, 99999, Order{At: 999})
	ps := []Proposal{c, b, x, a, early}
	slices.SortFunc(ps, func(p, q Proposal) int { return bytes.Compare(OrderKey(&p), OrderKey(&q)) })
	var got []string
	for _, p := range ps {
		got = append(got, p.ActionID)
	}
	if want := []string{"e", "x", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// Two ads at equal At: their order is the same whichever partitions
	// they lie on.
	p1 := orderedProposal("p1", "acc", "adA", "m", 0, 10, Order{At: 5})
	p2 := orderedProposal("p2", "acc", "adB", "m", 1, 3, Order{At: 5})
	q1 := orderedProposal("p1", "acc", "adA", "m", 2, 7, Order{At: 5})
	q2 := orderedProposal("p2", "acc", "adB", "m", 2, 8, Order{At: 5})
	if (bytes.Compare(OrderKey(&p1), OrderKey(&p2)) < 0) != (bytes.Compare(OrderKey(&q1), OrderKey(&q2)) < 0) {
		t.Fatal("the order of two ads at equal At depends on their partitions")
	}
}

// TestQueueOrderWhateverTheInterleaving is metamorphic: sources write
// proposals and progress records in their own order, stage 2 reads them in
// any interleaving; what the queue releases is always every proposal, in
// OrderKey order, none of them late.
func TestQueueOrderWhateverTheInterleaving(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(0, seed))
		sources := []Source{{"m", 0}, {"m", 1}, {"m", 2}, {"act", 0}}
		var logs [][]func(*Queue) []Proposal
		var all []Proposal
		for _, src := range sources {
			var log []func(*Queue) []Proposal
			at := int64(1_000_000)
			var off int64
			for batch := rng.IntN(8); batch >= 0; batch-- {
				for r := rng.IntN(5); r >= 0; r-- {
					at += int64(rng.IntN(3)) * 60_000 // equal times are common
					off++
					for seq := range rng.IntN(3) {
						ad := fmt.Sprintf("ad%d", rng.IntN(6))
						p := orderedProposal(fmt.Sprintf("%s-%d-%d", src, off, seq), fmt.Sprintf("acc%d", rng.IntN(2)), ad,
							src.Topic, src.Partition, off, Order{At: at, Seq: seq, Ext: src.Topic == "act"})
						all = append(all, p)
						log = append(log, func(q *Queue) []Proposal {
							if q.Add(p) {
								t.Fatalf("seed %d: %s is late", seed, p.ActionID)
							}
							return q.Ready()
						})
					}
				}
				m := Progress{Topic: src.Topic, Partition: src.Partition, At: at, Sources: len(sources)}
				log = append(log, func(q *Queue) []Proposal { q.Progress(m); return q.Ready() })
			}
			logs = append(logs, log)
		}
		q := NewQueue()
		var got []Proposal
		for {
			var open []int
			for i, l := range logs {
				if len(l) > 0 {
					open = append(open, i)
				}
			}
			if len(open) == 0 {
				break
			}
			i := open[rng.IntN(len(open))]
			got = append(got, logs[i][0](q)...)
			logs[i] = logs[i][1:]
		}
		for _, src := range sources {
			q.Progress(Progress{Topic: src.Topic, Partition: src.Partition, At: math.MinInt64, Sources: len(sources), Idle: true})
			got = append(got, q.Ready()...)
		}
		want := slices.Clone(all)
		slices.SortStableFunc(want, func(a, b Proposal) int { return bytes.Compare(OrderKey(&a), OrderKey(&b)) })
		if len(got) != len(want) {
			t.Fatalf("seed %d: released %d of %d proposals", seed, len(got), len(want))
		}
		for i := range want {
			if got[i].ActionID != want[i].ActionID {
				t.Fatalf("seed %d: proposal %d is %s, want %s", seed, i, got[i].ActionID, want[i].ActionID)
			}
		}
	}
}

// TestQueueWaitsForEverySource: nothing is released before every source is
// heard of, nor past the slowest one.
func TestQueueWaitsForEverySource(t *testing.T) {
	q := NewQueue()
	p := orderedProposal("p", "acc", "ad", "m", 0, 1, Order{At: 100})
	if q.Add(p) {
		t.Fatal("late")
	}
	q.Progress(Progress{Topic: "m", Partition: 0, At: 200, Sources: 2})
	if r := q.Ready(); len(r) != 0 {
		t.Fatalf("released %d before the second source was heard of", len(r))
	}
	q.Progress(Progress{Topic: "m", Partition: 1, At: 100, Sources: 2})
	if r := q.Ready(); len(r) != 0 {
		t.Fatalf("released %d with a source at 100, the proposal's own time", len(r))
	}
	q.Progress(Progress{Topic: "m", Partition: 1, At: 101, Sources: 2})
	if r := q.Ready(); len(r) != 1 {
		t.Fatalf("released %d once both sources passed 100, want 1", len(r))
	}
	if q.Frontier != 101 {
		t.Fatalf("frontier %d, want 101", q.Frontier)
	}
}

// TestQueueIdle: an idle source that never had a record holds nothing
// back; one within Lag of the others holds them back until it too passes
// or every source is idle; one further behind is passed by; and a proposal
// of a source that was passed by is late.
func TestQueueIdle(t *testing.T) {
	const hour = 3_600_000
	q := NewQueue()
	q.Lag = 2 * hour
	q.Progress(Progress{Topic: "act", Partition: 0, At: math.MinInt64, Sources: 3, Idle: true})
	q.Progress(Progress{Topic: "m", Partition: 0, At: 10 * hour, Sources: 3})
	q.Progress(Progress{Topic: "m", Partition: 1, At: 9 * hour, Sources: 3})
	q.Add(orderedProposal("a", "acc", "ad", "m", 0, 1, Order{At: 9 * hour}))
	if r := q.Ready(); len(r) != 0 {
		t.Fatal("released a proposal at the slowest source's own time")
	}
	// m/1 goes quiet at 9h, within the lag: it still holds m/0 back.
	q.Progress(Progress{Topic: "m", Partition: 1, At: math.MinInt64, Sources: 3, Idle: true})
	if r := q.Ready(); len(r) != 0 {
		t.Fatal("an idle source within the lag no longer holds the others back")
	}
	// m/0 goes quiet too: every source is idle, what waits is judged.
	q.Progress(Progress{Topic: "m", Partition: 0, At: math.MinInt64, Sources: 3, Idle: true})
	if r := q.Ready(); len(r) != 1 {
		t.Fatalf("every source idle: released %d, want 1", len(r))
	}
	// m/0 goes on to 12h: m/1, idle at 9h, is more than the lag behind.
	q.Progress(Progress{Topic: "m", Partition: 0, At: 12 * hour, Sources: 3})
	q.Add(orderedProposal("b", "acc", "ad", "m", 0, 2, Order{At: 11 * hour}))
	if r := q.Ready(); len(r) != 1 || r[0].ActionID != "b" {
		t.Fatalf("a source far behind and idle still holds the others back: released %v", r)
	}
	// m/1 comes back with a proposal at 9h30: late, judged at once.
	if !q.Add(orderedProposal("c", "acc", "ad2", "m", 1, 7, Order{At: 9*hour + hour/2})) {
		t.Fatal("a proposal behind the frontier is not late")
	}
	// And m/1 holds the others back again.
	q.Add(orderedProposal("d", "acc", "ad", "m", 0, 3, Order{At: 12 * hour}))
	if r := q.Ready(); len(r) != 0 {
		t.Fatalf("released %v while m/1, active again, is at 9h30", r)
	}
	// A proposal without Order is judged at once.
	if !q.Add(Proposal{ActionID: "x", AccountID: "acc", AdID: "ad"}) {
		t.Fatal("a proposal without order waits")
	}
}

// BenchmarkQueue is stage 2's ordering per proposal: queue it, then release
// it when its source's progress comes (4 sources, 64 proposals a batch).
func BenchmarkQueue(b *testing.B) {
	q := NewQueue()
	srcs := []Source{{"m", 0}, {"m", 1}, {"m", 2}, {"m", 3}}
	for _, s := range srcs {
		q.Progress(Progress{Topic: s.Topic, Partition: s.Partition, At: 0, Sources: len(srcs)})
	}
	var at, off int64
	released := 0
	for b.Loop() {
		s := srcs[off%4]
		off++
		if off%64 == 0 {
			at += 60_000
			for _, s := range srcs {
				q.Progress(Progress{Topic: s.Topic, Partition: s.Partition, At: at, Sources: len(srcs)})
			}
			released += len(q.Ready())
			q.Clean()
		}
		q.Add(orderedProposal("a", "acc", fmt.Sprintf("ad%d", off%100), s.Topic, s.Partition, off, Order{At: at}))
	}
	if b.N > 1000 && released == 0 {
		b.Fatal("nothing released")
	}
}
