package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Entries returns the config topic records recs as versions reads them
// (versions.Live, versions.Shadows, versions.Published).
func Entries(recs []*kgo.Record) []versions.Entry {
	out := make([]versions.Entry, len(recs))
	for i, r := range recs {
		out[i] = versions.Entry{Key: r.Key, Value: r.Value, Offset: r.Offset}
	}
	return out
}

// ReadAll reads every record of topic that exists when it is called, in
// partition and offset order, with a Cluster of its own (Cluster.ReadAll):
// for a caller that has no Cluster, such as a test.
func ReadAll(ctx context.Context, brokers []string, opts []kgo.Opt, topic string) ([]*kgo.Record, error) {
	c, err := Open(Connection{Brokers: brokers, ClientOpts: opts})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ReadAll(ctx, topic)
}

// Publish writes c to the history topic, then to the config topic, and
// waits for both. A shadow version (c.Shadow) goes under versions.ShadowKey(c.Name).
func Publish(ctx context.Context, cl *kgo.Client, t Topics, c versions.Record) error {
	if c.PublishedAt == "" {
		c.PublishedAt = time.Now().UTC().Format(versions.PublishedLayout)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	key := c.Key()
	for _, topic := range []string{t.ConfigHistory, t.Config} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
			return fmt.Errorf("publish to %s: %w", topic, err)
		}
	}
	return nil
}

// RetireShadow ends the shadow of rule set name: a record saying so (with
// Retired, the version retired and author) goes to the history topic, then
// a tombstone under versions.ShadowKey(name) to the config topic.
func RetireShadow(ctx context.Context, cl *kgo.Client, t Topics, name string, version int64, author string) error {
	b, err := json.Marshal(versions.Record{Name: name, Version: version, Author: author,
		PublishedAt: time.Now().UTC().Format(versions.PublishedLayout), Shadow: true, Retired: true})
	if err != nil {
		return err
	}
	key := []byte(versions.ShadowKey(name))
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
