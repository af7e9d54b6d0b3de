package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ConfigRecord is one published version of a rule set: the value of a
// record on the config topic (compacted, key = the rule set's name) and on
// the config history topic (kept).
type ConfigRecord struct {
	Name string `json:"name"`
	// Version is in 1..versions.MaxVersion: Configs and Shadows refuse a
	// record outside it.
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
	Signature *versions.Signature `json:"signature,omitempty"`
}

// Signed is what c's signature covers: its rule set, version number,
// document hash and kind (live or shadow).
func (c ConfigRecord) Signed() versions.Version {
	return versions.Version{Name: c.Name, Number: c.Version, SHA256: c.SHA256, Shadow: c.Shadow}
}

// ShadowKey is the config topic key of the shadow of rule set name.
func ShadowKey(name string) string { return name + ".shadow" }

// ReadAll reads every record of topic that exists when it is called, in
// partition and offset order.
func ReadAll(ctx context.Context, brokers []string, opts []kgo.Opt, topic string) ([]*kgo.Record, error) {
	adm, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	starts, err := ka.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ends, err := ka.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = o.Err
			return
		}
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if lerr != nil {
		return nil, lerr
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from})}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	byPart := map[int32][]*kgo.Record{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset < end {
				byPart[r.Partition] = append(byPart[r.Partition], r)
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
			}
		})
	}
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out, nil
}

// Configs decodes the live config records of name among recs, in order,
// skipping tombstones and other keys (the shadow's, ShadowKey(name), and
// any other). Records under name that do not decode, that say they are a
// shadow, or whose version is outside 1..versions.MaxVersion, are returned
// in bad with the reason. Their signatures are not checked here.
func Configs(recs []*kgo.Record, name string) (good []ConfigRecord, bad []string) {
	for _, r := range recs {
		if string(r.Key) != name || r.Value == nil {
			continue
		}
		var c ConfigRecord
		if err := json.Unmarshal(r.Value, &c); err != nil || c.Name != name || len(c.Document) == 0 || c.Shadow || c.Retired {
			bad = append(bad, fmt.Sprintf("offset %d: not a config record of %q", r.Offset, name))
			continue
		}
		if err := versions.CheckVersion(c.Version); err != nil {
			bad = append(bad, fmt.Sprintf("offset %d: %v", r.Offset, err))
			continue
		}
		good = append(good, c)
	}
	return good, bad
}

// Shadows decodes the shadow records of rule set name among recs (key
// ShadowKey(name)), in order, skipping other keys. A tombstone (the config
// topic) or a record with Retired (the history) is returned as a record
// with Retired set: the shadow ends there. Records that do not decode, or
// whose version is outside 1..versions.MaxVersion, are returned in bad
// with the reason. Their signatures are not checked here.
func Shadows(recs []*kgo.Record, name string) (good []ConfigRecord, bad []string) {
	key := ShadowKey(name)
	for _, r := range recs {
		if string(r.Key) != key {
			continue
		}
		if r.Value == nil {
			good = append(good, ConfigRecord{Name: name, Shadow: true, Retired: true})
			continue
		}
		var c ConfigRecord
		err := json.Unmarshal(r.Value, &c)
		if err != nil || c.Name != name || !c.Shadow || !c.Retired && len(c.Document) == 0 {
			bad = append(bad, fmt.Sprintf("offset %d: not a shadow config record of %q", r.Offset, name))
			continue
		}
		if err := versions.CheckVersion(c.Version); err != nil {
			bad = append(bad, fmt.Sprintf("offset %d: %v", r.Offset, err))
			continue
		}
		good = append(good, c)
	}
	return good, bad
}

// publishedLayout is RFC 3339 with milliseconds: a shadow starts at its
// publish time, to the millisecond.
const publishedLayout = "2006-01-02T15:04:05.000Z07:00"

// PublishedMilli returns c's publish time in epoch milliseconds.
func (c ConfigRecord) PublishedMilli() (int64, error) {
	t, err := time.Parse(time.RFC3339, c.PublishedAt)
	if err != nil {
		return 0, fmt.Errorf("published_at %q: %w", c.PublishedAt, err)
	}
	return t.UnixMilli(), nil
}

// Publish writes c to the history topic, then to the config topic, and
// waits for both. A shadow version (c.Shadow) goes under ShadowKey(c.Name).
func Publish(ctx context.Context, cl *kgo.Client, t Topics, c ConfigRecord) error {
	if c.PublishedAt == "" {
		c.PublishedAt = time.Now().UTC().Format(publishedLayout)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	key := c.Name
	if c.Shadow {
		key = ShadowKey(c.Name)
	}
	for _, topic := range []string{t.ConfigHistory, t.Config} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
			return fmt.Errorf("publish to %s: %w", topic, err)
		}
	}
	return nil
}

// RetireShadow ends the shadow of rule set name: a record saying so (with
// Retired, the version retired and author) goes to the history topic, then
// a tombstone under ShadowKey(name) to the config topic.
func RetireShadow(ctx context.Context, cl *kgo.Client, t Topics, name string, version int64, author string) error {
	b, err := json.Marshal(ConfigRecord{Name: name, Version: version, Author: author,
		PublishedAt: time.Now().UTC().Format(publishedLayout), Shadow: true, Retired: true})
	if err != nil {
		return err
	}
	key := []byte(ShadowKey(name))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: t.ConfigHistory, Key: key, Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("retire in %s: %w", t.ConfigHistory, err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: t.Config, Key: key}).FirstErr(); err != nil {
		return fmt.Errorf("retire in %s: %w", t.Config, err)
	}
	return nil
}

// ErrNoConfig says no version of the rule set was published.
var ErrNoConfig = errors.New("no published version")

// Heartbeat is what a node says about itself on the status topic (compacted,
// key = node id) every few seconds; a node that stops cleanly writes a
// tombstone.
type Heartbeat struct {
	Node    string `json:"node"`
	Group   string `json:"group"`
	Ruleset string `json:"ruleset"`
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
	HTTP    string `json:"http"`
	At      string `json:"at"` // wall clock, RFC 3339
	// Shadow is the shadow version the node runs beside the live one; 0
	// (left out) when none.
	Shadow int64 `json:"shadow,omitempty"`
}
