package config

import (
	"strings"
	"testing"
)

// FuzzLoad checks Load never panics, and that every document it accepts
// round-trips: Canonical, then Load, gives the same hash.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"design.yaml", "learning_config.yaml", "learning_config.new.yaml"} {
		f.Add(readFile(f, name))
	}
	f.Add([]byte(base))
	f.Add([]byte("a: &a [*a, *a]\nb: &b [*a, *a]\n"))
	f.Add([]byte("params: &p {x: 1}\nfeature_flags: {<<: *p}\n"))
	f.Add([]byte(`rules: [{id: x, when: "a\tb", emit: {type: t}}]`))
	// Issue 11 row 8 and its kin: small files that were large documents.
	f.Add(aliasBomb())
	f.Add(longKey(10_000))
	f.Add(longPaths())
	f.Add([]byte("params: " + strings.Repeat("{a: ", 64) + "1" + strings.Repeat("}", 64) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Load("fuzz.yaml", data, Options{})
		if err != nil {
			return
		}
		c := d.Canonical()
		d2, err := Load("canonical.json", c, Options{})
		if err != nil {
			t.Fatalf("canonical form does not load: %v\n%s", err, c)
		}
		if d.SHA256() != d2.SHA256() {
			t.Fatalf("round trip changed the hash:\n%s\n%s", c, d2.Canonical())
		}
	})
}
