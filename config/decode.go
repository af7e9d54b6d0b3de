package config

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// The strict decoder walks the node tree and the schema types together, so
// that every unknown key and every wrong type is reported at its own line
// and column, all of them at once, and the position of every value is
// kept by path for Validate.

// loc is where one value of a document came from.
type loc struct{ key, val Pos }

var (
	durationType = reflect.TypeFor[Duration]()
	ruleType     = reflect.TypeFor[Rule]()
	documentType = reflect.TypeFor[Document]()
	freeType     = reflect.TypeFor[map[string]any]()
)

// legacyKeys are top-level keys of the predecessor's shape, which any
// file may use; translate has rewritten them before decoding.
var legacyKeys = []string{"winner_detection", "rag_indexing", "self_learning_cycle", "model_evaluation", "safe_executor", "environments"}

type decoder struct {
	l    *loader
	pos  map[string]loc
	errs Errors
	rule string // the id of the rule being decoded, for its errors
	// failed holds the paths of the values that could not be decoded (and
	// of the keys that a misspelt key probably meant), so that Validate
	// does not judge the zero values left in their place.
	failed map[string]bool
}

// decode decodes root strictly. It returns the document even when it
// reports problems: what failed is left out, and failed says where.
func (l *loader) decode(root *yaml.Node) (*Document, map[string]bool, Errors) {
	dc := &decoder{l: l, pos: map[string]loc{}, failed: map[string]bool{}}
	d := &Document{File: l.file}
	dc.pos[""] = loc{val: l.pos(root)}
	dc.decode(root, reflect.ValueOf(d).Elem(), "")
	d.pos = dc.pos
	return d, dc.failed, dc.errs
}

// fail reports a problem of the value at path, found at the node n.
func (dc *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	e := dc.l.errorf(n, format, args...)
	e.RuleID = dc.rule
	dc.errs = append(dc.errs, e)
	dc.failed[path] = true
}

// join appends a key to a path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode sets v from n. A null leaves v as it is.
func (dc *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			dc.fail(path, n, "expected a duration such as 30m, 6h or 7d, got %s", describe(n))
			return
		}
		d, err := ParseDuration(n.Value)
		if err != nil {
			dc.fail(path, n, "%s", err)
			return
		}
		v.SetInt(int64(d))
		return
	case t == freeType:
		if n.Kind != yaml.MappingNode {
			dc.fail(path, n, "expected keys and values (a mapping), got %s", describe(n))
			return
		}
		v.Set(reflect.ValueOf(dc.free(n, path)))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		dc.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		dc.structure(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			dc.fail(path, n, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			dc.mark(p, nil, c)
			dc.decode(c, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			dc.fail(path, n, "expected keys and values (a mapping), got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				dc.fail(path, k, "expected a name as key, got %s", describe(k))
				continue
			}
			p := path + "." + k.Value
			dc.mark(p, k, c)
			e := reflect.New(t.Elem()).Elem()
			dc.decode(c, e, p)
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			dc.fail(path, n, "expected text, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			dc.fail(path, n, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			dc.fail(path, n, "expected a whole number, got %s", describe(n))
			return
		}
		if n.Decode(&i) != nil {
			dc.fail(path, n, "the number %s is too large", quote(n.Value))
			return
		}
		v.SetInt(int64(i))
	case reflect.Float64:
		f, ok := dc.number(path, n)
		if ok {
			v.SetFloat(f)
		}
	default:
		panic("config: no decoder for " + t.String())
	}
}

// number reads a finite float.
func (dc *decoder) number(path string, n *yaml.Node) (float64, bool) {
	var f float64
	if tag := n.ShortTag(); n.Kind != yaml.ScalarNode || tag != "!!int" && tag != "!!float" || n.Decode(&f) != nil {
		dc.fail(path, n, "expected a number, got %s", describe(n))
		return 0, false
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		dc.fail(path, n, "expected a finite number, got %s", n.Value)
		return 0, false
	}
	return f, true
}

// mark records where the value at path came from.
func (dc *decoder) mark(path string, key, val *yaml.Node) {
	if isNull(val) {
		return // a null is as good as a missing key
	}
	var l loc
	if key != nil {
		l.key = dc.l.pos(key)
	}
	l.val = dc.l.pos(val)
	if key == nil {
		l.key = l.val
	}
	dc.pos[path] = l
}

// field is one key of a schema struct.
type field struct {
	name  string
	index int
}

func fields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{name, i})
	}
	return fs
}

func (dc *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		dc.fail(path, n, "expected keys and values (a mapping), got %s", describe(n))
		return
	}
	t := v.Type()
	if t == ruleType {
		dc.rule = ""
		if id := child(n, "id"); id != nil && id.Kind == yaml.ScalarNode {
			dc.rule = ruleLabel(id.Value)
		}
		defer func() { dc.rule = "" }()
	}
	fs := fields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, c := n.Content[i], n.Content[i+1]
		j := slices.IndexFunc(fs, func(f field) bool { return f.name == k.Value })
		if j < 0 {
			dc.unknown(k, t, path, fs)
			continue
		}
		p := join(path, fs[j].name)
		dc.mark(p, k, c)
		dc.decode(c, v.Field(fs[j].index), p)
	}
	if t == ruleType {
		r := v.Addr().Interface().(*Rule)
		r.Pos = dc.l.pos(n)
		if w := child(n, "when"); w != nil && w.Kind == yaml.ScalarNode {
			r.WhenPos = dc.l.exprPos(w)
		} else {
			r.WhenPos = ExprPos{File: r.Pos.File, Var: r.Pos.Var}
		}
	}
}

// unknown reports a key the schema does not have.
func (dc *decoder) unknown(k *yaml.Node, t reflect.Type, path string, fs []field) {
	var known []string
	for _, f := range fs {
		known = append(known, f.name)
	}
	where := "in " + path
	switch {
	case t == documentType:
		where = "at the top level"
		known = append(known, legacyKeys...)
	case t == ruleType:
		where = "in rule"
	case strings.HasPrefix(path, "rules["):
		where = "in " + path[strings.LastIndexByte(path, '.')+1:]
	case strings.HasPrefix(path, "groups."):
		where = "in group"
	}
	hint := ""
	if s := suggest(k.Value, known); s != "" {
		hint = fmt.Sprintf(" (did you mean %s?)", s)
		// The key it meant is missing only because of the typo; do not
		// also report it missing.
		dc.failed[join(path, s)] = true
	}
	dc.fail(join(path, k.Value), k, "unknown key %q %s%s; known keys: %s", k.Value, where, hint, strings.Join(known, ", "))
}

// maxSuggest is the most known words suggest compares a word with: a
// mapping of more keys is not a list anyone types from, and comparing
// every unknown key of a large overlay with every key of a large file
// would take minutes.
const maxSuggest = 100

// suggest returns the known word closest to s, if it is close enough to
// be a typo.
func suggest(s string, known []string) string {
	if len(known) > maxSuggest {
		return ""
	}
	best, bestD := "", 3
	s = strings.ToLower(s)
	for _, k := range known {
		if len(s) >= len(k)+bestD || len(k) >= len(s)+bestD {
			continue // the distance is at least the difference in length
		}
		if d := distance(s, k); d < bestD && d < len(k)/2+1 {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// free decodes a free-form value of params: nested maps, lists and
// scalars as int, float64, bool, string or nil.
func (dc *decoder) free(n *yaml.Node, path string) any {
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				dc.fail(path, k, "expected a name as key, got %s", describe(k))
				continue
			}
			p := path + "." + k.Value
			dc.mark(p, k, c)
			m[k.Value] = dc.free(c, p)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			dc.mark(p, nil, c)
			s[i] = dc.free(c, p)
		}
		return s
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int
		if n.Decode(&i) != nil {
			dc.fail(path, n, "the number %s is too large", quote(n.Value))
			return nil
		}
		return i
	case "!!float":
		f, _ := dc.number(path, n)
		return f
	}
	return n.Value
}

// exprPos maps the content of the scalar n back to the file, line by
// line, by matching each source line against the value YAML produced.
// Where the two stop lining up (an escape in a quoted scalar), the spans
// end there, and later positions map to the end of the last span.
func (l *loader) exprPos(n *yaml.Node) ExprPos {
	v := n.Value
	if name, ok := l.env[n]; ok {
		return ExprPos{File: l.file, Var: name, Lines: []LineSpan{{Line: 1, Col: 1, Len: len(v), ExprLine: 1, ExprCol: 1}}}
	}
	block := n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	quoted := n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	e := ExprPos{File: l.file, Folded: n.Style&yaml.FoldedStyle != 0}
	done := func() ExprPos {
		if len(e.Lines) == 0 {
			col := n.Column
			if quoted {
				col++
			}
			e.Lines = []LineSpan{{Line: n.Line, Col: col, Len: len(v), ExprLine: 1, ExprCol: 1}}
		}
		if !block && e.Lines[len(e.Lines)-1].Line != e.Lines[0].Line {
			e.Folded = true
		}
		return e
	}
	line, first := n.Line, !block
	if block {
		line++ // block content starts below its | or > indicator
	}
	o, el, ec := 0, 1, 1
	for {
		for ; o < len(v) && (v[o] == ' ' || v[o] == '\t' || v[o] == '\n'); o++ {
			if v[o] == '\n' {
				el, ec = el+1, 1
			} else {
				ec++
			}
		}
		if o == len(v) {
			return done()
		}
		var text string
		start := 0
		for ; ; line++ {
			if line < 1 || line > len(l.src) {
				return done()
			}
			text, start = l.src[line-1], 0
			if first {
				start, first = byteIndex(text, n.Column-1), false
				if quoted {
					start++
				}
			}
			if start <= len(text) && strings.TrimSpace(text[start:]) != "" {
				break
			}
		}
		start += len(text[start:]) - len(strings.TrimLeft(text[start:], " \t"))
		content := strings.TrimRight(text[start:], " \t")
		m := commonPrefix(content, v[o:])
		if m == 0 {
			return done()
		}
		e.Lines = append(e.Lines, LineSpan{Line: line, Col: start + 1, Len: m, ExprLine: el, ExprCol: ec})
		o, ec = o+m, ec+m
		if m < len(content) && o < len(v) {
			return done()
		}
		line++
	}
}

// byteIndex returns the byte offset of the rune at index i of s.
func byteIndex(s string, i int) int {
	for off := range s {
		if i == 0 {
			return off
		}
		i--
	}
	return len(s)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// PosOf returns where the value at path came from: the file, line and
// column of the value as written (for a value in the predecessor's shape,
// where the predecessor's file has it), or, for a value an environment
// variable set, the file and the variable (Pos.Var). A path names a value
// as messages do: keys joined by dots and list items by index from 0, as
// in rules[2].emit.values[1], guards.jitter.min or
// params.winner_detection.ctr_threshold. PosOf returns the zero Pos when
// the document does not know: for a value the file leaves out (a default,
// the built-in winner rule) or gives as null, for a path the document does
// not have, and for a Document that Load did not make.
func (d *Document) PosOf(path string) Pos {
	return d.pos[path].val
}

// set reports whether the file gave the value at path (not null).
func (d *Document) set(path string) bool {
	_, ok := d.pos[path]
	return ok
}

// at returns the position of the value at path, or of the nearest
// enclosing value the document knows the position of.
func (d *Document) at(path string) Pos {
	return d.lookup(path, false)
}

// keyAt is at for the key of the value at path.
func (d *Document) keyAt(path string) Pos {
	return d.lookup(path, true)
}

func (d *Document) lookup(path string, key bool) Pos {
	for {
		if l, ok := d.pos[path]; ok {
			if key {
				return l.key
			}
			return l.val
		}
		if path == "" {
			return Pos{File: d.File}
		}
		i := strings.LastIndexAny(path, ".[")
		path = path[:max(i, 0)]
	}
}

// sortErrors puts errors in file order; errors without a line (those of
// variables) go last.
func sortErrors(es Errors) {
	slices.SortStableFunc(es, func(a, b *Error) int {
		la, lb := a.Pos.Line, b.Pos.Line
		if la == 0 {
			la = math.MaxInt
		}
		if lb == 0 {
			lb = math.MaxInt
		}
		return cmp.Or(cmp.Compare(la, lb), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
}
