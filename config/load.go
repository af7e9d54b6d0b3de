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

// Limits on what a file may become, so that a small file cannot make
// Load, Canonical or SHA256 build a large document: with aliases (a 130 KB
// file of aliases to a 100 KB string is 1 GB expanded), with keys that
// every path below them repeats, or with deep nesting. Real rule sets are a
// few KB (the predecessor's file is 2 KB) and come nowhere near them. Load
// checks them on the parsed file before it expands anything, and again on
// the effective document, so that Canonical's output always loads.
const (
	// MaxFileSize caps the bytes of a file: 1 MiB, as the admin API caps
	// a request body.
	MaxFileSize = 1 << 20
	// MaxExpandedSize caps the size of a document with its aliases (*)
	// and merge keys (<<) expanded: 4 MiB, where each key and value
	// counts the bytes of its text, of its path as messages name it
	// (params.winner_detection.ctr_threshold, rules[3].when) and
	// nodeCost. The paths count because Load keeps every value's position
	// by path (Document.PosOf).
	MaxExpandedSize = 4 << 20
	// MaxDepth caps how deep lists and mappings nest, with aliases
	// expanded; the top level is depth 1.
	MaxDepth = 64
	// MaxKeySize caps the bytes of a key: 128, so that every path stays
	// short and every key, however escaped, stays within the 1,024
	// characters YAML allows a key in Canonical's flow style.
	MaxKeySize = 128
	// MaxRuleIDSize caps the bytes of a rule id, which every decision and
	// every message about the rule carries.
	MaxRuleIDSize = 64
	// MaxErrors caps the problems Load reports: the first 100 in file
	// order, then one that counts the rest.
	MaxErrors = 100
	// maxQuoted caps the bytes of a value that a message quotes.
	maxQuoted = 64
)

// nodeCost is what each key and value adds to the expanded size besides
// its text and path, so that structure counts where values are short.
const nodeCost = 16

// Load reads a rules file and returns its effective document: the file,
// then the environments overlay, then environment-variable overrides, in
// the new shape or the predecessor's, with defaults filled in and
// validated. file names the file in messages; data is its content.
//
// Every problem Load reports is an Errors, whose elements are *Error with
// the position (a variable's problems are at Pos{File: file, Var: "NAME"})
// and, for rule problems, the rule id. Once the file parses, Load reports
// every problem at once: those of every overlay (selected or not), of the
// variables, of the schema and of validation, leaving out only the checks
// of values that could not be read.
func Load(file string, data []byte, opts Options) (*Document, error) {
	d, errs := load(file, data, opts)
	if len(errs) > 0 {
		return nil, errs
	}
	return d, nil
}

func load(file string, data []byte, opts Options) (*Document, Errors) {
	l := &loader{file: file, env: map[*yaml.Node]string{}}
	root, err := l.parse(data)
	if err != nil {
		return nil, err
	}
	var envsKey, envs *yaml.Node
	if i := keyIndex(root, "environments"); i >= 0 {
		envsKey, envs = root.Content[i], root.Content[i+1]
		root.Content = slices.Delete(root.Content, i, i+2)
	}
	errs := l.translate(root)
	envName, e := l.overlay(root, envsKey, envs, opts)
	errs = append(errs, e...)
	errs = append(errs, l.override(root, opts.Vars)...)
	hasRules := keyIndex(root, "rules") >= 0
	d, failed, e := l.decode(root)
	errs = append(errs, e...)
	d.Environment = envName
	errs = append(errs, l.builtins(d, hasRules)...)
	d.Defaults()
	errs = append(errs, d.validate(failed)...)
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, l.first(errs)
	}
	if err := l.effective(d); err != nil {
		return nil, Errors{err}
	}
	return d, nil
}

// first returns the first MaxErrors of errs, in file order, and an error
// that counts the rest.
func (l *loader) first(errs Errors) Errors {
	if len(errs) <= MaxErrors {
		return errs
	}
	rest := &Error{Pos: Pos{File: l.file}, Msg: fmt.Sprintf("and %d more problems; fix these first", len(errs)-MaxErrors)}
	return append(errs[:MaxErrors:MaxErrors], rest)
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
		return Pos{File: l.file, Var: name}
	}
	return Pos{File: l.file, Line: n.Line, Col: n.Column}
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) *Error {
	return &Error{Pos: l.pos(n), Msg: fmt.Sprintf(format, args...)}
}

// parse reads data into a mapping node with its aliases expanded.
func (l *loader) parse(data []byte) (*yaml.Node, Errors) {
	start := Pos{File: l.file, Line: 1, Col: 1}
	if len(data) > MaxFileSize {
		return nil, Errors{{Pos: Pos{File: l.file}, Msg: fmt.Sprintf("the file is %d bytes, more than the 1 MiB (%d bytes) a rules file may be", len(data), MaxFileSize)}}
	}
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
		return nil, l.first(errs)
	}
	// Measure first: the copy is as large as the expansion.
	if err := newSizer(l).measure(root); err != nil {
		return nil, Errors{err}
	}
	x := expander{l: l}
	root, e := x.copy(root)
	if e != nil {
		return nil, Errors{e}
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
func (l *loader) syntaxError(err error) Errors {
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
				*errs = append(*errs, l.errorf(k, "key %s appears twice; the first is at line %d", quote(k.Value), first.Line))
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
// name and merging "<<" keys. It relies on a sizer having measured the
// tree: no cycles, and an expansion within the limits.
type expander struct {
	l *loader
}

func (x *expander) copy(n *yaml.Node) (*yaml.Node, *Error) {
	if n.Kind == yaml.AliasNode {
		return x.copy(n.Alias)
	}
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
	var have map[string]bool
	if len(merges) > 0 {
		have = make(map[string]bool, len(c.Content)/2)
		for i := 0; i+1 < len(c.Content); i += 2 {
			have[c.Content[i].Value] = true
		}
	}
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
				if k := sc.Content[i].Value; !have[k] {
					have[k] = true
					c.Content = append(c.Content, sc.Content[i], sc.Content[i+1])
				}
			}
		}
	}
	return &c, nil
}

// overlay checks every overlay of envs (the value of the environments
// key envsKey, removed from root) and merges the selected one into root.
// It returns the selected overlay's name, or "".
//
// Each overlay is first put in the new shape, as root is, so that either
// shape overlays either. Every overlay is checked, selected or not: its
// keys and values against the schema, and under params and feature_flags
// against root (see free).
func (l *loader) overlay(root, envsKey, envs *yaml.Node, opts Options) (string, Errors) {
	var errs Errors
	if envs != nil && !isNull(envs) && envs.Kind != yaml.MappingNode {
		errs = append(errs, l.errorf(envs, "environments must map environment names to overlays, got %s", describe(envs)))
		envs = nil
	}
	if envs != nil && isNull(envs) {
		envs = nil
	}
	name, from := opts.Environment, Pos{File: l.file}
	if envsKey != nil {
		from = l.pos(envsKey)
	}
	if name == "" {
		name, from = opts.Vars["ADRULES_ENV"], Pos{File: l.file, Var: "ADRULES_ENV"}
	}
	if name == "" {
		name, from = opts.Vars["ENVIRONMENT"], Pos{File: l.file, Var: "ENVIRONMENT"}
		// ENVIRONMENT is a common name in deployments; a file without any
		// overlays does not have to list every value it may hold.
		if envs == nil {
			name = ""
		}
	}
	var names []string
	var key, sel *yaml.Node
	if envs != nil {
		for i := 0; i+1 < len(envs.Content); i += 2 {
			k := envs.Content[i]
			names = append(names, k.Value)
			if name != "" && (k.Value == name || key == nil && strings.EqualFold(k.Value, name)) {
				key, sel = k, envs.Content[i+1]
			}
		}
	}
	if name != "" && key == nil {
		defined := "the file defines no environments"
		if len(names) > 0 {
			defined = "the file defines " + strings.Join(names, ", ")
		}
		errs = append(errs, &Error{Pos: from, Msg: fmt.Sprintf("environment %q is not defined; %s", name, defined)})
	}
	if envs != nil {
		for i := 0; i+1 < len(envs.Content); i += 2 {
			k, ov := envs.Content[i], envs.Content[i+1]
			if isNull(ov) {
				continue
			}
			if ov.Kind != yaml.MappingNode {
				errs = append(errs, l.errorf(ov, "environment %s must be a mapping in the shape of the file, got %s", k.Value, describe(ov)))
				if k == key {
					sel = nil
				}
				continue
			}
			if j := keyIndex(ov, "environments"); j >= 0 {
				errs = append(errs, l.errorf(ov.Content[j], "an environment overlay cannot hold environments"))
				ov.Content = slices.Delete(ov.Content, j, j+2)
			}
			errs = append(errs, l.translate(ov)...)
			errs = append(errs, l.free(k.Value, root, ov)...)
			if k != key {
				// The selected overlay is checked in the merged document.
				_, _, e := l.decode(ov)
				errs = append(errs, e...)
			}
		}
	}
	if key == nil {
		return "", errs
	}
	if sel != nil && sel.Kind == yaml.MappingNode {
		merge(root, sel)
	}
	return key.Value, errs
}

// free applies to the overlay ov of environment env the rule that
// variables follow: under params and feature_flags, where the schema takes
// any key, an overlay may set only keys the file (root) has, so that a
// typo is an error rather than a parameter nobody reads; and under params a
// value keeps the type of the file's (see keepType). What it reports, it
// removes from ov, so that the overlay merges without it.
func (l *loader) free(env string, root, ov *yaml.Node) Errors {
	var errs Errors
	// walk checks o, the overlay's value at path, against base, the
	// file's; it returns false when o must not be merged.
	var walk func(path string, base, o *yaml.Node, typed bool) bool
	walk = func(path string, base, o *yaml.Node, typed bool) bool {
		if isNull(base) {
			return true // the file names the key and leaves its value open
		}
		if base.Kind == yaml.MappingNode && o.Kind == yaml.MappingNode {
			idx := keyIndexes(base)
			var names []string
			kept := o.Content[:0]
			for i := 0; i+1 < len(o.Content); i += 2 {
				k, v := o.Content[i], o.Content[i+1]
				p := path + "." + k.Value
				j, ok := idx[k.Value]
				if !ok {
					if names == nil {
						names = keyNames(base)
					}
					hint := keysOf(base, path)
					if s := suggest(k.Value, names); s != "" {
						hint = "; did you mean " + s + "?"
					}
					errs = append(errs, l.errorf(k, "environment %s sets %s, which the file does not define%s", env, p, hint))
					continue
				}
				if walk(p, base.Content[j+1], v, typed) {
					kept = append(kept, k, v)
				}
			}
			o.Content = kept
			return true
		}
		if !typed {
			return true // the decoder checks the type
		}
		if msg := keepType(base, o); msg != "" {
			errs = append(errs, l.errorf(o, "environment %s sets %s: %s", env, path, msg))
			return false
		}
		return true
	}
	kept := ov.Content[:0]
	for i := 0; i+1 < len(ov.Content); i += 2 {
		k, v := ov.Content[i], ov.Content[i+1]
		if k.Value == "params" || k.Value == "feature_flags" {
			base := child(root, k.Value)
			if base == nil {
				base = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} // the file has none
			}
			if !walk(k.Value, base, v, k.Value == "params") {
				continue
			}
		}
		kept = append(kept, k, v)
	}
	ov.Content = kept
	return errs
}

// keepType checks that n, which replaces the file's value old under
// params, is of old's type: a whole number for a whole number, a number
// for a decimal number, true or false for a bool, a mapping for a mapping
// and a list for a list. A whole number that replaces a decimal one is
// made decimal, and a scalar that replaces text becomes text, so that the
// parameter's type, which rules compile against, stays the file's. It
// returns what is wrong, or "".
func keepType(old, n *yaml.Node) string {
	switch {
	case isNull(old):
		return ""
	case old.Kind == yaml.MappingNode:
		if n.Kind != yaml.MappingNode {
			return "expected keys and values (a mapping), as the file has, got " + describe(n)
		}
		return ""
	case old.Kind == yaml.SequenceNode:
		if n.Kind != yaml.SequenceNode {
			return "expected a list, as the file has, got " + describe(n)
		}
		return ""
	}
	tag := ""
	if n.Kind == yaml.ScalarNode {
		tag = n.ShortTag()
	}
	switch old.ShortTag() {
	case "!!int":
		if tag != "!!int" {
			return fmt.Sprintf("expected a whole number like the file's %s, got %s", old.Value, describe(n))
		}
	case "!!float":
		switch tag {
		case "!!int":
			n.Tag = "!!float"
		case "!!float":
		default:
			return fmt.Sprintf("expected a number like the file's %s, got %s", old.Value, describe(n))
		}
	case "!!bool":
		if tag != "!!bool" {
			return fmt.Sprintf("expected true or false like the file's %s, got %s", old.Value, describe(n))
		}
	default:
		if tag == "" || tag == "!!null" {
			return fmt.Sprintf("expected text like the file's %q, got %s", old.Value, describe(n))
		}
		n.Tag = "!!str"
	}
	return ""
}

// merge deep-merges the mapping src into the mapping dst: mappings merge,
// everything else (scalars, sequences) replaces.
func merge(dst, src *yaml.Node) {
	idx := keyIndexes(dst)
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		j, ok := idx[k.Value]
		switch {
		case !ok:
			idx[k.Value] = len(dst.Content)
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

// keyIndexes maps each key of the mapping n to its index in n.Content,
// as keyIndex finds it, so that a loop over the keys of another mapping
// looks each up once instead of scanning n: an overlay of 20,000 keys on
// as many took 6 s.
func keyIndexes(n *yaml.Node) map[string]int {
	idx := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if _, ok := idx[n.Content[i].Value]; !ok {
			idx[n.Content[i].Value] = i
		}
	}
	return idx
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
	return quote(n.Value)
}

// quote quotes s for a message, cut to its first maxQuoted bytes (whole
// runes), so that a message about a long value stays short.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:n]), len(s))
}

// ruleLabel is the rule id that messages carry: id, cut to MaxRuleIDSize
// bytes if longer (which Validate reports).
func ruleLabel(id string) string {
	if len(id) <= MaxRuleIDSize {
		return id
	}
	n := MaxRuleIDSize
	for n > 0 && !utf8.RuneStart(id[n]) {
		n--
	}
	return id[:n] + "..."
}
