package config

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// The predecessor's file (DESIGN.md section 5) loads as it is: its
// sections are rewritten into the new shape on the node tree, so that
// positions survive and the strict decoder sees only one shape.

// executorKeys maps the predecessor's safe_executor keys to guards keys.
// A key ending in _ms or _hours holds a number in that unit and becomes a
// duration.
var executorKeys = []struct{ from, to string }{
	{"enabled", "enabled"},
	{"poll_interval_ms", "poll_interval"},
	{"rate_limiting.max_actions_per_hour", "rate_limit.max_per_hour"},
	{"rate_limiting.max_actions_per_day", "rate_limit.max_per_day"},
	{"budget_velocity.max_change_pct", "budget_velocity.max_change_pct"},
	{"budget_velocity.velocity_window_hours", "budget_velocity.window"},
	{"jitter.enabled", "jitter.enabled"},
	{"jitter.min_ms", "jitter.min"},
	{"jitter.max_ms", "jitter.max"},
	{"fuzzy_budgets.enabled", "fuzzy_budget.enabled"},
	{"fuzzy_budgets.variance_pct", "fuzzy_budget.variance_pct"},
}

// translate rewrites the predecessor's top-level sections in root (a file
// or an overlay) into the new shape: the param sections move under params,
// safe_executor becomes guards. A section it reports a problem with it
// leaves out, or keeps what of it is right.
func (l *loader) translate(root *yaml.Node) Errors {
	var errs Errors
	for _, name := range paramSections {
		i := keyIndex(root, name)
		if i < 0 {
			continue
		}
		k, v := root.Content[i], root.Content[i+1]
		if !isNull(v) && v.Kind != yaml.MappingNode {
			errs = append(errs, l.errorf(v, "%s must be a section of keys and values, got %s", name, describe(v)))
			root.Content = slices.Delete(root.Content, i, i+2)
			continue
		}
		if isNull(v) {
			v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column}
		}
		params := child(root, "params")
		switch {
		case params == nil:
			params = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: k.Line, Column: k.Column}
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "params", Line: k.Line, Column: k.Column}, params)
		case isNull(params):
			*params = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: params.Line, Column: params.Column}
		case params.Kind != yaml.MappingNode:
			continue // the decoder reports it
		}
		if j := keyIndex(params, name); j >= 0 {
			errs = append(errs, l.errorf(k, "%s is given both at the top level and under params (line %d); keep one", name, params.Content[j].Line))
			root.Content = slices.Delete(root.Content, i, i+2)
			continue
		}
		params.Content = append(params.Content, k, v)
		root.Content = slices.Delete(root.Content, i, i+2)
	}
	if i := keyIndex(root, "safe_executor"); i >= 0 {
		k := root.Content[i]
		if j := keyIndex(root, "guards"); j >= 0 {
			first, second := root.Content[j], k
			if k.Line < first.Line {
				first, second = k, first
			}
			errs = append(errs, l.errorf(second, "the file has both guards and safe_executor (line %d); they configure the same thing, keep one", first.Line))
			root.Content = slices.Delete(root.Content, i, i+2)
		} else {
			g, err := l.guards(root.Content[i+1])
			errs = append(errs, err...)
			root.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "guards", Line: k.Line, Column: k.Column}
			root.Content[i+1] = g
		}
	}
	return errs
}

// guards rewrites a safe_executor section as a guards section.
func (l *loader) guards(se *yaml.Node) (*yaml.Node, Errors) {
	g := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: se.Line, Column: se.Column}
	if isNull(se) {
		return g, nil
	}
	var errs Errors
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		where := "safe_executor" + strings.TrimSuffix("."+prefix, ".")
		if n.Kind != yaml.MappingNode {
			errs = append(errs, l.errorf(n, "%s must be a section of keys and values, got %s", where, describe(n)))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			from := prefix + k.Value
			j := slices.IndexFunc(executorKeys, func(e struct{ from, to string }) bool { return e.from == from })
			switch {
			case j >= 0:
				if isNull(v) {
					continue
				}
				if err := l.unit(v, from); err != nil {
					errs = append(errs, err)
					continue
				}
				l.put(g, executorKeys[j].to, k, v)
			case slices.ContainsFunc(executorKeys, func(e struct{ from, to string }) bool { return strings.HasPrefix(e.from, from+".") }):
				if !isNull(v) {
					walk(v, from+".")
				}
			default:
				errs = append(errs, l.errorf(k, "unknown key %q in %s; known keys: %s", k.Value, where, strings.Join(executorNames(prefix), ", ")))
			}
		}
	}
	walk(se, "")
	return g, errs
}

// executorNames lists the safe_executor keys under prefix.
func executorNames(prefix string) []string {
	var names []string
	for _, e := range executorKeys {
		if rest, ok := strings.CutPrefix(e.from, prefix); ok {
			name, _, _ := strings.Cut(rest, ".")
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	return names
}

// unit turns a predecessor's number of milliseconds or hours into a
// duration the decoder reads.
func (l *loader) unit(v *yaml.Node, key string) *Error {
	unit := ""
	switch {
	case strings.HasSuffix(key, "_ms"):
		unit = "ms"
	case strings.HasSuffix(key, "_hours"):
		unit = "h"
	default:
		return nil
	}
	d, msg := inUnit(v, unit)
	if msg != "" {
		return l.errorf(v, "%s", msg)
	}
	v.Value, v.Tag, v.Style = d, "!!str", 0
	return nil
}

// put sets the dotted path to v in the mapping g, creating sections as it
// goes; new keys take the position of the key they replace.
func (l *loader) put(g *yaml.Node, path string, key, v *yaml.Node) {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part, Line: key.Line, Column: key.Column}
		if i == len(parts)-1 {
			g.Content = append(g.Content, k, v)
			return
		}
		next := child(g, part)
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: key.Line, Column: key.Column}
			g.Content = append(g.Content, k, next)
		}
		g = next
	}
}

// winnerWhen is the condition of the built-in winner rule, as YAML folds
// the rule in DESIGN.md section 5.
const winnerWhen = "ad.impressions >= params.winner_detection.min_impressions && " +
	"ad.hours_live >= params.winner_detection.min_hours_live && " +
	"(params.winner_detection.require_both\n" +
	"  ? ad.ctr > params.winner_detection.ctr_threshold && ad.roas > params.winner_detection.roas_threshold\n" +
	"  : ad.ctr > params.winner_detection.ctr_threshold || ad.roas > params.winner_detection.roas_threshold)\n"

// WinnerRule returns the built-in winner rule (DESIGN.md S6), which Load
// adds to a document that has winner_detection params but no rules key,
// as the predecessor's file has. Load takes the emit type from
// rag_indexing.job_type and the values from rag_indexing.payload_fields
// (without ad_id and video_id) when the document has them.
func WinnerRule() Rule {
	return Rule{
		ID:        "winner",
		EnabledBy: "rag_auto_indexing",
		When:      winnerWhen,
		Once:      "per_ad",
		Emit:      &Emit{Type: "rag_index_winner", Values: []string{"ctr", "roas", "impressions"}},
	}
}

// builtins adds what the predecessor's sections imply: the winner rule
// when the file has winner_detection but no rules, and the default group's
// continue_on_error from self_learning_cycle.
func (l *loader) builtins(d *Document, hasRules bool) Errors {
	var errs Errors
	fail := func(path, format string, args ...any) {
		errs = append(errs, &Error{Pos: d.at(path), Msg: fmt.Sprintf(format, args...)})
	}
	if wd, ok := d.Params["winner_detection"]; ok && !hasRules {
		if _, ok := wd.(map[string]any); !ok {
			fail("params.winner_detection", "winner_detection must be a section with ctr_threshold, roas_threshold, require_both, min_impressions and min_hours_live")
		}
		r := WinnerRule()
		r.Pos = d.keyAt("params.winner_detection")
		r.WhenPos = ExprPos{File: r.Pos.File, Var: r.Pos.Var}
		if rag, ok := d.Params["rag_indexing"].(map[string]any); ok {
			if jt, ok := rag["job_type"]; ok {
				if s, ok := jt.(string); ok && s != "" {
					r.Emit.Type = s
				} else {
					fail("params.rag_indexing.job_type", "job_type must be the name of a job, such as rag_index_winner")
				}
			}
			if pf, ok := rag["payload_fields"]; ok {
				list, ok := pf.([]any)
				var values []string
				for _, f := range list {
					s, isString := f.(string)
					if !isString {
						ok = false
					} else if s != "ad_id" && s != "video_id" {
						values = append(values, s)
					}
				}
				if ok {
					r.Emit.Values = values
				} else {
					fail("params.rag_indexing.payload_fields", "payload_fields must be a list of metric names, such as [ctr, roas, impressions]")
				}
			}
		}
		d.Rules = []Rule{r}
		if _, ok := d.FeatureFlags[r.EnabledBy]; !ok {
			if d.FeatureFlags == nil {
				d.FeatureFlags = map[string]bool{}
			}
			d.FeatureFlags[r.EnabledBy] = true
		}
	}
	if slc, ok := d.Params["self_learning_cycle"].(map[string]any); ok {
		if v, ok := slc["continue_on_error"]; ok && d.Groups["default"].ContinueOnError == nil {
			if b, ok := v.(bool); ok {
				if d.Groups == nil {
					d.Groups = map[string]Group{}
				}
				d.Groups["default"] = Group{ContinueOnError: &b}
			} else {
				fail("params.self_learning_cycle.continue_on_error", "continue_on_error must be true or false")
			}
		}
	}
	return errs
}
