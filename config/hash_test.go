package config

import (
	"strings"
	"testing"
)

// TestHashStable checks the hash depends on what the document says, not
// on how the file says it: formatting, comments, key order, flow or block
// style, quoting, units and defaults written out.
func TestHashStable(t *testing.T) {
	a := `name: test
params:
  winner_detection: {ctr_threshold: 0.03, min_impressions: 1000}
feature_flags: {budget_scaling: true}
rules:
  - id: scale
    enabled_by: budget_scaling
    when: w24h.roas > 4
    cooldown: 6h
    action: {type: budget_change, change_pct: 20}
`
	b := `# the same, written differently
rules:
- action:
    change_pct: 20.0
    type: "budget_change"
  cooldown: 360m   # six hours
  when: 'w24h.roas > 4'
  enabled_by: budget_scaling
  id: scale
  group: default
  enabled: true
feature_flags:
  budget_scaling: true
params:
  winner_detection:
    min_impressions: 1_000
    ctr_threshold: 3e-2
guards:
  rate_limit: {per: account, max_per_hour: 15}
  jitter: {min: 3000ms}
windows: [7d, 1h, 24h, 6h]
name: "test"
`
	da, err := Load("a.yaml", []byte(a), Options{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := Load("b.yaml", []byte(b), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if da.SHA256() != db.SHA256() {
		t.Errorf("hashes differ:\n%s\n%s", da.Canonical(), db.Canonical())
	}
	if len(da.SHA256()) != 64 {
		t.Errorf("SHA256 = %q", da.SHA256())
	}

	// Any change of a value changes the hash.
	for _, change := range [][2]string{
		{"ctr_threshold: 0.03", "ctr_threshold: 0.031"},
		{"min_impressions: 1000", "min_impressions: 1001"},
		{"min_impressions: 1000", "min_impressions: 1000.0"}, // a float is not an int
		{"cooldown: 6h", "cooldown: 7h"},
		{"change_pct: 20", "change_pct: 25"},
		{"name: test", "name: other"},
		{"budget_scaling: true", "budget_scaling: false"},
		{"w24h.roas > 4", "w24h.roas > 4.5"},
	} {
		c := strings.Replace(a, change[0], change[1], 1)
		dc, err := Load("c.yaml", []byte(c), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if dc.SHA256() == da.SHA256() {
			t.Errorf("%s -> %s kept the hash", change[0], change[1])
		}
	}
}

// TestCanonicalRoundTrip checks that Canonical's output loads back to the
// same document, for every file in testdata and every environment.
func TestCanonicalRoundTrip(t *testing.T) {
	for _, tc := range []struct{ file, env string }{
		{"design.yaml", ""},
		{"design.yaml", "development"},
		{"learning_config.yaml", ""},
		{"learning_config.yaml", "development"},
		{"learning_config.yaml", "staging"},
		{"learning_config.new.yaml", ""},
	} {
		d, err := Load(tc.file, readFile(t, tc.file), Options{Environment: tc.env})
		if err != nil {
			t.Fatal(err)
		}
		c := d.Canonical()
		d2, err := Load("canonical.json", c, Options{})
		if err != nil {
			t.Fatalf("%s/%s: canonical form does not load: %v\n%s", tc.file, tc.env, err, c)
		}
		if d.SHA256() != d2.SHA256() {
			t.Errorf("%s/%s: round trip changed the hash:\n%s\n%s", tc.file, tc.env, c, d2.Canonical())
		}
		if strings.Contains(string(c), tc.file) || strings.Contains(string(c), "Pos") {
			t.Errorf("canonical form holds where it came from: %s", c)
		}
	}
}

// Floats stay floats in the canonical form, so a node reading it from the
// config topic sees the same types as the file had.
func TestCanonicalFloats(t *testing.T) {
	d, err := Load("t.yaml", []byte(base+"params: {p: {f: 3.0, i: 3, big: 1.0e+25, small: 0.0000001, neg: -2.0}}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := string(d.Canonical())
	for _, want := range []string{`"f":3.0`, `"i":3,`, `"big":1e+25`, `"small":1e-7`, `"neg":-2.0`} {
		if !strings.Contains(c, want) {
			t.Errorf("canonical form lacks %s: %s", want, c)
		}
	}
	d2, err := Load("c.json", []byte(c), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := d2.Params["p"].(map[string]any)
	if _, ok := p["f"].(float64); !ok {
		t.Errorf("f = %T, want float64", p["f"])
	}
	if _, ok := p["i"].(int); !ok {
		t.Errorf("i = %T, want int", p["i"])
	}
}

// Explicit zeros that are valid survive the round trip: they are not
// defaults.
func TestCanonicalExplicitZeros(t *testing.T) {
	d, err := Load("t.yaml", []byte(base+"guards: {jitter: {min: 0s, max: 0s}, fuzzy_budget: {variance_pct: 0}}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Guards.Jitter.Min != 0 || d.Guards.Jitter.Max != 0 || d.Guards.Fuzzy.VariancePct != 0 {
		t.Fatalf("guards = %+v", d.Guards)
	}
	d2, err := Load("c.json", d.Canonical(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d2.SHA256() != d.SHA256() {
		t.Errorf("round trip changed the hash:\n%s\n%s", d.Canonical(), d2.Canonical())
	}
}
