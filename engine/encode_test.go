package engine_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
)

// TestEncode: what every sink writes is the standard encoding but for the
// HTML escapes, with no trailing newline; what cannot be encoded is an
// error.
func TestEncode(t *testing.T) {
	const explain = `ctr 0.034 > 0.03 && spend < 5 -> true`
	b, err := engine.Encode(map[string]any{"explain": []string{explain}, "n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"explain":["` + explain + `"],"n":1}`; string(b) != want {
		t.Errorf("Encode =\n %s\nwant\n %s", b, want)
	}
	for _, v := range []any{
		rules.Decision{RuleID: "r<1>", Type: "pause", Explain: []string{explain}},
		engine.ConfigApplied{Type: engine.TypeConfigApplied, RulesetVersion: 3, RulesetSHA256: "ab"},
	} {
		b, err := engine.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		std, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		unescape := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")
		if bytes.HasSuffix(b, []byte("\n")) || string(b) != unescape.Replace(string(std)) {
			t.Errorf("Encode =\n %s\njson.Marshal =\n %s", b, std)
		}
	}
	if _, err := engine.Encode(make(chan int)); err == nil {
		t.Error("Encode of a channel succeeded")
	}
}
