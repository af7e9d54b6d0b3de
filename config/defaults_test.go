package config

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaults(t *testing.T) {
	d, err := Load("t.yaml", []byte("rules: [{id: a, when: ad.ctr > 0.1, action: {type: pause}, group: fast}]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "default" || len(d.Windows) != 4 || d.Dedupe.Horizon != Duration(7*24*time.Hour) {
		t.Errorf("name %q windows %v dedupe %v", d.Name, d.Windows, d.Dedupe)
	}
	g := d.Guards
	if !*g.Enabled || g.RateLimit != (RateLimit{"account", 15, 100}) || g.Velocity != (BudgetVelocity{20, Duration(6 * time.Hour)}) ||
		!*g.Jitter.Enabled || g.Jitter.Min != Duration(3*time.Second) || g.Jitter.Max != Duration(18*time.Second) ||
		!*g.Fuzzy.Enabled || g.Fuzzy.VariancePct != 3 {
		t.Errorf("guards = %+v", g)
	}
	if r := d.Rules[0]; r.Group != "fast" || r.Enabled == nil || !*r.Enabled {
		t.Errorf("rule = %+v", r)
	}
	for _, name := range []string{"default", "fast"} {
		if c := d.Groups[name].ContinueOnError; c == nil || !*c {
			t.Errorf("group %s continue_on_error = %v", name, c)
		}
	}
	// Only the max given: the min follows it down.
	d, err = Load("t.yaml", []byte(base+"guards: {jitter: {max: 1s}}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if j := d.Guards.Jitter; j.Min != Duration(time.Second) || j.Max != Duration(time.Second) {
		t.Errorf("jitter = %+v", j)
	}
}

// A document built in code gets the same defaults and checks, and its
// errors carry the file name alone.
func TestDocumentInCode(t *testing.T) {
	d := &Document{File: "code", Rules: []Rule{WinnerRule()}, FeatureFlags: map[string]bool{"rag_auto_indexing": true}}
	d.Defaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	h := d.SHA256()
	d.Defaults()
	if d.SHA256() != h {
		t.Errorf("Defaults twice changed the hash")
	}
	d.Rules[0].Once = "always"
	err := d.Validate()
	if err == nil || err.Error() != `code: rule winner: once must be per_ad or left out, not "always"` {
		t.Errorf("got %v", err)
	}
}

// Duration reads 7d with yaml.v3 as well, for packages that decode it
// themselves.
func TestDurationYAML(t *testing.T) {
	var v struct{ D Duration }
	if err := yaml.Unmarshal([]byte("d: 7d"), &v); err != nil || v.D != Duration(7*24*time.Hour) {
		t.Errorf("got %v, %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 6x"), &v); err == nil {
		t.Errorf("6x accepted")
	}
}
