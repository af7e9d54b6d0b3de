package streams

import (
	"context"
	"fmt"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadLive reads the config history topic, then the config topic, to their
// ends and returns the live records of rule set name in the order every
// node considers them (versions.Newest). bad (nil: not told) is told of
// each record under name that does not decode, with its topic.
func ReadLive(ctx context.Context, cl *Cluster, name string, bad func(topic, reason string)) ([]versions.Record, error) {
	var published []versions.Record
	t := cl.Topics()
	for _, topic := range []string{t.ConfigHistory, t.Config} {
		recs, err := cl.ReadAll(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		live, refused := versions.Live(Entries(recs), name)
		if bad != nil {
			for _, b := range refused {
				bad(topic, b)
			}
		}
		published = append(published, live...)
	}
	return published, nil
}

// ShadowRead is the shadow of a rule set in force, as read from Kafka.
type ShadowRead struct {
	Cur  *versions.Shadow // nil: none
	Last *versions.Record // the config topic's last shadow record; nil: none
	// FromHistory: the config topic's fold ended on a refused record
	// (versions.NeedsHistory), and the history decided.
	FromHistory bool
	Recs        []*kgo.Record // the config topic's records
}

// ReadShadow reads the config topic to its end and returns the shadow of
// rule set name in force as every node decides it (versions.ShadowInForce
// with accept), the history deciding when versions.NeedsHistory says so.
// refused (nil: not told) is told of each record refused, with the topic
// it was read on (version 0: a record that does not decode).
func ReadShadow(ctx context.Context, cl *Cluster, name string, accept versions.Accept, refused func(topic string, version int64, reason string)) (ShadowRead, error) {
	t := cl.Topics()
	recs, err := cl.ReadAll(ctx, t.Config)
	if err != nil {
		return ShadowRead{}, fmt.Errorf("read %s: %w", t.Config, err)
	}
	fold := func(recs []*kgo.Record, topic string) (*versions.Shadow, *versions.Record) {
		good, bad := versions.Shadows(Entries(recs), name)
		var told func(versions.Record, error)
		if refused != nil {
			for _, b := range bad {
				refused(topic, 0, b)
			}
			told = func(c versions.Record, err error) { refused(topic, c.Version, err.Error()) }
		}
		return versions.ShadowInForce(good, accept, told)
	}
	r := ShadowRead{Recs: recs}
	r.Cur, r.Last = fold(recs, t.Config)
	if versions.NeedsHistory(r.Cur, r.Last) {
		hist, err := cl.ReadAll(ctx, t.ConfigHistory)
		if err != nil {
			return ShadowRead{}, fmt.Errorf("read %s: %w", t.ConfigHistory, err)
		}
		r.Cur, _ = fold(hist, t.ConfigHistory)
		r.FromHistory = true
	}
	return r, nil
}

// PublishDocument numbers doc after the versions in the history
// (Policy.Next), signs it with keys' signer, checks the record as a node
// with keys' trust list would (a key the list lacks is refused here, not
// on every node), and publishes it (Publish): the live version, or with
// shadow the shadow (challenger) of the rule set of its name. who is its
// author.
func PublishDocument(ctx context.Context, cl *Cluster, keys versions.Keys, doc *config.Document, who string, shadow bool) (versions.Record, error) {
	t := cl.Topics()
	recs, err := cl.ReadAll(ctx, t.ConfigHistory)
	if err != nil {
		return versions.Record{}, err
	}
	v, err := keys.Next(versions.Published(Entries(recs), doc.Name))
	if err != nil {
		return versions.Record{}, fmt.Errorf("rule set %q: %w", doc.Name, err)
	}
	c := versions.Record{Name: doc.Name, Version: v, SHA256: doc.SHA256(), Author: who,
		Document: doc.Canonical(), Shadow: shadow}
	if err := keys.Sign(&c); err != nil {
		return c, err
	}
	if _, err := keys.Accept(c); err != nil {
		return c, fmt.Errorf("not published: nodes with this trust list would refuse it: %w", err)
	}
	return c, Publish(ctx, cl.Client(), t, c)
}
