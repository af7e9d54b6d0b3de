package rules

import (
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/expr-lang/expr/ast"
)

// AdView is what a rule sees as `ad`: the ad's lifetime totals and ratios.
type AdView struct {
	Impressions int     `expr:"impressions"`
	Clicks      int     `expr:"clicks"`
	Conversions int     `expr:"conversions"`
	Events      int     `expr:"events"`
	Spend       float64 `expr:"spend"`
	Revenue     float64 `expr:"revenue"`
	CTR         float64 `expr:"ctr"`
	ROAS        float64 `expr:"roas"`
	CPA         float64 `expr:"cpa"`
	CPC         float64 `expr:"cpc"`
	CPM         float64 `expr:"cpm"`
	HoursLive   float64 `expr:"hours_live"`
	Budget      float64 `expr:"budget"`
}

// WindowView is what a rule sees as a window, e.g. `w24h`: sums and ratios
// of the deltas in the window ending at the event.
type WindowView struct {
	Impressions int     `expr:"impressions"`
	Clicks      int     `expr:"clicks"`
	Conversions int     `expr:"conversions"`
	Events      int     `expr:"events"`
	Spend       float64 `expr:"spend"`
	Revenue     float64 `expr:"revenue"`
	CTR         float64 `expr:"ctr"`
	ROAS        float64 `expr:"roas"`
	CPA         float64 `expr:"cpa"`
	CPC         float64 `expr:"cpc"`
	CPM         float64 `expr:"cpm"`
}

// EventView is what a rule sees as `event`: the triggering record.
type EventView struct {
	TS          int     `expr:"ts"`      // epoch milliseconds
	Hour        int     `expr:"hour"`    // hour of day, UTC, 0-23
	Weekday     int     `expr:"weekday"` // 0 = Sunday, UTC
	EventID     string  `expr:"event_id"`
	AccountID   string  `expr:"account_id"`
	CampaignID  string  `expr:"campaign_id"`
	AdsetID     string  `expr:"adset_id"`
	AdID        string  `expr:"ad_id"`
	VideoID     string  `expr:"video_id"`
	Impressions int     `expr:"impressions"`
	Clicks      int     `expr:"clicks"`
	Conversions int     `expr:"conversions"`
	Spend       float64 `expr:"spend"`
	Revenue     float64 `expr:"revenue"`
	Budget      float64 `expr:"budget"`
}

// ratio is a/b, or 0 when b is 0 (S5).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (t *Totals) window() WindowView {
	imp, clk, conv := float64(t.Impressions), float64(t.Clicks), float64(t.Conversions)
	return WindowView{
		Impressions: int(t.Impressions), Clicks: int(t.Clicks), Conversions: int(t.Conversions),
		Events: int(t.Events), Spend: t.Spend, Revenue: t.Revenue,
		CTR: ratio(clk, imp), ROAS: ratio(t.Revenue, t.Spend), CPA: ratio(t.Spend, conv),
		CPC: ratio(t.Spend, clk), CPM: ratio(t.Spend*1000, imp),
	}
}

func adView(s *AdState, ts int64) AdView {
	w := s.Life.window()
	return AdView{
		Impressions: w.Impressions, Clicks: w.Clicks, Conversions: w.Conversions, Events: w.Events,
		Spend: w.Spend, Revenue: w.Revenue, CTR: w.CTR, ROAS: w.ROAS, CPA: w.CPA, CPC: w.CPC, CPM: w.CPM,
		HoursLive: float64(ts-s.CreatedAt) / float64(time.Hour/time.Millisecond),
		Budget:    s.Budget,
	}
}

func eventView(ev *Event) EventView {
	t := time.UnixMilli(ev.TS).UTC()
	return EventView{
		TS: int(ev.TS), Hour: t.Hour(), Weekday: int(t.Weekday()),
		EventID: ev.EventID, AccountID: ev.AccountID, CampaignID: ev.CampaignID,
		AdsetID: ev.AdsetID, AdID: ev.AdID, VideoID: ev.VideoID,
		Impressions: int(ev.Impressions), Clicks: int(ev.Clicks), Conversions: int(ev.Conversions),
		Spend: ev.Spend, Revenue: ev.Revenue, Budget: ev.Budget,
	}
}

// window is one declared rolling window.
type window struct {
	name    string // canonical: w1h, w6h, w1d, w7d, w30m
	minutes int64
}

// windowNames returns the canonical name of a window and its aliases. Whole
// hours up to 47h are named in hours (w24h, alias w1d), longer whole days in
// days (w7d, alias w168h), anything else in minutes (w90m).
func windowNames(d config.Duration) (string, []string) {
	v := d.D()
	var names []string
	hours, days := v%time.Hour == 0, v%(24*time.Hour) == 0
	switch {
	case hours && v < 48*time.Hour:
		names = append(names, fmt.Sprintf("w%dh", v/time.Hour))
		if days {
			names = append(names, fmt.Sprintf("w%dd", v/(24*time.Hour)))
		}
	case days:
		names = append(names, fmt.Sprintf("w%dd", v/(24*time.Hour)), fmt.Sprintf("w%dh", v/time.Hour))
	case hours:
		names = append(names, fmt.Sprintf("w%dh", v/time.Hour))
	}
	names = append(names, fmt.Sprintf("w%dm", v/time.Minute))
	return names[0], names[1:]
}

// The env struct's fixed fields, by index.
const (
	envAd = iota
	envEvent
	envParams
	envFlags
	envBudget  // the evaluator's *budget
	envWindows // first window; one field per window follows
)

// envType builds the typed environment rules compile against: ad, event,
// params, flags, the string budget and one field per window. Params and
// flags become struct types, so a misspelt parameter is a compile error,
// not a nil at run time.
func envType(params map[string]any, flags map[string]bool, wins []window) (reflect.Type, error) {
	pt, err := valueType(params)
	if err != nil {
		return nil, err
	}
	ff := make(map[string]any, len(flags))
	for k, v := range flags {
		ff[k] = v
	}
	ft, _ := valueType(ff)
	fields := []reflect.StructField{
		{Name: "Ad", Type: reflect.TypeOf(AdView{}), Tag: `expr:"ad"`},
		{Name: "Event", Type: reflect.TypeOf(EventView{}), Tag: `expr:"event"`},
		{Name: "Params", Type: pt, Tag: `expr:"params"`},
		{Name: "Flags", Type: ft, Tag: `expr:"flags"`},
		{Name: "Budget", Type: budgetType, Tag: reflect.StructTag(fmt.Sprintf(`expr:%q json:"-"`, budgetVar))},
	}
	for i, w := range wins {
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("W%d", i), Type: reflect.TypeOf(WindowView{}),
			Tag: reflect.StructTag(fmt.Sprintf(`expr:%q`, w.name)),
		})
	}
	return reflect.StructOf(fields), nil
}

// valueType maps a decoded YAML value to a Go type: maps become structs with
// one field per key (in key order), scalars keep their type.
func valueType(v any) (reflect.Type, error) {
	switch v := v.(type) {
	case map[string]any:
		keys := sortedKeys(v)
		fields := make([]reflect.StructField, 0, len(keys))
		for i, k := range keys {
			t, err := valueType(v[k])
			if err != nil {
				return nil, fmt.Errorf("%s.%w", k, err)
			}
			fields = append(fields, reflect.StructField{
				Name: fmt.Sprintf("F%d", i), Type: t, Tag: reflect.StructTag(fmt.Sprintf(`expr:%q`, k)),
			})
		}
		return reflect.StructOf(fields), nil
	case int:
		return reflect.TypeOf(0), nil
	case float64:
		return reflect.TypeOf(0.0), nil
	case bool:
		return reflect.TypeOf(false), nil
	case string:
		return reflect.TypeOf(""), nil
	case []any:
		return reflect.TypeOf([]any(nil)), nil
	case nil:
		return reflect.TypeOf((*any)(nil)).Elem(), nil
	}
	return nil, fmt.Errorf("unsupported parameter value %v (%T)", v, v)
}

// setValue stores the YAML value v into dst, whose type valueType built.
func setValue(dst reflect.Value, v any) {
	switch v := v.(type) {
	case map[string]any:
		for i, k := range sortedKeys(v) {
			setValue(dst.Field(i), v[k])
		}
	case nil:
	default:
		dst.Set(reflect.ValueOf(v))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// constPatcher rewrites expressions before type checking: window aliases
// become their canonical names, and params.x.y and flags.x become the
// constants they are for the life of the rule set, so evaluation reads no
// parameter at run time.
type constPatcher struct {
	params  map[string]any
	flags   map[string]bool
	aliases map[string]string
	// used collects every identifier the expressions name, so evaluation
	// sums only the windows some rule reads.
	used map[string]bool
}

func (p *constPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if c, ok := p.aliases[n.Value]; ok {
			n.Value = c
		}
		p.used[n.Value] = true
	case *ast.MemberNode:
		root, path, ok := memberPath(n)
		if !ok {
			return
		}
		switch root {
		case "params":
			var cur any = p.params
			for _, k := range path {
				m, ok := cur.(map[string]any)
				if !ok {
					return
				}
				if cur, ok = m[k]; !ok {
					return
				}
			}
			if c := constNode(cur); c != nil {
				ast.Patch(node, c)
			}
		case "flags":
			if len(path) == 1 {
				if v, ok := p.flags[path[0]]; ok {
					ast.Patch(node, &ast.BoolNode{Value: v})
				}
			}
		}
	}
}

// memberPath splits root.a.b into "root" and [a b].
func memberPath(n *ast.MemberNode) (string, []string, bool) {
	var path []string
	var cur ast.Node = n
	for {
		switch c := cur.(type) {
		case *ast.MemberNode:
			s, ok := c.Property.(*ast.StringNode)
			if !ok || c.Optional {
				return "", nil, false
			}
			path = append(path, s.Value)
			cur = c.Node
		case *ast.IdentifierNode:
			for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
				path[i], path[j] = path[j], path[i]
			}
			return c.Value, path, true
		default:
			return "", nil, false
		}
	}
}

func constNode(v any) ast.Node {
	switch v := v.(type) {
	case int:
		return &ast.IntegerNode{Value: v}
	case float64:
		return &ast.FloatNode{Value: v}
	case bool:
		return &ast.BoolNode{Value: v}
	case string:
		return &ast.StringNode{Value: v}
	}
	return nil
}
