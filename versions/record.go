package versions

import (
	"encoding/json"
	"fmt"
	"time"
)

// Record is one published version of a rule set: the value of a record on
// the config topic (compacted, key = the rule set's name, or ShadowKey of
// it for a shadow) and on the config history topic (kept).
type Record struct {
	Name string `json:"name"`
	// Version is in 1..MaxVersion: Live and Shadows refuse a record
	// outside it.
	Version     int64  `json:"version"`
	SHA256      string `json:"sha256"`
	Author      string `json:"author"`
	PublishedAt string `json:"published_at"`
	// Document is the effective document in its canonical JSON form.
	Document json.RawMessage `json:"document"`
	// Shadow marks a shadow (challenger) version, published under
	// ShadowKey(Name): nodes evaluate it beside the live one and write its
	// outputs to the shadow topics only.
	Shadow bool `json:"shadow,omitempty"`
	// Retired, on a shadow record of the history topic, says the shadow
	// was retired (the config topic got a tombstone under ShadowKey(Name));
	// Version is then the version retired, and there is no Document.
	Retired bool `json:"retired,omitempty"`
	// Signature is the publisher's signature of Signed() (nil: unsigned).
	// A node accepts a version only when it verifies under a key of the
	// node's trust list; a retirement is not signed.
	Signature *Signature `json:"signature,omitempty"`
}

// Signed is what c's signature covers: its rule set, version number,
// document hash and kind (live or shadow).
func (c Record) Signed() Version {
	return Version{Name: c.Name, Number: c.Version, SHA256: c.SHA256, Shadow: c.Shadow}
}

// ShadowKey is the config topic key of the shadow of rule set name.
func ShadowKey(name string) string { return name + ".shadow" }

// Key is the config topic key c is published under: its rule set's name,
// or ShadowKey of it for a shadow.
func (c Record) Key() string {
	if c.Shadow {
		return ShadowKey(c.Name)
	}
	return c.Name
}

// PublishedLayout is RFC 3339 with milliseconds, the form of PublishedAt:
// a shadow starts at its publish time, to the millisecond.
const PublishedLayout = "2006-01-02T15:04:05.000Z07:00"

// PublishedMilli returns c's publish time in epoch milliseconds.
func (c Record) PublishedMilli() (int64, error) {
	t, err := time.Parse(time.RFC3339, c.PublishedAt)
	if err != nil {
		return 0, fmt.Errorf("published_at %q: %w", c.PublishedAt, err)
	}
	return t.UnixMilli(), nil
}

// Entry is one record of the config or config history topic as read: its
// key, its value (nil: a tombstone) and its offset, which names it in the
// reasons a record is refused for.
type Entry struct {
	Key, Value []byte
	Offset     int64
}

// Live decodes the live records of rule set name among entries, in order,
// skipping tombstones and other keys (the shadow's, ShadowKey(name), and
// any other). Entries under name that do not decode, that say they are a
// shadow, or whose version is outside 1..MaxVersion, are returned in bad
// with the reason. Their signatures are not checked here.
func Live(entries []Entry, name string) (good []Record, bad []string) {
	for _, e := range entries {
		if string(e.Key) != name || e.Value == nil {
			continue
		}
		var c Record
		if err := json.Unmarshal(e.Value, &c); err != nil || c.Name != name || len(c.Document) == 0 || c.Shadow || c.Retired {
			bad = append(bad, fmt.Sprintf("offset %d: not a config record of %q", e.Offset, name))
			continue
		}
		if err := CheckVersion(c.Version); err != nil {
			bad = append(bad, fmt.Sprintf("offset %d: %v", e.Offset, err))
			continue
		}
		good = append(good, c)
	}
	return good, bad
}

// Shadows decodes the shadow records of rule set name among entries (key
// ShadowKey(name)), in order, skipping other keys. A tombstone (the config
// topic) or a record with Retired (the history) is returned as a record
// with Retired set: the shadow ends there. Entries that do not decode, or
// whose version is outside 1..MaxVersion, are returned in bad with the
// reason. Their signatures are not checked here.
func Shadows(entries []Entry, name string) (good []Record, bad []string) {
	key := ShadowKey(name)
	for _, e := range entries {
		if string(e.Key) != key {
			continue
		}
		if e.Value == nil {
			good = append(good, Record{Name: name, Shadow: true, Retired: true})
			continue
		}
		var c Record
		err := json.Unmarshal(e.Value, &c)
		if err != nil || c.Name != name || !c.Shadow || !c.Retired && len(c.Document) == 0 {
			bad = append(bad, fmt.Sprintf("offset %d: not a shadow config record of %q", e.Offset, name))
			continue
		}
		if err := CheckVersion(c.Version); err != nil {
			bad = append(bad, fmt.Sprintf("offset %d: %v", e.Offset, err))
			continue
		}
		good = append(good, c)
	}
	return good, bad
}

// Published returns the live and shadow records of rule set name among
// entries, in the order they were published (retirements included), the
// ones that do not decode left out: the version sequence Next numbers
// after, and what `adrules config history` lists.
func Published(entries []Entry, name string) []Record {
	var out []Record
	for i := range entries {
		one := entries[i : i+1]
		live, _ := Live(one, name)
		shadows, _ := Shadows(one, name)
		out = append(append(out, live...), shadows...)
	}
	return out
}
