package engine_test

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// gapSource delivers one partition's records from offset `from` in batches,
// can replay any range, and can abort its first commit.
type gapSource struct {
	recs       []engine.Record
	pos, batch int
	abortAt    int // abort this commit (counted from 1); 0: never
	commits    int
	replayed   int
	last       int // start of the batch in flight
}

func (s *gapSource) Poll(context.Context) ([]engine.Record, error) {
	if s.pos >= len(s.recs) {
		return nil, io.EOF
	}
	end := min(s.pos+s.batch, len(s.recs))
	s.last = s.pos
	out := s.recs[s.pos:end]
	s.pos = end
	return out, nil
}

func (s *gapSource) Commit(context.Context) error {
	s.commits++
	if s.commits == s.abortAt {
		s.pos = s.last // the aborted batch comes again
		return engine.ErrReset
	}
	return nil
}

func (s *gapSource) Replay(_ context.Context, _ string, _ int32, from, to int64, fn func([]engine.Record) error) error {
	for i := max(from, 0); i < to; i += 1000 {
		chunk := s.recs[i:min(i+1000, to)]
		s.replayed += len(chunk)
		if err := fn(chunk); err != nil {
			return err
		}
	}
	return nil
}

// output is one decision or proposal and the offset of its input.
type output struct {
	id     string
	offset int64
}

// txnSink keeps a batch's output only once the source commits it.
type txnSink struct {
	pending, committed []output
}

func (t *txnSink) Write(_ context.Context, o *engine.Output) error {
	t.pending = t.pending[:0]
	for _, d := range o.Decisions {
		t.pending = append(t.pending, output{d.DecisionID, d.Input.Offset})
	}
	for _, p := range o.Proposals {
		t.pending = append(t.pending, output{p.ActionID, p.Input.Offset})
	}
	return nil
}

func since(outs []output, from, to int64) []output {
	var r []output
	for _, o := range outs {
		if o.offset >= from && o.offset < to {
			r = append(r, o)
		}
	}
	return r
}

func (t *txnSink) commit() { t.committed = append(t.committed, t.pending...); t.pending = nil }

// committingSource wraps a gapSource so a successful commit moves the sink's
// pending output to committed, as a Kafka transaction would.
type committingSource struct {
	*gapSource
	sink *txnSink
}

func (c committingSource) Commit(ctx context.Context) error {
	if err := c.gapSource.Commit(ctx); err != nil {
		c.sink.pending = nil
		return err
	}
	c.sink.commit()
	return nil
}

func openStore(t *testing.T, fs vfs.FS) (*state.DB, engine.Store) {
	db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: fs}})
	if err != nil {
		t.Fatal(err)
	}
	return db, engine.StoreFunc(func(topic string, p int32) (engine.PartitionState, error) { return db.Partition(topic, p) })
}

func runGap(t *testing.T, rs *rules.RuleSet, fs vfs.FS, src *gapSource) ([]output, *gapSource) {
	db, store := openStore(t, fs)
	defer db.Close()
	sink := &txnSink{}
	eng, err := engine.New(rs, committingSource{src, sink}, sink, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sink.committed, src
}

// TestReplayGap: a node whose state is behind where its input resumes (it
// died after committing output and before committing state, or took the
// partition over from another node) replays the gap silently, and its
// output from there on is what one uninterrupted run writes.
func TestReplayGap(t *testing.T) {
	rs := defaultRules(t)
	recs := partitioned(history(t), 1)[0]
	want, _ := runGap(t, rs, vfs.NewMem(), &gapSource{recs: recs, batch: 500})
	if len(want) == 0 {
		t.Fatal("no output: the test would prove nothing")
	}

	fs := vfs.NewMem()
	cut, resume := 3000, 9000
	first, _ := runGap(t, rs, fs, &gapSource{recs: recs[:cut], batch: 500})
	rest, src := runGap(t, rs, fs, &gapSource{recs: recs, pos: resume, batch: 500})
	if src.replayed != resume-cut {
		t.Fatalf("replayed %d records, want the gap of %d", src.replayed, resume-cut)
	}
	end := int64(len(recs))
	if !slices.Equal(first, since(want, 0, int64(cut))) {
		t.Fatalf("before the cut: %d outputs, want %d", len(first), len(since(want, 0, int64(cut))))
	}
	if len(rest) == 0 || !slices.Equal(rest, since(want, int64(resume), end)) {
		t.Fatalf("after the resume point: %d outputs, want %d", len(rest), len(since(want, int64(resume), end)))
	}
}

// TestResetOnAbort: a batch whose commit is aborted (ErrReset) leaves no
// trace: its state is forgotten, it is delivered again, and the committed
// output equals an uninterrupted run's.
func TestResetOnAbort(t *testing.T) {
	rs := defaultRules(t)
	recs := partitioned(history(t), 1)[0]
	want, _ := runGap(t, rs, vfs.NewMem(), &gapSource{recs: recs, batch: 700})
	src := &gapSource{recs: recs, batch: 700, abortAt: 3}
	got, _ := runGap(t, rs, vfs.NewMem(), src)
	if src.commits <= src.abortAt {
		t.Fatalf("%d commits: the abort never happened", src.commits)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after an aborted batch: %d outputs, want %d", len(got), len(want))
	}
}
