package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// genericPrefix starts the variables that name a key of the document:
// ADRULES__PARAMS__WINNER_DETECTION__CTR_THRESHOLD names
// params.winner_detection.ctr_threshold.
const genericPrefix = "ADRULES__"

// legacyVar says which key one of the predecessor's variables sets.
type legacyVar struct {
	// param is the path of a parameter, in a section that lives at the
	// top level (predecessor shape) or under params (new shape).
	param string
	// executor is the path under safe_executor, for files that use it;
	// guards the path under guards, for the others, and unit the unit the
	// predecessor's number is in ("ms" or "h"), when guards wants a
	// duration.
	executor, guards, unit string
	// flag is the feature flag the variable sets.
	flag string
}

// legacyVars are the predecessor's variable names (DESIGN.md section 5).
var legacyVars = map[string]legacyVar{
	"WINNER_CTR_THRESHOLD":            {param: "winner_detection.ctr_threshold"},
	"WINNER_ROAS_THRESHOLD":           {param: "winner_detection.roas_threshold"},
	"WINNER_MIN_IMPRESSIONS":          {param: "winner_detection.min_impressions"},
	"LEARNING_CYCLE_INTERVAL_SECONDS": {param: "self_learning_cycle.interval_seconds"},
	"SAFE_EXECUTOR_POLL_INTERVAL_MS":  {executor: "poll_interval_ms", guards: "poll_interval", unit: "ms"},
	"MAX_ACTIONS_PER_HOUR":            {executor: "rate_limiting.max_actions_per_hour", guards: "rate_limit.max_per_hour"},
	"MAX_ACTIONS_PER_DAY":             {executor: "rate_limiting.max_actions_per_day", guards: "rate_limit.max_per_day"},
	"MAX_BUDGET_CHANGE_PCT":           {executor: "budget_velocity.max_change_pct", guards: "budget_velocity.max_change_pct"},
	"VELOCITY_WINDOW_HOURS":           {executor: "budget_velocity.velocity_window_hours", guards: "budget_velocity.window", unit: "h"},
	"JITTER_MIN_MS":                   {executor: "jitter.min_ms", guards: "jitter.min", unit: "ms"},
	"JITTER_MAX_MS":                   {executor: "jitter.max_ms", guards: "jitter.max", unit: "ms"},
	"FUZZY_BUDGET_VARIANCE_PCT":       {executor: "fuzzy_budgets.variance_pct", guards: "fuzzy_budget.variance_pct"},
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

// override applies the variables of vars that name keys, in name order.
// Values are YAML scalars: 0.05 is a number, true a bool, 6h a string.
func (l *loader) override(root *yaml.Node, vars map[string]string) error {
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
				o.path = strings.Split(lv.param, ".")
			case lv.flag != "":
				o.path, o.create = []string{"feature_flags", lv.flag}, true
			case keyIndex(root, "safe_executor") >= 0:
				o.path, o.number = append([]string{"safe_executor"}, strings.Split(lv.executor, ".")...), true
			default:
				o.path, o.number, o.unit = append([]string{"guards"}, strings.Split(lv.guards, ".")...), true, lv.unit
			}
		} else {
			o.path = strings.Split(strings.ToLower(strings.TrimPrefix(name, genericPrefix)), "__")
		}
		path, err := l.assign(root, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := set[path]; ok && vars[prev] != value {
			errs = append(errs, &Error{Pos: Pos{File: "$" + name}, Msg: fmt.Sprintf("both $%s and $%s set %s, to different values; keep one", prev, name, path)})
		}
		set[path] = name
	}
	if len(errs) > 0 {
		return errs
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
	fail := func(format string, args ...any) (string, *Error) {
		return "", &Error{Pos: Pos{File: "$" + o.name}, Msg: fmt.Sprintf(format, args...)}
	}
	path := sectionPath(root, o.path)
	if slices.Contains(path, "") {
		return fail("the variable name has an empty part (___ or a trailing __)")
	}
	if path[0] == "environments" {
		return fail("environments are chosen with ADRULES_ENV, not set by variables")
	}
	// params and feature_flags are free-form: a missing key there is a typo,
	// not a new entry, since nothing else would catch it.
	free := !o.create && (path[0] == "params" || path[0] == "feature_flags" || slices.Contains(paramSections, path[0]))
	var done []string
	cur := root
	for i, seg := range path {
		last := i == len(path)-1
		at := strings.Join(done, ".")
		var slot **yaml.Node // where the next node lives
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
				next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				l.env[next] = o.name
				*slot = next
			}
			cur = next
			continue
		}
		n, err := l.scalar(o, next)
		if err != nil {
			return fail("%s: %s", strings.Join(done, "."), err.Msg)
		}
		*slot = n
	}
	return strings.Join(done, "."), nil
}

// scalar builds the node a variable's value becomes, in place of old.
func (l *loader) scalar(o assignment, old *yaml.Node) (*yaml.Node, *Error) {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: o.value}
	n.Tag = n.ShortTag()
	l.env[n] = o.name
	num := n.Tag == "!!int" || n.Tag == "!!float"
	if o.number && !num {
		return nil, &Error{Msg: fmt.Sprintf("expected a number, got %q", o.value)}
	}
	if o.unit != "" {
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, &Error{Msg: fmt.Sprintf("expected a number, got %q", o.value)}
		}
		n.Value, n.Tag = strconv.FormatFloat(f, 'f', -1, 64)+o.unit, "!!str"
	}
	if old.Kind == yaml.MappingNode && len(old.Content) > 0 || old.Kind == yaml.SequenceNode {
		return nil, &Error{Msg: fmt.Sprintf("is %s; a variable can set only a single value", describe(old))}
	}
	if old.Kind != yaml.ScalarNode {
		return n, nil // a key the variable created
	}
	switch old.ShortTag() {
	case "!!int", "!!float":
		if !num {
			return nil, &Error{Msg: fmt.Sprintf("expected a number like the file's %s, got %q", old.Value, o.value)}
		}
	case "!!bool":
		b, err := strconv.ParseBool(o.value)
		if err != nil {
			return nil, &Error{Msg: fmt.Sprintf("expected true or false, got %q", o.value)}
		}
		n.Value, n.Tag = strconv.FormatBool(b), "!!bool"
	case "!!str":
		if o.unit == "" && !o.number {
			n.Tag = "!!str" // a string stays a string: "007" is not 7
		}
	}
	return n, nil
}

// sectionPath lets a variable name the predecessor's param sections with
// or without the params prefix, wherever the file keeps them.
func sectionPath(root *yaml.Node, path []string) []string {
	params := child(root, "params")
	switch {
	case slices.Contains(paramSections, path[0]) && keyIndex(root, path[0]) < 0 && keyIndex(params, path[0]) >= 0:
		return append([]string{"params"}, path...)
	case len(path) > 1 && path[0] == "params" && slices.Contains(paramSections, path[1]) &&
		keyIndex(params, path[1]) < 0 && keyIndex(root, path[1]) >= 0:
		return path[1:]
	}
	return path
}

// keysOf lists the keys of a mapping for a message.
func keysOf(n *yaml.Node, at string) string {
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	if len(keys) == 0 {
		return ""
	}
	if at == "" {
		at = "the top level"
	}
	return "; " + at + " has " + strings.Join(keys, ", ")
}
