package engine_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/jsonl"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestScenarios runs the scenario files in testdata: rules, events and
// proposals in, the engine's output side by side. Regenerate the expected
// output with: go test ./engine -run TestScenarios -rewrite
//
// Commands:
//
//	rules [version=N]      the rule set (YAML) for what follows
//	events                 metric events, one JSON object a line, appended to partition ad-metrics/0
//	actions                proposals, one JSON object a line, to partition ad-actions/0
//	restart                close the state database and open it again: only committed state survives
//	ad id=AD               print what the engine keeps for an ad
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := newHarness(t)
		defer h.close()
		datadriven.RunTest(t, path, h.run)
	})
}

type harness struct {
	t       *testing.T
	fs      vfs.FS
	db      *state.DB
	rs      *rules.RuleSet
	offsets map[string]int64
	parts   map[string]*state.Partition
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, fs: vfs.NewMem(), offsets: map[string]int64{}}
	h.open()
	return h
}

func (h *harness) open() {
	db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: h.fs}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db, h.parts = db, map[string]*state.Partition{}
}

func (h *harness) close() { h.db.Close() }

func (h *harness) store() engine.Store {
	return engine.StoreFunc(func(topic string, partition int32) (engine.PartitionState, error) {
		k := fmt.Sprintf("%s/%d", topic, partition)
		if p, ok := h.parts[k]; ok {
			return p, nil
		}
		p, err := h.db.Partition(topic, partition)
		if err == nil {
			h.parts[k] = p
		}
		return p, err
	})
}

func (h *harness) run(t *testing.T, td *datadriven.TestData) string {
	switch td.Cmd {
	case "rules":
		var version int
		if td.HasArg("version") {
			td.ScanArgs(t, "version", &version)
		}
		doc, err := config.Load("scenario.yaml", []byte(td.Input), config.Options{})
		if err != nil {
			return err.Error()
		}
		rs, err := rules.Compile(doc, int64(version))
		if err != nil {
			return err.Error()
		}
		h.rs = rs
		return fmt.Sprintf("ok: %d rules, windows %v", len(rs.RuleIDs()), rs.Windows())
	case "events":
		return h.feed(t, "ad-metrics", td.Input)
	case "actions":
		return h.feed(t, "ad-actions", td.Input)
	case "restart":
		h.close()
		h.open()
		return "ok"
	case "ad":
		var id string
		td.ScanArgs(t, "id", &id)
		p, err := h.store().Partition("ad-metrics", 0)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Ad(id)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "lifetime: impressions=%d clicks=%d conversions=%d events=%d spend=%g revenue=%g\n",
			st.Life.Impressions, st.Life.Clicks, st.Life.Conversions, st.Life.Events, st.Life.Spend, st.Life.Revenue)
		fmt.Fprintf(&b, "created_at=%s (from created_at: %v) max_ts=%s\n", rules.FormatTime(st.CreatedAt), st.HasCreatedAt, rules.FormatTime(st.MaxTS))
		for _, bk := range st.Buckets {
			fmt.Fprintf(&b, "bucket %s impressions=%d spend=%g\n", rules.FormatTime(bk.Minute*60000), bk.Impressions, bk.Spend)
		}
		fmt.Fprintf(&b, "event ids remembered: %d\n", len(st.Seen))
		for _, m := range st.Marks {
			fmt.Fprintf(&b, "mark %s %s\n", m.RuleID, rules.FormatTime(m.Last))
		}
		return b.String()
	}
	t.Fatalf("unknown command %q", td.Cmd)
	return ""
}

// feed runs the lines through an engine as one batch and renders the output.
func (h *harness) feed(t *testing.T, topic, input string) string {
	if h.rs == nil {
		t.Fatal("no rules yet")
	}
	var recs []engine.Record
	for _, line := range strings.Split(input, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		recs = append(recs, engine.Record{Topic: topic, Offset: h.offsets[topic], Value: []byte(line)})
		h.offsets[topic]++
	}
	sink := &jsonl.Sink{KeepProposals: true}
	var out strings.Builder
	obs := observerFunc(func(s engine.Stats) {
		if s.Duplicates > 0 {
			fmt.Fprintf(&out, "duplicates: %d\n", s.Duplicates)
		}
	})
	rec := &recorder{out: &out}
	eng, err := engine.New(h.rs, jsonl.Records(recs), multiSink{sink, rec}, h.store(),
		engine.WithObserver(obs), engine.WithProposalTopics("ad-actions"))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 {
		return "(nothing)"
	}
	return out.String()
}

type observerFunc func(engine.Stats)

func (f observerFunc) Observe(s engine.Stats) { f(s) }

type multiSink []engine.Sink

func (m multiSink) Write(ctx context.Context, o *engine.Output) error {
	for _, s := range m {
		if err := s.Write(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// recorder renders output compactly, with the volatile ids left out.
type recorder struct{ out *strings.Builder }

func (r *recorder) Write(_ context.Context, o *engine.Output) error {
	w := r.out
	for _, d := range o.Decisions {
		fmt.Fprintf(w, "decision %s %s ad=%s at %s (offset %d) v%d\n", d.RuleID, d.Type, d.AdID, rules.FormatTime(int64(d.TS)), d.Input.Offset, d.RulesetVersion)
		for _, k := range slices.Sorted(maps.Keys(d.Values)) {
			fmt.Fprintf(w, "  %s = %v\n", k, d.Values[k])
		}
		if d.VideoID != "" {
			fmt.Fprintf(w, "  video_id = %s\n", d.VideoID)
		}
		for _, e := range d.Explain {
			fmt.Fprintf(w, "  | %s\n", e)
		}
	}
	for _, p := range o.Proposals {
		fmt.Fprintf(w, "proposal %s %s ad=%s at %s", p.Source, p.Type, p.AdID, rules.FormatTime(int64(p.TS)))
		if p.OldBudget != nil {
			fmt.Fprintf(w, " budget %g -> %g", *p.OldBudget, *p.NewBudget)
		}
		fmt.Fprintln(w)
	}
	for _, v := range o.Verdicts {
		fmt.Fprintf(w, "verdict %s %s %s", v.ActionID, v.Type, v.Status)
		if v.Reason != "" {
			fmt.Fprintf(w, " %s", v.Reason)
		}
		if v.FinalBudget != nil {
			fmt.Fprintf(w, " final_budget=%g", *v.FinalBudget)
		}
		if v.ExecuteAfter != nil {
			fmt.Fprintf(w, " jitter=%dms", int64(*v.ExecuteAfter)-int64(v.TS))
		}
		fmt.Fprintln(w)
	}
	for _, d := range o.DeadLetters {
		fmt.Fprintf(w, "dlq offset %d: %s\n", d.Input.Offset, d.Reason)
	}
	for _, e := range o.Errors {
		fmt.Fprintf(w, "rule error %s ad=%s: %s\n", e.RuleID, e.AdID, e.Err)
	}
	return nil
}
