package streams_test

import (
	"testing"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/internal/jsonl"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
)

// TestEncodeIsJSONL: what a node writes to Kafka has the bytes of what a
// backtest writes to a file (jsonl.Marshal): HTML characters as written,
// no trailing newline.
func TestEncodeIsJSONL(t *testing.T) {
	for _, v := range []any{
		rules.Decision{RuleID: "r<1>", Type: "pause", Explain: []string{"ctr 0.034 > 0.03 && spend < 5 true"}},
		engine.ConfigApplied{Type: engine.TypeConfigApplied, RulesetVersion: 3, RulesetSHA256: "ab"},
		map[string]any{"a": "<&>", "b": []int{1, 2}},
	} {
		got, err := streams.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := jsonl.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) || got[len(got)-1] == '\n' {
			t.Errorf("Encode: %s\njsonl.Marshal: %s", got, want)
		}
	}
}
