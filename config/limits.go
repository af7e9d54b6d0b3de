package config

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// sizer measures a node tree as expander.copy will expand it, without
// building anything. It walks the expansion and stops at the first node
// past MaxExpandedSize or MaxDepth, so it visits at most
// MaxExpandedSize/nodeCost nodes however many the expansion has.
type sizer struct {
	l      *loader
	size   int
	active map[*yaml.Node]bool // nodes being walked: an alias to one is a cycle
}

func newSizer(l *loader) *sizer {
	return &sizer{l: l, active: map[*yaml.Node]bool{}}
}

// measure reports the first place where the expansion of root passes a
// limit, or an alias that refers to itself.
func (s *sizer) measure(root *yaml.Node) *Error {
	return s.walk(root, 1, 0, nil)
}

// walk measures n, at depth level if it is a list or mapping, with a path
// of pathLen bytes. alias is the first alias followed to reach n, if any:
// the place in the file where a limit passed inside n is reported.
func (s *sizer) walk(n *yaml.Node, level, pathLen int, alias *yaml.Node) *Error {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || s.active[n.Alias] {
			return s.l.errorf(n, "alias *%s refers to itself", n.Value)
		}
		if alias == nil {
			alias = n
		}
		return s.walk(n.Alias, level, pathLen, alias)
	}
	if (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && level > MaxDepth {
		return s.over(n, alias, "here", "lists and mappings nest more than %[2]d deep %[1]s", MaxDepth)
	}
	if s.size += nodeCost + len(n.Value) + pathLen; s.size > MaxExpandedSize {
		return s.over(n, alias, "by this point", "the document is larger than 4 MiB %s; each key and value counts its text, its path and %d bytes", nodeCost)
	}
	s.active[n] = true
	defer delete(s.active, n)
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := s.walk(c, level+1, pathLen+len("[]")+digits(i), alias); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		// As in expander.copy: the pairs, then what "<<" merges, each
		// source a whole mapping at n's depth and path.
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				merges = append(merges, v)
				continue
			}
			text := keyText(k)
			if len(text) > MaxKeySize {
				return s.over(k, alias, "here", "this key is %[3]d bytes %[1]s; a key is at most %[2]d", MaxKeySize, len(text))
			}
			p := pathLen + len(text)
			if pathLen > 0 {
				p += len(".")
			}
			if err := s.walk(k, level+1, p, alias); err != nil {
				return err
			}
			if err := s.walk(v, level+1, p, alias); err != nil {
				return err
			}
		}
		if len(n.Content)%2 == 1 { // never from yaml.v3; copied all the same
			if err := s.walk(n.Content[len(n.Content)-1], level+1, pathLen, alias); err != nil {
				return err
			}
		}
		for _, m := range merges {
			srcs := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				srcs = m.Content
			}
			for _, src := range srcs {
				if err := s.walk(src, level, pathLen, alias); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// over reports a limit passed at n. where, the first argument of format,
// says where; when n is in the expansion of alias, the limit is reported
// at alias, "with alias *name expanded here".
func (s *sizer) over(n, alias *yaml.Node, where, format string, args ...any) *Error {
	if alias != nil {
		n, where = alias, fmt.Sprintf("with alias *%s expanded here", alias.Value)
	}
	return s.l.errorf(n, format, append([]any{where}, args...)...)
}

// keyText is the text of the key k once its alias, if any, is expanded.
func keyText(k *yaml.Node) string {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		return k.Alias.Value
	}
	return k.Value
}

// digits is the length of i in decimal.
func digits(i int) int {
	n := 1
	for ; i >= 10; i /= 10 {
		n++
	}
	return n
}

// effective checks the effective document d against the limits of a
// file, so that Canonical's output, which is what the config topic
// carries, always loads: the predecessor's sections moved under params,
// an overlay, variables and defaults can each make a document larger or
// deeper than its file.
func (l *loader) effective(d *Document) *Error {
	c := d.Canonical()
	too := len(c) > MaxFileSize
	if !too {
		var doc yaml.Node
		if err := yaml.Unmarshal(c, &doc); err != nil {
			return &Error{Pos: Pos{File: l.file}, Msg: "the canonical form does not parse: " + err.Error()}
		}
		too = len(doc.Content) == 1 && newSizer(&loader{file: l.file}).measure(doc.Content[0]) != nil
	}
	if too {
		return &Error{Pos: Pos{File: l.file}, Msg: fmt.Sprintf("the effective document (the file with its overlay, variables and defaults applied, and the predecessor's sections under params) is larger than a file may be: %d bytes as canonical JSON, %d expanded, or lists and mappings %d deep", MaxFileSize, MaxExpandedSize, MaxDepth)}
	}
	return nil
}
