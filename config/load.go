package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Options select the layers that Load puts on top of the file.
type Options struct {
	// Environment names the environments overlay to apply. When empty,
	// Vars["ADRULES_ENV"] names it, then Vars["ENVIRONMENT"] (the
	// predecessor's name); when all are empty, no overlay applies.
	Environment string
	// Vars is the process environment as a map; cmd builds it. Load reads
	// ADRULES_ENV, ENVIRONMENT, ADRULES__* and the predecessor's variable
	// names from it, and nothing else. Nil means no variables.
	Vars map[string]string
}

// maxNodes caps the nodes of a document once its aliases are expanded, so
// that a small file cannot expand into a huge one ("billion laughs").
const maxNodes = 200_000

// Load reads a rules file and returns its effective document: the file,
// then the environments overlay, then environment-variable overrides, in
// the new shape or the predecessor's, with defaults filled in and
// validated. file names the file in messages; data is its content.
//
// Every problem Load reports is an Errors, whose elements are *Error with
// the position (a variable's problems are at Pos{File: "$NAME"}) and, for
// rule problems, the rule id.
func Load(file string, data []byte, opts Options) (*Document, error) {
	l := &loader{file: file, env: map[*yaml.Node]string{}}
	root, err := l.parse(data)
	if err != nil {
		return nil, err
	}
	envName, err := l.overlay(root, opts)
	if err != nil {
		return nil, err
	}
	if err := l.override(root, opts.Vars); err != nil {
		return nil, err
	}
	hasRules := keyIndex(root, "rules") >= 0
	if err := l.translate(root); err != nil {
		return nil, err
	}
	d, err := l.decode(root)
	if err != nil {
		return nil, err
	}
	d.Environment = envName
	if err := l.builtins(d, hasRules); err != nil {
		return nil, err
	}
	d.Defaults()
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// loader holds what one Load call knows about its input.
type loader struct {
	file string
	src  []string // the file's lines, for expression positions
	// env marks the nodes that environment variables made, by variable
	// name, so that their problems point at the variable.
	env map[*yaml.Node]string
}

func (l *loader) pos(n *yaml.Node) Pos {
	if name, ok := l.env[n]; ok {
		return Pos{File: "$" + name}
	}
	return Pos{File: l.file, Line: n.Line, Col: n.Column}
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) *Error {
	return &Error{Pos: l.pos(n), Msg: fmt.Sprintf(format, args...)}
}

// parse reads data into a mapping node with its aliases expanded.
func (l *loader) parse(data []byte) (*yaml.Node, error) {
	start := Pos{File: l.file, Line: 1, Col: 1}
	if !utf8.Valid(data) {
		return nil, Errors{{Pos: start, Msg: "the file is not valid UTF-8; save it as UTF-8"}}
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		l.src = append(l.src, strings.TrimSuffix(line, "\r"))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Pos: start, Msg: "the file is empty; it needs at least rules or params"}}
		}
		return nil, l.syntaxError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, l.syntaxError(err)
		}
		return nil, Errors{l.errorf(&next, "the file holds more than one YAML document (---); put everything in one")}
	}
	if len(doc.Content) != 1 {
		return nil, Errors{{Pos: start, Msg: "the file is empty; it needs at least rules or params"}}
	}
	root := doc.Content[0]
	var errs Errors
	l.duplicates(root, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	x := expander{l: l, budget: maxNodes, active: map[*yaml.Node]bool{}}
	root, err := x.copy(root)
	if err != nil {
		return nil, Errors{err}
	}
	if root.Kind != yaml.MappingNode {
		if isNull(root) {
			return nil, Errors{{Pos: start, Msg: "the file is empty; it needs at least rules or params"}}
		}
		return nil, Errors{l.errorf(root, "expected keys and values (name, params, rules, ...) at the top level, got %s", describe(root))}
	}
	return root, nil
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into an
// Error at that line; yaml.v3 does not report columns.
func (l *loader) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Pos{File: l.file}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				p.Line, msg = line, after
			}
		}
	}
	return Errors{{Pos: p, Msg: "YAML syntax: " + msg}}
}

// duplicates reports keys given twice in one mapping. yaml.v3 finds them
// only when it decodes into Go values, which Load does not do.
func (l *loader) duplicates(n *yaml.Node, errs *Errors) {
	if n.Kind == yaml.MappingNode {
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				continue
			}
			if first, ok := seen[k.Value]; ok {
				*errs = append(*errs, l.errorf(k, "key %q appears twice; the first is at line %d", k.Value, first.Line))
				continue
			}
			seen[k.Value] = k
		}
	}
	for _, c := range n.Content {
		l.duplicates(c, errs)
	}
}

// expander copies a node tree, replacing aliases with copies of what they
// name and merging "<<" keys, within a budget of nodes.
type expander struct {
	l      *loader
	budget int
	active map[*yaml.Node]bool // nodes being copied: an alias to one is a cycle
}

func (x *expander) copy(n *yaml.Node) (*yaml.Node, *Error) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || x.active[n.Alias] {
			return nil, x.l.errorf(n, "alias *%s refers to itself", n.Value)
		}
		return x.copy(n.Alias)
	}
	if x.budget--; x.budget < 0 {
		return nil, x.l.errorf(n, "the document is too large once its aliases (*) are expanded")
	}
	x.active[n] = true
	defer delete(x.active, n)
	c := *n
	c.Anchor, c.Alias, c.Content = "", nil, nil
	var merges []*yaml.Node
	for i, child := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 && child.ShortTag() == "!!merge" && i+1 < len(n.Content) {
			merges = append(merges, n.Content[i+1])
			continue
		}
		if n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].ShortTag() == "!!merge" {
			continue
		}
		cc, err := x.copy(child)
		if err != nil {
			return nil, err
		}
		c.Content = append(c.Content, cc)
	}
	// Explicit keys win over merged ones, and earlier merges over later.
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, s := range srcs {
			sc, err := x.copy(s)
			if err != nil {
				return nil, err
			}
			if sc.Kind != yaml.MappingNode {
				return nil, x.l.errorf(s, "<< must merge a mapping, got %s", describe(sc))
			}
			for i := 0; i+1 < len(sc.Content); i += 2 {
				if keyIndex(&c, sc.Content[i].Value) < 0 {
					c.Content = append(c.Content, sc.Content[i], sc.Content[i+1])
				}
			}
		}
	}
	return &c, nil
}

// overlay applies the selected environments overlay to root and removes
// the environments key. It returns the overlay's name, or "".
func (l *loader) overlay(root *yaml.Node, opts Options) (string, error) {
	var envs *yaml.Node
	var envsKey *yaml.Node
	if i := keyIndex(root, "environments"); i >= 0 {
		envsKey, envs = root.Content[i], root.Content[i+1]
		root.Content = slices.Delete(root.Content, i, i+2)
		if !isNull(envs) && envs.Kind != yaml.MappingNode {
			return "", Errors{l.errorf(envs, "environments must map environment names to overlays, got %s", describe(envs))}
		}
	}
	name, from := opts.Environment, Pos{File: l.file}
	if envsKey != nil {
		from = l.pos(envsKey)
	}
	if name == "" {
		name, from = opts.Vars["ADRULES_ENV"], Pos{File: "$ADRULES_ENV"}
	}
	if name == "" {
		name, from = opts.Vars["ENVIRONMENT"], Pos{File: "$ENVIRONMENT"}
		// ENVIRONMENT is a common name in deployments; a file without any
		// overlays does not have to list every value it may hold.
		if envs == nil || isNull(envs) {
			return "", nil
		}
	}
	if name == "" {
		return "", nil
	}
	var names []string
	var key, ov *yaml.Node
	if envs != nil {
		for i := 0; i+1 < len(envs.Content); i += 2 {
			k := envs.Content[i]
			names = append(names, k.Value)
			if k.Value == name || key == nil && strings.EqualFold(k.Value, name) {
				key, ov = k, envs.Content[i+1]
			}
		}
	}
	if key == nil {
		defined := "the file defines no environments"
		if len(names) > 0 {
			defined = "the file defines " + strings.Join(names, ", ")
		}
		return "", Errors{{Pos: from, Msg: fmt.Sprintf("environment %q is not defined; %s", name, defined)}}
	}
	if isNull(ov) {
		return key.Value, nil
	}
	if ov.Kind != yaml.MappingNode {
		return "", Errors{l.errorf(ov, "environment %s must be a mapping in the shape of the file, got %s", key.Value, describe(ov))}
	}
	if i := keyIndex(ov, "environments"); i >= 0 {
		return "", Errors{l.errorf(ov.Content[i], "an environment overlay cannot hold environments")}
	}
	merge(root, ov)
	return key.Value, nil
}

// merge deep-merges the mapping src into the mapping dst: mappings merge,
// everything else (scalars, sequences) replaces.
func merge(dst, src *yaml.Node) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		j := keyIndex(dst, k.Value)
		switch {
		case j < 0:
			dst.Content = append(dst.Content, k, v)
		case dst.Content[j+1].Kind == yaml.MappingNode && v.Kind == yaml.MappingNode:
			merge(dst.Content[j+1], v)
		default:
			dst.Content[j+1] = v
		}
	}
}

// keyIndex returns the index of key in the mapping n's Content, or -1.
func keyIndex(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return -1
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// child returns the value of key in the mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if i := keyIndex(n, key); i >= 0 {
		return n.Content[i+1]
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "keys and values (a mapping)"
	case yaml.SequenceNode:
		return "a list"
	}
	if isNull(n) {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}
