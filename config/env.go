package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// genericPrefix starts the variables that name a key of the document:
// ADRULES__PARAMS__WINNER_DETECTION__CTR_THRESHOLD names
// params.winner_detection.ctr_threshold.
const genericPrefix = "ADRULES__"

// legacyVar says which key one of the predecessor's variables sets.
// Variables apply after the file is in the new shape (translate), so
// every path is one of the new shape's.
type legacyVar struct {
	// param is the path of a parameter under params.
	param string
	// guards is the path under guards, and unit the unit the predecessor's
	// number is in ("ms" or "h"), when guards wants a duration.
	guards, unit string
	// flag is the feature flag the variable sets.
	flag string
}

// legacyVars are the predecessor's variable names (DESIGN.md section 5).
var legacyVars = map[string]legacyVar{
	"WINNER_CTR_THRESHOLD":            {param: "winner_detection.ctr_threshold"},
	"WINNER_ROAS_THRESHOLD":           {param: "winner_detection.roas_threshold"},
	"WINNER_MIN_IMPRESSIONS":          {param: "winner_detection.min_impressions"},
	"LEARNING_CYCLE_INTERVAL_SECONDS": {param: "self_learning_cycle.interval_seconds"},
	"SAFE_EXECUTOR_POLL_INTERVAL_MS":  {guards: "poll_interval", unit: "ms"},
	"MAX_ACTIONS_PER_HOUR":            {guards: "rate_limit.max_per_hour"},
	"MAX_ACTIONS_PER_DAY":             {guards: "rate_limit.max_per_day"},
	"MAX_BUDGET_CHANGE_PCT":           {guards: "budget_velocity.max_change_pct"},
	"VELOCITY_WINDOW_HOURS":           {guards: "budget_velocity.window", unit: "h"},
	"JITTER_MIN_MS":                   {guards: "jitter.min", unit: "ms"},
	"JITTER_MAX_MS":                   {guards: "jitter.max", unit: "ms"},
	"FUZZY_BUDGET_VARIANCE_PCT":       {guards: "fuzzy_budget.variance_pct"},
	"RAG_AUTO_INDEXING_ENABLED":       {flag: "rag_auto_indexing"},
}

// ParamOverrides returns the sorted names of the variables in vars that
// Load would apply to a document: ADRULES__* and the predecessor's names.
// A running node takes its rule set only from the config topic, so cmd
// uses this to say at start which variables it ignores. Variables with
// empty values do not count, as Load ignores them.
func ParamOverrides(vars map[string]string) []string {
	var out []string
	for name, v := range vars {
		if v != "" && isOverride(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func isOverride(name string) bool {
	_, ok := legacyVars[name]
	return ok || strings.HasPrefix(name, genericPrefix) && len(name) > len(genericPrefix)
}

// override applies the variables of vars that name keys, in name order,
// to root in the new shape. Values are YAML scalars: 0.05 is a number,
// true a bool, 6h a string.
func (l *loader) override(root *yaml.Node, vars map[string]string) Errors {
	var errs Errors
	set := map[string]string{} // key path -> the variable that set it
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		value := vars[name]
		if value == "" || !isOverride(name) {
			continue
		}
		o := assignment{name: name, value: value}
		if lv, ok := legacyVars[name]; ok {
			switch {
			case lv.param != "":
				// The predecessor's names are process-wide leftovers of
				// its deployment: a file without the section one sets
				// (winner_detection, self_learning_cycle) has no use for
				// it. A missing key in a section the file has is a typo.
				section, _, _ := strings.Cut(lv.param, ".")
				if child(child(root, "params"), section) == nil {
					continue
				}
				o.path = append([]string{"params"}, strings.Split(lv.param, ".")...)
			case lv.flag != "":
				o.path, o.create = []string{"feature_flags", lv.flag}, true
			default:
				o.path, o.number, o.unit = append([]string{"guards"}, strings.Split(lv.guards, ".")...), true, lv.unit
			}
		} else {
			o.path = strings.Split(strings.ToLower(strings.TrimPrefix(name, genericPrefix)), "__")
			if o.path[0] == "safe_executor" {
				if err := l.executorPath(&o); err != nil {
					errs = append(errs, err)
					continue
				}
			}
		}
		path, err := l.assign(root, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := set[path]; ok && vars[prev] != value {
			errs = append(errs, &Error{Pos: Pos{File: l.file, Var: name}, Msg: fmt.Sprintf("both $%s and $%s set %s, to different values; keep one", prev, name, path)})
		}
		set[path] = name
	}
	return errs
}

// executorPath turns the path of a generic variable that names a key of
// the predecessor's safe_executor into the guards key it became.
func (l *loader) executorPath(o *assignment) *Error {
	from := strings.Join(o.path[1:], ".")
	j := slices.IndexFunc(executorKeys, func(e struct{ from, to string }) bool { return e.from == from })
	if j < 0 {
		var known []string
		for _, e := range executorKeys {
			known = append(known, e.from)
		}
		return &Error{Pos: Pos{File: l.file, Var: o.name}, Msg: fmt.Sprintf("safe_executor has no key %s; it has %s", from, strings.Join(known, ", "))}
	}
	o.path = append([]string{"guards"}, strings.Split(executorKeys[j].to, ".")...)
	switch {
	case strings.HasSuffix(from, "_ms"):
		o.number, o.unit = true, "ms"
	case strings.HasSuffix(from, "_hours"):
		o.number, o.unit = true, "h"
	}
	return nil
}

// assignment is one variable's setting of one key.
type assignment struct {
	name, value string
	path        []string
	create      bool   // the key may be created even in a free-form map
	number      bool   // the value must be a number
	unit        string // append this unit to the number: the key wants a duration
}

// paramSections are the predecessor's top-level sections that become
// params of the same name.
var paramSections = []string{"winner_detection", "rag_indexing", "self_learning_cycle", "model_evaluation"}

// assign sets one key of root and returns its path as written.
func (l *loader) assign(root *yaml.Node, o assignment) (string, *Error) {
	// undo takes back the sections made on the way to a key that then
	// cannot be set, so that a rejected variable leaves no trace.
	var undo []func()
	fail := func(format string, args ...any) (string, *Error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return "", &Error{Pos: Pos{File: l.file, Var: o.name}, Msg: fmt.Sprintf(format, args...)}
	}
	path := sectionPath(o.path)
	if slices.Contains(path, "") {
		return fail("the variable name has an empty part (___ or a trailing __)")
	}
	if path[0] == "environments" {
		return fail("environments are chosen with ADRULES_ENV, not set by variables")
	}
	// params and feature_flags are free-form: a missing key there is a typo,
	// not a new entry, since nothing else would catch it.
	free := !o.create && (path[0] == "params" || path[0] == "feature_flags")
	var done []string
	cur := root
	for i, seg := range path {
		last := i == len(path)-1
		at := strings.Join(done, ".")
		var slot **yaml.Node // where the next node lives
		if free && isNull(cur) {
			return fail("sets %s, which the file does not define", strings.Join(path, "."))
		}
		switch cur.Kind {
		case yaml.MappingNode:
			j := -1
			for k := 0; k+1 < len(cur.Content); k += 2 {
				if strings.EqualFold(cur.Content[k].Value, seg) {
					j = k
					break
				}
			}
			if j < 0 {
				if free {
					return fail("sets %s, which the file does not define%s", strings.Join(path, "."), keysOf(cur, at))
				}
				key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg}
				val := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				l.env[key], l.env[val] = o.name, o.name
				cur.Content = append(cur.Content, key, val)
				j = len(cur.Content) - 2
				m := cur
				undo = append(undo, func() {
					if k := slices.Index(m.Content, key); k >= 0 {
						m.Content = slices.Delete(m.Content, k, k+2)
					}
				})
			}
			done = append(done, cur.Content[j].Value)
			slot = &cur.Content[j+1]
		case yaml.SequenceNode:
			j := slices.IndexFunc(cur.Content, func(n *yaml.Node) bool {
				id := child(n, "id")
				return id != nil && strings.EqualFold(strings.ReplaceAll(id.Value, "-", "_"), seg)
			})
			if n, err := strconv.Atoi(seg); err == nil && n >= 0 && n < len(cur.Content) {
				j = n
			}
			if j < 0 {
				return fail("%s has no item %s (give an index from 0, or a rule id)", at, seg)
			}
			done = append(done, seg)
			slot = &cur.Content[j]
		default:
			return fail("%s is a single value, so it has no key %q", at, seg)
		}
		next := *slot
		if !last {
			if isNull(next) && !free {
				old := next
				next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				l.env[next] = o.name
				*slot = next
				undo = append(undo, func() { *slot = old })
			}
			cur = next
			continue
		}
		n, err := l.scalar(o, next, path[0] == "params")
		if err != nil {
			return fail("%s: %s", strings.Join(done, "."), err.Msg)
		}
		*slot = n
	}
	return strings.Join(done, "."), nil
}

// scalar builds the node a variable's value becomes, in place of old.
// Under params (param), the value keeps the type of the file's.
func (l *loader) scalar(o assignment, old *yaml.Node, param bool) (*yaml.Node, *Error) {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: o.value}
	n.Tag = n.ShortTag()
	l.env[n] = o.name
	num := n.Tag == "!!int" || n.Tag == "!!float"
	if o.unit != "" {
		d, msg := inUnit(n, o.unit)
		if msg != "" {
			return nil, &Error{Msg: msg}
		}
		n.Value, n.Tag = d, "!!str"
	} else if o.number && !num {
		return nil, &Error{Msg: fmt.Sprintf("expected a number, got %q", o.value)}
	}
	if old.Kind == yaml.MappingNode && len(old.Content) > 0 || old.Kind == yaml.SequenceNode {
		return nil, &Error{Msg: fmt.Sprintf("is %s; a variable can set only a single value", describe(old))}
	}
	if old.Kind != yaml.ScalarNode {
		return n, nil // a key the variable created
	}
	if old.ShortTag() == "!!bool" {
		b, err := strconv.ParseBool(o.value)
		if err != nil {
			return nil, &Error{Msg: fmt.Sprintf("expected true or false, got %q", o.value)}
		}
		n.Value, n.Tag = strconv.FormatBool(b), "!!bool"
	}
	if param {
		if msg := keepType(old, n); msg != "" {
			return nil, &Error{Msg: msg}
		}
		return n, nil
	}
	switch old.ShortTag() {
	case "!!int", "!!float":
		if !num {
			return nil, &Error{Msg: fmt.Sprintf("expected a number like the file's %s, got %q", old.Value, o.value)}
		}
	case "!!str":
		if o.unit == "" && !o.number {
			n.Tag = "!!str" // a string stays a string: "007" is not 7
		}
	}
	return n, nil
}

// units are the units in which the predecessor gave durations: the
// suffix of the duration, its name and its length.
var units = map[string]struct {
	name string
	d    time.Duration
}{"ms": {"milliseconds", time.Millisecond}, "h": {"hours", time.Hour}}

// inUnit reads the scalar n as a number in unit ("ms" or "h") and returns
// it as a duration ParseDuration reads, or what is wrong with it.
func inUnit(n *yaml.Node, unit string) (string, string) {
	u := units[unit]
	var f float64
	if tag := n.ShortTag(); n.Kind != yaml.ScalarNode || tag != "!!int" && tag != "!!float" || n.Decode(&f) != nil || !(f >= 0) {
		return "", fmt.Sprintf("expected a non-negative number of %s, got %s", u.name, describe(n))
	}
	if f*float64(u.d) >= math.MaxInt64 {
		return "", fmt.Sprintf("%s %s is too long", n.Value, u.name)
	}
	return strconv.FormatFloat(f, 'f', -1, 64) + unit, ""
}

// sectionPath lets a variable name the predecessor's param sections with
// or without the params prefix; translate has moved them under params.
func sectionPath(path []string) []string {
	if slices.Contains(paramSections, path[0]) {
		return append([]string{"params"}, path...)
	}
	return path
}

// keyNames returns the keys of the mapping n.
func keyNames(n *yaml.Node) []string {
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return keys
}

// maxListed is the most keys keysOf lists.
const maxListed = 20

// keysOf lists the keys of a mapping for a message, the first maxListed
// of them, so that each of many typos does not repeat thousands of keys.
func keysOf(n *yaml.Node, at string) string {
	keys := keyNames(n)
	if len(keys) == 0 {
		return ""
	}
	if at == "" {
		at = "the top level"
	}
	more := ""
	if len(keys) > maxListed {
		more = fmt.Sprintf(" and %d more", len(keys)-maxListed)
		keys = keys[:maxListed]
	}
	return "; " + at + " has " + strings.Join(keys, ", ") + more
}
