package config

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// aliasBomb is issue 11 row 8: a 130 KB file whose list repeats, by alias,
// a 100 KB string 10,000 times. Before the limit on expanded bytes it
// loaded, and its hash then took 50 s and 4.45 GB; 970 KB of the same
// would have needed 76 GB.
func aliasBomb() []byte {
	return []byte("params:\n  s: &s \"" + strings.Repeat("x", 100_000) + "\"\n  l: [" + strings.Repeat("*s,", 10_000) + "]\n")
}

// longKey is a file without aliases that became large all the same: every
// item of the list under a 100 KB key got its own path, the key included,
// for Document.PosOf. With 10,000 items, Load took 27 s and 2 GB before
// MaxKeySize, and Canonical's output did not load (YAML allows a key 1,024
// characters in flow style).
func longKey(items int) []byte {
	return []byte("params:\n  ? " + strings.Repeat("k", 100_000) + "\n  : [" + strings.Repeat("1,", items) + "]\n")
}

// longPaths is a 12 KB file without aliases whose keys are within
// MaxKeySize, and whose paths are 4.5 MB all the same: 600 items 60 keys
// deep.
func longPaths() []byte {
	return []byte("params: " + strings.Repeat("{"+strings.Repeat("k", MaxKeySize)+": ", 60) + "[" + strings.Repeat("1,", 600) + "]" + strings.Repeat("}", 60) + "\n")
}

// TestAliasBomb checks row 8's file is refused, at the alias that takes
// the document past MaxExpandedSize, quickly and without building the
// expansion.
func TestAliasBomb(t *testing.T) {
	src := aliasBomb()
	if len(src) < 130_000 || len(src) > MaxFileSize {
		t.Fatalf("the input is %d bytes, want about 130 KB", len(src))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Load("bomb.yaml", src, Options{})
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("Load returned %v, want one error", err)
	}
	// The 41st alias (index 40, at column 7+3*40) is the one past 4 MiB:
	// each counts 100,000 bytes of text, 16 and its path params.l[40].
	want := Pos{File: "bomb.yaml", Line: 3, Col: 127}
	if es[0].Pos != want || !strings.Contains(es[0].Msg, "larger than 4 MiB with alias *s expanded here") {
		t.Errorf("got %v, want at %v: larger than 4 MiB with alias *s expanded here", es[0], want)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 16<<20 {
		t.Errorf("Load allocated %d MB to refuse it", a>>20)
	}
	t.Logf("refused in %v", took)
}

// TestLimits checks each limit on what a small file may become: the
// message, the line and column where it is passed, and that a file just
// within each limit loads.
func TestLimits(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		msg       string // a substring of the message; "" when it must load
		line, col int
	}{
		{
			name: "row 8: 10,000 aliases of a 100 KB string",
			src:  string(aliasBomb()),
			msg:  "the document is larger than 4 MiB with alias *s expanded here; each key and value counts its text, its path and 16 bytes",
			line: 3, col: 127,
		},
		{
			name: "aliases of aliases (billion laughs)",
			src: "params:\n  a: &a [" + strings.Repeat("xxxxxxxxxx,", 10) + "]\n" +
				"  b: &b [" + strings.Repeat("*a,", 10) + "]\n" +
				"  c: &c [" + strings.Repeat("*b,", 10) + "]\n" +
				"  d: &d [" + strings.Repeat("*c,", 10) + "]\n" +
				"  e: [" + strings.Repeat("*d,", 10) + "]\n",
			// Each *d is 10,000 values of 10 bytes, 16 and a path such as
			// params.e[1][2][3][4][5]: about 530 KB, and d itself as much.
			// The 7th passes 4 MiB.
			msg:  "larger than 4 MiB with alias *d expanded here",
			line: 6, col: 7 + 3*6,
		},
		{
			name: "a merge key repeated",
			src: "params:\n  m: &m {a: &s \"" + strings.Repeat("x", 500_000) + "\"}\n" +
				"  l: [{<<: *m}, {<<: *m}, {<<: *m}, {<<: *m}, {<<: *m}, {<<: *m}, {<<: *m}, {<<: *m}]\n",
			msg: "larger than 4 MiB with alias *m expanded here",
			// m is 500 KB, and each merge of it as much: the 8th *m
			// passes 4 MiB.
			line: 3, col: 12 + 10*7,
		},
		{
			name: "a 100 KB key",
			src:  string(longKey(50)),
			msg:  "this key is 100000 bytes here; a key is at most 128",
			line: 2, col: 5,
		},
		{
			name: "a key of 128 bytes loads",
			src:  "params: {" + strings.Repeat("k", MaxKeySize) + ": 1}\n",
		},
		{
			name: "long paths without an alias",
			src:  string(longPaths()),
			// Each item's path is params and 60 keys of 128 bytes: 7,746
			// bytes. The 478th passes 4 MiB.
			msg:  "the document is larger than 4 MiB by this point; each key and value counts its text, its path and 16 bytes",
			line: 1, col: 9 + 60*(MaxKeySize+3) + 1 + 2*477,
		},
		{
			name: "a file over 1 MiB",
			src:  base + "# " + strings.Repeat("x", MaxFileSize) + "\n",
			msg:  "more than the 1 MiB (1048576 bytes) a rules file may be",
		},
		{
			name: "a file of exactly 1 MiB loads",
			src:  base + "#" + strings.Repeat("x", MaxFileSize-len(base)-2) + "\n",
		},
		{
			name: "nesting deeper than 64",
			src:  "params: " + strings.Repeat("{a: ", 64) + "1" + strings.Repeat("}", 64) + "\n",
			// The top level is level 1, so the 64th { is level 65.
			msg:  "lists and mappings nest more than 64 deep here",
			line: 1, col: 9 + 4*63,
		},
		{
			name: "nesting of exactly 64 loads",
			src:  "params: " + strings.Repeat("{a: ", 63) + "1" + strings.Repeat("}", 63) + "\n",
		},
		{
			name: "nesting deeper than 64 through an alias",
			src: "params:\n  a: &a " + strings.Repeat("[", 40) + "1" + strings.Repeat("]", 40) + "\n" +
				"  b: " + strings.Repeat("[", 30) + "*a" + strings.Repeat("]", 30) + "\n",
			msg:  "lists and mappings nest more than 64 deep with alias *a expanded here",
			line: 3, col: 6 + 30,
		},
		{
			name: "a cycle is still a cycle",
			src:  "params: &p {x: [*p]}\n",
			msg:  "alias *p refers to itself",
			line: 1, col: 17,
		},
		{
			name: "a cycle through a merge key",
			src:  "params: &p {x: 1, y: {<<: *p}}\n",
			msg:  "alias *p refers to itself",
			line: 1, col: 27,
		},
		{
			name: "the predecessor's sections moved under params nest deeper",
			// 64 deep as written; one more under params.
			src: "winner_detection: " + strings.Repeat("{a: ", 63) + "1" + strings.Repeat("}", 63) + "\n",
			msg: "the effective document (the file with its overlay, variables and defaults applied, and the predecessor's sections under params) is larger than a file may be",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("test.yaml", []byte(tc.src), Options{})
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("Load: %.500v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Load returned %.500v, want Errors containing %q", err, tc.msg)
			}
			var got *Error
			for _, e := range es {
				if strings.Contains(e.Msg, tc.msg) {
					got = e
					break
				}
			}
			if got == nil {
				t.Fatalf("no error contains %q; got:\n%.2000v", tc.msg, err)
			}
			want := Pos{File: "test.yaml", Line: tc.line, Col: tc.col}
			if got.Pos != want {
				t.Errorf("error %q at %v; want %v", got.Msg, got.Pos, want)
			}
		})
	}
}

// TestErrorsCapped checks Load reports the first MaxErrors problems in
// file order and counts the rest, so that a file of many mistakes does not
// make a message of megabytes.
func TestErrorsCapped(t *testing.T) {
	var b strings.Builder
	for i := range MaxErrors + 50 {
		fmt.Fprintf(&b, "unknown%d: 1\n", i)
	}
	_, err := Load("test.yaml", []byte(b.String()), Options{})
	var es Errors
	if !errors.As(err, &es) || len(es) != MaxErrors+1 {
		t.Fatalf("got %d errors, want %d: %.300v", len(es), MaxErrors+1, err)
	}
	if got, want := es[MaxErrors-1].Pos, (Pos{File: "test.yaml", Line: MaxErrors, Col: 1}); got != want {
		t.Errorf("the last problem reported is at %v, want %v", got, want)
	}
	if got, want := es[MaxErrors].Error(), "test.yaml: and 50 more problems; fix these first"; got != want {
		t.Errorf("the last error is %q, want %q", got, want)
	}
}
