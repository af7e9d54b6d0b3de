package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ignored are the fields that merely name the rule set, and the ids derived
// from its hash, by file. What an id is derived from (the rule id, the ad,
// the event, the input record) is compared in the other fields, so leaving
// the ids out hides no difference but the rule set's hash. An external
// proposal's action_id is not derived, but it is copied from its input
// line, which is compared.
var ignored = map[string][]string{
	"decisions.jsonl": {"decision_id", "ruleset_version", "ruleset_sha256"},
	"actions.jsonl":   {"action_id", "ruleset_version", "ruleset_sha256"},
}

// firstDifference walks both sides' decisions.jsonl, then actions.jsonl,
// in file order, and returns the first line where they differ.
func firstDifference(bdir, cdir string) (*FirstDifference, error) {
	for _, name := range []string{"decisions.jsonl", "actions.jsonl"} {
		fd, err := firstIn(name, filepath.Join(bdir, name), filepath.Join(cdir, name))
		if fd != nil || err != nil {
			return fd, err
		}
	}
	return nil, nil
}

func firstIn(name, bpath, cpath string) (*FirstDifference, error) {
	bf, err := os.Open(bpath)
	if err != nil {
		return nil, err
	}
	defer bf.Close()
	cf, err := os.Open(cpath)
	if err != nil {
		return nil, err
	}
	defer cf.Close()
	br, cr := lines{r: bufio.NewReaderSize(bf, 1<<20), path: bpath}, lines{r: bufio.NewReaderSize(cf, 1<<20), path: cpath}
	for i := 0; ; i++ {
		bl, err := br.next()
		if err != nil {
			return nil, err
		}
		cl, err := cr.next()
		if err != nil {
			return nil, err
		}
		if bl == nil && cl == nil {
			return nil, nil
		}
		if bl != nil && cl != nil {
			nb, err := normalize(bl, ignored[name])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", bpath, i+1, err)
			}
			nc, err := normalize(cl, ignored[name])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", cpath, i+1, err)
			}
			if bytes.Equal(nb, nc) {
				continue
			}
		}
		return &FirstDifference{File: name, Index: i, Baseline: raw(bl), Candidate: raw(cl)}, nil
	}
}

// lines reads a file's non-blank lines (backtests write none blank, so
// the index of a record is its line); next returns nil at the end.
type lines struct {
	r    *bufio.Reader
	path string
	eof  bool
}

func (l *lines) next() ([]byte, error) {
	for !l.eof {
		line, err := l.r.ReadBytes('\n')
		if err == io.EOF {
			l.eof = true
		} else if err != nil {
			return nil, fmt.Errorf("read %s: %w", l.path, err)
		}
		if line = bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
			return line, nil
		}
	}
	return nil, nil
}

// normalize returns the record as canonical JSON (sorted keys, numbers as
// written) without the ignored fields.
func normalize(line []byte, drop []string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if m, ok := v.(map[string]any); ok {
		for _, k := range drop {
			delete(m, k)
		}
	}
	return json.Marshal(v)
}

// raw keeps a record for the diff; nil (JSON null) when the side ended.
func raw(line []byte) json.RawMessage {
	if line == nil {
		return nil
	}
	if !json.Valid(line) {
		b, _ := json.Marshal(string(line))
		return b
	}
	return json.RawMessage(bytes.Clone(line))
}
