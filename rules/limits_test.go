package rules_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
)

// Issue 11: every input surface of the rules package is bounded by a
// documented limit, checked before the expensive work. The limits are
// written out here as numbers, as docs/rules.md and docs/events.md state
// them.

// docWith returns a document of one rule, built without YAML (so without
// the config package's own size limits in the way).
func docWith(id, when string, values ...string) *config.Document {
	doc := &config.Document{
		Name: "limits", Windows: config.DefaultWindows(),
		Rules: []config.Rule{{ID: id, When: when, Emit: &config.Emit{Type: "t", Values: values}}},
	}
	doc.Defaults()
	return doc
}

func nested(open, close string, depth int, inner string) string {
	return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
}

// TestExpressionLimits (row 1): a when of 524,248 nested parentheses (a
// 1 MiB rules file) overflowed the stack in expr's parser; the source's
// length and bracket depth are checked before expr sees it.
func TestExpressionLimits(t *testing.T) {
	for _, tc := range []struct {
		name, when string
		values     []string
		want       string // "" compiles
	}{
		{"524,248 parentheses", nested("(", ")", 524248, "true"), nil, "1048500 bytes long; at most 16384"},
		{"5,000 parentheses", nested("(", ")", 5000, "true"), nil, "more than 64 deep"},
		{"65 parentheses", nested("(", ")", 65, "true"), nil, "more than 64 deep"},
		{"64 parentheses", nested("(", ")", 64, "true"), nil, ""},
		{"arrays", "len(" + nested("[", "]", 1000, "") + ") > 0", nil, "more than 64 deep"},
		{"maps and closures", "len(" + nested("{a: ", "}", 100, "1") + ") > 0", nil, "more than 64 deep"},
		{"brackets in strings do not count", `event.ad_id != "` + strings.Repeat("(", 1000) + `" && event.ad_id != '` + strings.Repeat("[", 1000) + `'`, nil, ""},
		{"nor in comments", "/* " + strings.Repeat("(", 100) + " */ true // " + strings.Repeat("{", 100), nil, ""},
		{"16 KiB", "ad.clicks >= 0" + strings.Repeat(" ", 16<<10-len("ad.clicks >= 0")), nil, ""},
		{"over 16 KiB", "ad.clicks >= 0" + strings.Repeat(" ", 16<<10), nil, "16398 bytes long; at most 16384"},
		{"an emit value", "true", []string{nested("(", ")", 524248, "1")}, "1048497 bytes long"},
		{"a deep emit value", "true", []string{nested("(", ")", 65, "1")}, "more than 64 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.Compile(docWith("deep", tc.when, tc.values...), 1)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *config.Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) || ce.RuleID != "deep" {
				t.Fatalf("err = %v, want a config error of rule deep saying %q", err, tc.want)
			}
		})
	}
}

// TestExpressionLimitsPosition: the error points at the bracket that goes
// too deep, as FILE:LINE:COL with the rule id, like every compile error.
func TestExpressionLimitsPosition(t *testing.T) {
	_, err := compile(t, "rules:\n  - id: deep\n    when: ad.clicks > 0 && "+nested("(", ")", 70, "true")+"\n    emit: {type: t}\n")
	// "    when: ad.clicks > 0 && " is 27 columns: the 65th ( is at 28+64.
	want := "rules.yaml:3:92: rule deep: when: brackets nest more than 64 deep"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %s", err, want)
	}
}
