package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// history generates a noisy synthetic history once per test binary.
func history(t testing.TB) [][]byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := gen.Events(&b, gen.Options{Seed: 7, BadPct: 2, DupPct: 3, EpochMsPct: 30}); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
}

func defaultRules(t testing.TB) *rules.RuleSet {
	t.Helper()
	data, err := os.ReadFile("../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := config.Load("examples/rules.yaml", data, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(doc, 1)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// partitioned splits lines by ad over n partitions, as a producer keying by
// ad_id would; lines without a readable ad go to partition 0.
func partitioned(lines [][]byte, n int) [][]engine.Record {
	parts := make([][]engine.Record, n)
	for _, l := range lines {
		var probe struct {
			AdID string `json:"ad_id"`
		}
		json.Unmarshal(l, &probe)
		h := fnv.New32a()
		h.Write([]byte(probe.AdID))
		p := int(h.Sum32() % uint32(n))
		if probe.AdID == "" {
			p = 0
		}
		parts[p] = append(parts[p], engine.Record{Topic: "ad-metrics", Partition: int32(p), Offset: int64(len(parts[p])), Value: l})
	}
	return parts
}

// scriptedSource delivers records of several partitions in batches whose
// sizes and interleaving come from a seeded random source, starting from
// each partition's committed offset, as a Kafka consumer resuming would.
type scriptedSource struct {
	parts [][]engine.Record
	pos   []int
	rnd   *rand.Rand
	max   int
}

func newScripted(parts [][]engine.Record, committed func(p int) int64, rnd *rand.Rand, max int) *scriptedSource {
	s := &scriptedSource{parts: parts, pos: make([]int, len(parts)), rnd: rnd, max: max}
	for p := range parts {
		if off := committed(p); off > 0 {
			s.pos[p] = int(off)
		}
	}
	return s
}

func (s *scriptedSource) Poll(ctx context.Context) ([]engine.Record, error) {
	// Take up to max records of each partition, then interleave them at
	// random; each partition keeps its own order.
	queues := make([][]engine.Record, len(s.parts))
	total := 0
	for p := range s.parts {
		n := s.rnd.IntN(s.max) + 1
		end := min(s.pos[p]+n, len(s.parts[p]))
		queues[p] = s.parts[p][s.pos[p]:end]
		s.pos[p] = end
		total += len(queues[p])
	}
	if total == 0 {
		return nil, io.EOF
	}
	out := make([]engine.Record, 0, total)
	for len(out) < total {
		p := s.rnd.IntN(len(queues))
		if len(queues[p]) > 0 {
			out = append(out, queues[p][0])
			queues[p] = queues[p][1:]
		}
	}
	return out, nil
}

func (s *scriptedSource) Commit(context.Context) error { return nil }

// collect is a sink that keeps decisions and verdicts as JSON lines, and can
// be told to crash after writing a given batch (before the state commits).
type collect struct {
	decisions []string
	crashAt   int
	batches   int
}

var errCrash = errors.New("crash")

func (c *collect) Write(_ context.Context, o *engine.Output) error {
	for _, d := range o.Decisions {
		d.Input = rules.Input{}
		b, _ := engine.Encode(d)
		c.decisions = append(c.decisions, string(b))
	}
	for _, p := range o.Proposals {
		p.Input = nil
		b, _ := engine.Encode(p)
		c.decisions = append(c.decisions, string(b))
	}
	c.batches++
	if c.crashAt > 0 && c.batches == c.crashAt {
		return errCrash
	}
	return nil
}

// run processes parts with the given batching, restarting the node (closing
// and reopening Pebble) after a crash injected at batch crashAt.
func run(t *testing.T, rs *rules.RuleSet, parts [][]engine.Record, seed uint64, maxBatch, crashAt int) []string {
	fs := vfs.NewMem()
	rnd := rand.New(rand.NewPCG(seed, 1))
	sink := &collect{crashAt: crashAt}
	for attempt := 0; ; attempt++ {
		db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: fs}})
		if err != nil {
			t.Fatal(err)
		}
		open := map[int32]*state.Partition{}
		store := engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) {
			if ps, ok := open[p]; ok {
				return ps, nil
			}
			ps, err := db.Partition(topic, p)
			open[p] = ps
			return ps, err
		})
		committed := func(p int) int64 {
			ps, err := store.Partition("ad-metrics", int32(p))
			if err != nil {
				t.Fatal(err)
			}
			return ps.Offset()
		}
		src := newScripted(parts, committed, rnd, maxBatch)
		eng, err := engine.New(rs, src, sink, store)
		if err != nil {
			t.Fatal(err)
		}
		err = eng.Run(context.Background())
		db.Close()
		if errors.Is(err, errCrash) && attempt == 0 {
			continue // restart from what Pebble committed
		}
		if err != nil {
			t.Fatal(err)
		}
		return sink.decisions
	}
}

// dedupe keeps the first line of each decision_id (or action_id), as a consumer deduping on
// the deterministic ids does, and sorts them.
func dedupe(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		id := l[:strings.Index(l, ",")]
		if !seen[id] {
			seen[id] = true
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// TestMetamorphic: the same log, split over different partition counts,
// batch sizes and interleavings, with a crash and restart at a random batch,
// gives the same decisions (ids, values, explain traces), each once after
// dedupe on the deterministic id.
func TestMetamorphic(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("ADRULES_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (replay with ADRULES_SEED=%d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, 2))
	lines := history(t)
	rs := defaultRules(t)
	want := dedupe(run(t, rs, partitioned(lines, 1), 1, len(lines), 0))
	if len(want) == 0 {
		t.Fatal("the reference run made no decisions: the test would prove nothing")
	}
	for i := range 6 {
		n := 1 + rnd.IntN(6)
		maxBatch := 1 + rnd.IntN(2000)
		crashAt := rnd.IntN(8)
		got := run(t, rs, partitioned(lines, n), rnd.Uint64(), maxBatch, crashAt)
		if d := dedupe(got); !slices.Equal(d, want) {
			for _, x := range d {
				t.Logf("got  %.300s", x)
			}
			for _, x := range want {
				t.Logf("want %.300s", x)
			}
			t.Fatalf("run %d (partitions %d, batches up to %d, crash at batch %d): %d decisions, want %d",
				i, n, maxBatch, crashAt, len(d), len(want))
		}
	}
}

// TestDeterministicPartitionOrder: one partitioning and batching always
// writes byte-identical output, in the same order.
func TestDeterministicPartitionOrder(t *testing.T) {
	lines := history(t)
	rs := defaultRules(t)
	a := run(t, rs, partitioned(lines, 4), 9, 300, 0)
	b := run(t, rs, partitioned(lines, 4), 9, 300, 0)
	if !slices.Equal(a, b) {
		t.Fatal("the same input gave different output")
	}
}
