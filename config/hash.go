package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// Canonical returns the effective document as deterministic JSON: the
// value that gets a version and a hash. Map keys are sorted, windows are
// sorted, floats keep a decimal point (3.0 stays a float when read back),
// and where the document came from (File, Environment, positions) is
// left out. YAML reads JSON, so Load of Canonical's output gives a
// document with the same Canonical form.
//
// Canonical is meant for documents that pass Validate; it panics on
// values JSON cannot hold (NaN, infinities, or types Load never makes).
func (d *Document) Canonical() []byte {
	c := *d
	c.Windows = slices.Clone(d.Windows)
	slices.Sort(c.Windows)
	if d.Params != nil {
		c.Params = canonical(d.Params).(map[string]any)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep && and > readable in conditions
	if err := enc.Encode(&c); err != nil {
		panic("config: Canonical: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// SHA256 returns the hex SHA-256 of Canonical.
func (d *Document) SHA256() string {
	sum := sha256.Sum256(d.Canonical())
	return hex.EncodeToString(sum[:])
}

// canonical copies a params value, marking floats so they encode as floats.
func canonical(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = canonical(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = canonical(e)
		}
		return s
	case float64:
		return float(x)
	}
	return v
}

// float encodes as encoding/json does, plus ".0" where that would look
// like an integer.
type float float64

func (f float) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(float64(f))
	if err == nil && isDigits(b) {
		b = append(b, ".0"...)
	}
	return b, err
}

func isDigits(b []byte) bool {
	for i, c := range b {
		if (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return false
		}
	}
	return true
}
