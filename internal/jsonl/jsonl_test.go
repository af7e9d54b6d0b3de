package jsonl_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/jsonl"
	"github.com/adrules/adrules/rules"
)

var (
	_ engine.Source = (*jsonl.Source)(nil)
	_ engine.Sink   = (*jsonl.Sink)(nil)
)

// rec is a record as the tests expect it: offset and value.
type rec struct {
	Offset int64
	Value  string
}

// drain polls src until io.EOF and returns each batch, copying the values
// (the next Poll reuses their memory).
func drain(t *testing.T, src engine.Source) [][]rec {
	t.Helper()
	var batches [][]rec
	for i := 0; ; i++ {
		if i > 1e6 {
			t.Fatal("Poll never returned io.EOF")
		}
		recs, err := src.Poll(context.Background())
		if errors.Is(err, io.EOF) {
			if len(recs) != 0 {
				t.Fatalf("Poll returned %d records with io.EOF", len(recs))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Fatal("Poll returned no records and no error")
		}
		var b []rec
		for _, r := range recs {
			b = append(b, rec{r.Offset, string(r.Value)})
		}
		batches = append(batches, b)
	}
	// Drained stays drained.
	if recs, err := src.Poll(context.Background()); !errors.Is(err, io.EOF) || len(recs) != 0 {
		t.Fatalf("Poll after io.EOF = %d records, %v; want io.EOF", len(recs), err)
	}
	return batches
}

func TestSourceLines(t *testing.T) {
	long := strings.Repeat("x", 3<<20+17) // three times bufio's 1 MiB buffer
	exact := strings.Repeat("y", 1<<20)   // exactly the buffer, then '\n'
	for _, tc := range []struct {
		name  string
		in    string
		want  []rec
		lines int64
	}{
		{"empty", "", nil, 0},
		{"one line", `{"a":1}` + "\n", []rec{{0, `{"a":1}`}}, 1},
		{"no final newline", "a\nb", []rec{{0, "a"}, {1, "b"}}, 2},
		{"crlf", "a\r\nb\r\n\r\nc\r\n", []rec{{0, "a"}, {1, "b"}, {3, "c"}}, 4},
		{"crlf without final newline", "a\r\nb\r", []rec{{0, "a"}, {1, "b"}}, 2},
		{
			"blank lines count as offsets", "\n\na\n \t \nb\n\r\n\n  c  \n\n",
			[]rec{{2, "a"}, {4, "b"}, {7, "  c  "}}, 9,
		},
		{"only blank lines", "\n\n \n", nil, 3},
		{"inner spaces and \\r kept", " a\rb \n", []rec{{0, " a\rb "}}, 1},
		{"longer than the buffer", "a\n" + long + "\nb", []rec{{0, "a"}, {1, long}, {2, "b"}}, 3},
		{"longer than the buffer, last, no newline", "\n" + long, []rec{{1, long}}, 2},
		{"exactly the buffer", exact + "\n" + exact + "\r\n" + exact, []rec{{0, exact}, {1, exact}, {2, exact}}, 3},
	} {
		readers := map[string]func(string) io.Reader{
			"whole":    func(s string) io.Reader { return strings.NewReader(s) },
			"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
			"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		}
		for rname, r := range readers {
			if rname == "one byte" && len(tc.in) > 1<<16 {
				continue // correct but slow
			}
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				src := jsonl.NewSource(r(tc.in), "in.jsonl", 0)
				var got []rec
				for _, b := range drain(t, src) {
					got = append(got, b...)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("records:\n got %s\nwant %s", short(got), short(tc.want))
				}
				if src.Read != tc.lines {
					t.Errorf("Read = %d, want %d", src.Read, tc.lines)
				}
			})
		}
	}
}

// short prints records with long values abbreviated.
func short(rs []rec) string {
	var b strings.Builder
	for _, r := range rs {
		v := r.Value
		if len(v) > 20 {
			v = fmt.Sprintf("%s…(%d bytes)", v[:10], len(v))
		}
		fmt.Fprintf(&b, "{%d %q} ", r.Offset, v)
	}
	return b.String()
}

func TestSourceBatches(t *testing.T) {
	var in strings.Builder
	for i := range 10 {
		fmt.Fprintf(&in, `{"n":%d}`+"\n", i)
	}
	for _, tc := range []struct {
		batch int
		sizes []int
	}{
		{1, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{3, []int{3, 3, 3, 1}},
		{5, []int{5, 5}},
		{10, []int{10}},
		{11, []int{10}},
		{0, []int{10}},  // default 8192
		{-1, []int{10}}, // default 8192
	} {
		t.Run(fmt.Sprint("batch=", tc.batch), func(t *testing.T) {
			batches := drain(t, jsonl.NewSource(strings.NewReader(in.String()), "in", tc.batch))
			var sizes []int
			var off int64
			for _, b := range batches {
				sizes = append(sizes, len(b))
				for _, r := range b {
					if r.Offset != off || r.Value != fmt.Sprintf(`{"n":%d}`, off) {
						t.Fatalf("record %+v, want offset %d", r, off)
					}
					off++
				}
			}
			if !slices.Equal(sizes, tc.sizes) {
				t.Errorf("batch sizes %v, want %v", sizes, tc.sizes)
			}
		})
	}

	t.Run("default is 8192", func(t *testing.T) {
		in := strings.Repeat("{}\n", 8192+5)
		batches := drain(t, jsonl.NewSource(strings.NewReader(in), "in", 0))
		if len(batches) != 2 || len(batches[0]) != 8192 || len(batches[1]) != 5 {
			t.Errorf("%d batches, want 8192 and 5 records", len(batches))
		}
	})

	t.Run("blank lines", func(t *testing.T) {
		in := "a\n\n\nb\n\nc\nd\n\n\n\ne\n"
		batches := drain(t, jsonl.NewSource(strings.NewReader(in), "in", 2))
		var all []rec
		for _, b := range batches {
			if len(b) > 2 {
				t.Errorf("batch of %d records, want at most 2", len(b))
			}
			all = append(all, b...)
		}
		want := []rec{{0, "a"}, {3, "b"}, {5, "c"}, {6, "d"}, {10, "e"}}
		if !slices.Equal(all, want) {
			t.Errorf("records %v, want %v", all, want)
		}
	})
}

// TestSourceRecords: topic and partition are set, and a record's value
// cannot be grown into its neighbour's bytes.
func TestSourceRecords(t *testing.T) {
	src := jsonl.NewSource(strings.NewReader("ab\ncd\n"), "file.jsonl", 10)
	recs, err := src.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for i, r := range recs {
		if r.Topic != "file.jsonl" || r.Partition != 0 || r.Key != nil || r.Offset != int64(i) {
			t.Errorf("record %d = %+v", i, r)
		}
	}
	_ = append(recs[0].Value, "XY"...)
	if string(recs[1].Value) != "cd" {
		t.Errorf("appending to record 0 changed record 1 to %q", recs[1].Value)
	}
	if err := src.Commit(context.Background()); err != nil {
		t.Errorf("Commit = %v", err)
	}
}

func TestSourceErrors(t *testing.T) {
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		src := jsonl.NewSource(strings.NewReader("a\n"), "in", 0)
		if _, err := src.Poll(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Poll with a cancelled context = %v, want context.Canceled", err)
		}
		// Nothing was consumed.
		if b := drain(t, src); len(b) != 1 || !slices.Equal(b[0], []rec{{0, "a"}}) {
			t.Errorf("after the cancelled Poll: %v", b)
		}
	})
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		src := jsonl.NewSource(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom)), "in.jsonl", 0)
		_, err := src.Poll(context.Background())
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "in.jsonl") {
			t.Errorf("Poll = %v, want boom wrapped with the file name", err)
		}
	})
}

// growing is a file that is appended to after it was read to the end.
type growing struct{ reads int }

func (g *growing) Read(p []byte) (int, error) {
	g.reads++
	switch g.reads {
	case 1:
		return copy(p, "a\n"), io.EOF
	case 2:
		return 0, io.EOF
	default:
		return copy(p, "b\n"), nil
	}
}

// TestSourceStaysDrained: once Poll has returned io.EOF it keeps returning
// it, even when the reader would give more.
func TestSourceStaysDrained(t *testing.T) {
	src := jsonl.NewSource(&growing{}, "in", 0)
	b := drain(t, src)
	if len(b) != 1 || !slices.Equal(b[0], []rec{{0, "a"}}) {
		t.Errorf("batches %v, want only a", b)
	}
	for range 3 {
		if recs, err := src.Poll(context.Background()); !errors.Is(err, io.EOF) {
			t.Fatalf("Poll after io.EOF = %d records, %v", len(recs), err)
		}
	}
}

func TestRecords(t *testing.T) {
	recs := []engine.Record{{Topic: "t", Offset: 4, Value: []byte("x")}, {Topic: "t", Offset: 9, Value: []byte("y")}}
	src := jsonl.Records(recs)
	got, err := src.Poll(context.Background())
	if err != nil || len(got) != 2 || got[0].Offset != 4 || got[1].Offset != 9 {
		t.Fatalf("Poll = %v, %v; want both records", got, err)
	}
	if _, err := src.Poll(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("second Poll = %v, want io.EOF", err)
	}
	if err := src.Commit(context.Background()); err != nil {
		t.Errorf("Commit = %v", err)
	}
	if _, err := jsonl.Records(nil).Poll(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("Poll of no records = %v, want io.EOF", err)
	}
}

func ptr[T any](v T) *T { return &v }

// explain holds every character that json.Marshal escapes for HTML.
const explain = `ctr_1h > 0.02 && spend < 10 => true <b>&amp;</b>`

func output() *engine.Output {
	in := rules.Input{Topic: "metrics", Partition: 2, Offset: 41}
	prop := rules.Proposal{
		ActionID: "a1", TS: rules.Time(1793520000000), AccountID: "act", AdID: "ad1", Type: "budget_change",
		OldBudget: ptr(100.0), NewBudget: ptr(150.0), Source: "rule:scale", RulesetVersion: 3, Input: &in,
	}
	return &engine.Output{
		Decisions: []rules.Decision{
			{
				DecisionID: "d1", RuleID: "winner", RulesetVersion: 3, RulesetSHA256: "abc", Type: "alert",
				AccountID: "act", AdID: "ad1", EventID: "e1", TS: rules.Time(1793520000000), Input: in,
				Values: map[string]any{"ctr": 0.05, "name": "<x>"}, Explain: []string{explain, "b"},
			},
			{DecisionID: "d2", RuleID: "loser", Type: "pause", AccountID: "act", AdID: "ad2", EventID: "e2", TS: rules.Time(1793520060000), Input: in, Explain: []string{}},
		},
		Proposals: []rules.Proposal{prop},
		Verdicts: []rules.Verdict{
			{Proposal: prop, Status: "approved", FinalBudget: ptr(149.5), ExecuteAfter: ptr(rules.Time(1793520090000)), RulesetVersion: 3, RulesetSHA256: "abc"},
			{Proposal: prop, Status: "rejected", Reason: "rate_limit_hour", RulesetVersion: 3, RulesetSHA256: "abc"},
		},
		DeadLetters: []engine.DeadLetter{
			{Input: in, Key: []byte("k1"), Value: []byte(`{"bad": "<&>"}`), Reason: "ts: missing"},
			{Input: in, Value: []byte{0xff, 0xfe, 'a', 0}, Reason: "not JSON"},
			{Input: in, Reason: "empty"},
		},
		Errors: []rules.RuleError{{RuleID: "r1", AdID: "ad1", Err: "x"}, {RuleID: "r2"}, {RuleID: "r1"}},
	}
}

// lines splits JSON Lines output, checking each line is one JSON object.
func lines(t *testing.T, name string, b []byte) [][]byte {
	t.Helper()
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s: output does not end in a newline: %q", name, b)
	}
	ls := bytes.Split(b[:len(b)-1], []byte("\n"))
	for i, l := range ls {
		if !json.Valid(l) || l[0] != '{' {
			t.Fatalf("%s: line %d is not one JSON object: %q", name, i, l)
		}
	}
	return ls
}

func TestSinkWrites(t *testing.T) {
	var dec, ver, dead bytes.Buffer
	sink := &jsonl.Sink{Decisions: &dec, Verdicts: &ver, DeadLetters: &dead}
	out := output()
	for range 2 {
		if err := sink.Write(context.Background(), out); err != nil {
			t.Fatal(err)
		}
	}

	dl := lines(t, "decisions", dec.Bytes())
	if len(dl) != 4 {
		t.Fatalf("%d decision lines, want 4", len(dl))
	}
	for i, l := range dl {
		var got rules.Decision
		if err := json.Unmarshal(l, &got); err != nil {
			t.Fatal(err)
		}
		if want := out.Decisions[i%2]; !reflect.DeepEqual(got, want) {
			t.Errorf("decision line %d reads back as\n%+v\nwant\n%+v", i, got, want)
		}
	}
	if !bytes.Contains(dl[0], []byte(explain)) || !bytes.Contains(dl[0], []byte(`"name":"<x>"`)) {
		t.Errorf("decision escaped for HTML: %s", dl[0])
	}
	if !bytes.Contains(dl[0], []byte(`"ts":"2026-11-01T08:00:00Z"`)) {
		t.Errorf("decision ts not RFC 3339: %s", dl[0])
	}

	vl := lines(t, "verdicts", ver.Bytes())
	if len(vl) != 4 {
		t.Fatalf("%d verdict lines, want 4", len(vl))
	}
	for i, l := range vl {
		var got rules.Verdict
		if err := json.Unmarshal(l, &got); err != nil {
			t.Fatal(err)
		}
		// The verdict's own ruleset_version hides the embedded proposal's
		// (encoding/json keeps the shallower field), so that one is not
		// written.
		want := out.Verdicts[i%2]
		want.Proposal.RulesetVersion = 0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("verdict line %d reads back as\n%+v\nwant\n%+v", i, got, want)
		}
	}

	ll := lines(t, "dead letters", dead.Bytes())
	if len(ll) != 6 {
		t.Fatalf("%d dead letter lines, want 6", len(ll))
	}
	wantDead := []string{
		`{"reason":"ts: missing","topic":"metrics","partition":2,"offset":41,"key":"k1","value":"{\"bad\": \"<&>\"}"}`,
		`{"reason":"not JSON","topic":"metrics","partition":2,"offset":41,"value_base64":"` + base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe, 'a', 0}) + `"}`,
		`{"reason":"empty","topic":"metrics","partition":2,"offset":41}`,
	}
	for i, l := range ll {
		if string(l) != wantDead[i%3] {
			t.Errorf("dead letter line %d:\n got %s\nwant %s", i, l, wantDead[i%3])
		}
	}
	var back jsonl.DeadLetterRecord
	if err := json.Unmarshal(ll[1], &back); err != nil || !bytes.Equal(back.ValueBase64, []byte{0xff, 0xfe, 'a', 0}) || back.Value != "" {
		t.Errorf("binary dead letter reads back as %+v, %v", back, err)
	}

	if sink.NDecisions != 4 || sink.NVerdicts != 4 || sink.NDeadLetters != 6 {
		t.Errorf("counts %d decisions, %d verdicts, %d dead letters; want 4, 4, 6", sink.NDecisions, sink.NVerdicts, sink.NDeadLetters)
	}
	if want := map[string]int{"r1": 4, "r2": 2}; !reflect.DeepEqual(sink.RuleErrors, want) {
		t.Errorf("RuleErrors = %v, want %v", sink.RuleErrors, want)
	}
	if sink.Proposals != nil {
		t.Errorf("Proposals kept without KeepProposals: %d", len(sink.Proposals))
	}
}

func TestSinkProposalsAndNilWriters(t *testing.T) {
	var ver bytes.Buffer
	sink := &jsonl.Sink{Verdicts: &ver, KeepProposals: true}
	out := output()
	for range 3 {
		if err := sink.Write(context.Background(), out); err != nil {
			t.Fatal(err)
		}
	}
	if len(sink.Proposals) != 3 || !reflect.DeepEqual(sink.Proposals[2], out.Proposals[0]) {
		t.Errorf("Proposals = %+v, want the proposal three times", sink.Proposals)
	}
	if n := len(lines(t, "verdicts", ver.Bytes())); n != 6 {
		t.Errorf("%d verdict lines, want 6", n)
	}
	if sink.RuleErrors["r1"] != 6 {
		t.Errorf("RuleErrors = %v, want r1: 6", sink.RuleErrors)
	}
	// Nothing more to assert for the nil writers than that Write did not
	// fail or panic: there is nowhere the output could have gone.

	if err := (&jsonl.Sink{}).Write(context.Background(), &engine.Output{}); err != nil {
		t.Errorf("Write of nothing = %v", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestSinkWriterError(t *testing.T) {
	boom := errors.New("disk full")
	for name, sink := range map[string]*jsonl.Sink{
		"decisions":    {Decisions: errWriter{boom}},
		"verdicts":     {Verdicts: errWriter{boom}},
		"dead letters": {DeadLetters: errWriter{boom}},
	} {
		if err := sink.Write(context.Background(), output()); !errors.Is(err, boom) {
			t.Errorf("%s: Write = %v, want the writer's error", name, err)
		}
	}
	// A value that cannot be encoded is an error too.
	bad := output()
	bad.Decisions[0].Values = map[string]any{"f": func() {}}
	if err := (&jsonl.Sink{Decisions: io.Discard}).Write(context.Background(), bad); err == nil {
		t.Error("Write of an unencodable decision succeeded")
	}
}

func TestDeadLetter(t *testing.T) {
	in := rules.Input{Topic: "t", Partition: 1, Offset: 7}
	for _, tc := range []struct {
		value []byte
		text  string
		b64   []byte
	}{
		{[]byte("plain"), "plain", nil},
		{[]byte("ünï"), "ünï", nil},
		{[]byte("\xc3"), "", []byte("\xc3")}, // truncated UTF-8
		{nil, "", nil},
	} {
		r := jsonl.DeadLetter(&engine.DeadLetter{Input: in, Key: []byte("k"), Value: tc.value, Reason: "r"})
		if r.Reason != "r" || r.Topic != "t" || r.Partition != 1 || r.Offset != 7 || r.Key != "k" || r.Value != tc.text || !bytes.Equal(r.ValueBase64, tc.b64) {
			t.Errorf("DeadLetter(%q) = %+v", tc.value, r)
		}
	}
}
