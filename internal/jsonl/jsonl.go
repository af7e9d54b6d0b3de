package jsonl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
)

// Source reads JSON Lines as records of one partition.
type Source struct {
	r         *bufio.Reader
	topic     string
	partition int32
	batch     int
	offset    int64
	recs      []engine.Record
	arena     []byte
	spans     []lineSpan
	done      bool
	// Read counts the lines read so far.
	Read int64
}

// NewSource reads r; topic names the records (the file name, say), and batch
// is how many lines make one batch (default 8192 when <= 0).
func NewSource(r io.Reader, topic string, batch int) *Source {
	if batch <= 0 {
		batch = 8192
	}
	return &Source{r: bufio.NewReaderSize(r, 1<<20), topic: topic, batch: batch}
}

// Poll returns the next batch of non-blank lines, or io.EOF. The records'
// values share one buffer that the next Poll reuses.
func (s *Source) Poll(ctx context.Context) ([]engine.Record, error) {
	if s.done {
		return nil, io.EOF
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.recs = s.recs[:0]
	s.arena = s.arena[:0]
	s.spans = s.spans[:0]
	for len(s.spans) < s.batch {
		start := len(s.arena)
		var err error
		for {
			var chunk []byte
			chunk, err = s.r.ReadSlice('\n')
			s.arena = append(s.arena, chunk...)
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if len(s.arena) > start {
			off := s.offset
			s.offset++
			s.Read++
			line := bytes.TrimRight(s.arena[start:], "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				s.spans = append(s.spans, lineSpan{off: off, start: start, end: start + len(line)})
			}
		}
		if errors.Is(err, io.EOF) {
			s.done = true
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.topic, err)
		}
	}
	for _, sp := range s.spans {
		s.recs = append(s.recs, engine.Record{Topic: s.topic, Partition: s.partition, Offset: sp.off, Value: s.arena[sp.start:sp.end:sp.end]})
	}
	if len(s.recs) == 0 && s.done {
		return nil, io.EOF
	}
	return s.recs, nil
}

type lineSpan struct {
	off        int64
	start, end int
}

// Commit does nothing: a file has no consumer offsets.
func (s *Source) Commit(context.Context) error { return nil }

// Records returns a Source over records already in memory, in one batch.
func Records(recs []engine.Record) engine.Source { return &memSource{recs: recs} }

type memSource struct {
	recs []engine.Record
	done bool
}

func (m *memSource) Poll(ctx context.Context) ([]engine.Record, error) {
	if m.done || len(m.recs) == 0 {
		return nil, io.EOF
	}
	m.done = true
	return m.recs, nil
}

func (m *memSource) Commit(context.Context) error { return nil }

// Sink writes each kind of output to its own writer; a nil writer drops that
// kind. Proposals are kept in memory for stage 2 when KeepProposals is set.
type Sink struct {
	Decisions   io.Writer
	Verdicts    io.Writer
	DeadLetters io.Writer
	// KeepProposals keeps the rules' proposals in Proposals.
	KeepProposals bool
	Proposals     []rules.Proposal
	// Counts of what was written.
	NDecisions, NVerdicts, NDeadLetters int
	// RuleErrors counts run-time rule errors by rule id.
	RuleErrors map[string]int
	buf        bytes.Buffer
	enc        *json.Encoder
}

// Write writes out.
func (s *Sink) Write(_ context.Context, out *engine.Output) error {
	for i := range out.Decisions {
		if err := s.line(s.Decisions, &out.Decisions[i]); err != nil {
			return err
		}
	}
	s.NDecisions += len(out.Decisions)
	for i := range out.Verdicts {
		if err := s.line(s.Verdicts, &out.Verdicts[i]); err != nil {
			return err
		}
	}
	s.NVerdicts += len(out.Verdicts)
	for i := range out.DeadLetters {
		if err := s.line(s.DeadLetters, DeadLetter(&out.DeadLetters[i])); err != nil {
			return err
		}
	}
	s.NDeadLetters += len(out.DeadLetters)
	if s.KeepProposals {
		s.Proposals = append(s.Proposals, out.Proposals...)
	}
	for _, e := range out.Errors {
		if s.RuleErrors == nil {
			s.RuleErrors = map[string]int{}
		}
		s.RuleErrors[e.RuleID]++
	}
	return nil
}

func (s *Sink) line(w io.Writer, v any) error {
	if w == nil {
		return nil
	}
	s.buf.Reset()
	if s.enc == nil {
		s.enc = json.NewEncoder(&s.buf)
		s.enc.SetEscapeHTML(false)
	}
	if err := s.enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(s.buf.Bytes())
	return err
}

// DeadLetterRecord is the JSON form of a dead letter: the reason, where the
// record came from, and its original bytes (as text when they are UTF-8,
// else base64 in value_base64).
type DeadLetterRecord struct {
	Reason      string `json:"reason"`
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	Key         string `json:"key,omitempty"`
	KeyBase64   []byte `json:"key_base64,omitempty"`
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

// DeadLetter converts d to its JSON form.
func DeadLetter(d *engine.DeadLetter) DeadLetterRecord {
	r := DeadLetterRecord{Reason: d.Reason, Topic: d.Input.Topic, Partition: d.Input.Partition, Offset: d.Input.Offset}
	if utf8.Valid(d.Key) {
		r.Key = string(d.Key)
	} else {
		r.KeyBase64 = d.Key
	}
	if utf8.Valid(d.Value) {
		r.Value = string(d.Value)
	} else {
		r.ValueBase64 = d.Value
	}
	return r
}
