package node

import (
	"context"
	"fmt"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bootstrap reads the config topic and its history to their ends and
// returns the highest valid version of the rule set signed by a trusted
// key (versions.Newest), the one running nodes keep (Node.newer): the
// config topic alone may hold a lower version than one published earlier
// (a racing publisher, or compaction after one), or only an invalid
// record, or a tombstone. Among valid records of one version the later
// wins, the history's records coming before the config topic's (Publish
// writes the history first). An invalid or untrusted version is refused
// (logged) and never picked; when versions were published but none is
// valid and trusted, the node refuses to start. When none was ever
// published, it publishes Options.Bootstrap's document, signed with its
// key, as the first version: every node then follows the topic.
func (n *Node) bootstrap(ctx context.Context) (*rules.RuleSet, error) {
	o, log := n.o, n.o.Logger
	name := o.Ruleset
	var bad int
	published, err := ReadLive(ctx, n.cluster, name, func(topic, reason string) {
		log.Warn("config record refused", "topic", topic, "reason", reason)
		bad++
	})
	if err != nil {
		return nil, err
	}
	if _, rs, ok := versions.Newest(published, o.Keys.Accept, func(c versions.Record, err error) {
		log.Error("published version refused", "version", c.Version, "err", err)
	}); ok {
		return rs, nil
	}
	if len(published)+bad > 0 {
		if o.Keys.Checks() {
			return nil, fmt.Errorf("rule set %q: no published version is valid and signed by a key of the trust list (publish one with adrules config publish --signing-key, or sign an old one anew with adrules config rollback --signing-key)", name)
		}
		return nil, fmt.Errorf("rule set %q: no published version is valid", name)
	}
	if o.Bootstrap == nil {
		return nil, fmt.Errorf("rule set %q: nothing is published, and the node has no rules to publish", name)
	}
	boot, err := o.Bootstrap()
	if err != nil {
		return nil, err
	}
	if boot.Name != name {
		return nil, fmt.Errorf("--rules %s holds rule set %q, not %q (--ruleset)", o.BootstrapName, boot.Name, name)
	}
	c, err := Publish(ctx, n.cluster, o.Keys, boot.Doc, "bootstrap:"+o.NodeID, false)
	if err != nil {
		return nil, fmt.Errorf("rule set %q: nothing is published, and the node cannot publish --rules %s: %w", name, o.BootstrapName, err)
	}
	log.Info("no rule set was published: published the rules file", "file", o.BootstrapName, "version", c.Version, "sha256", short(c.SHA256), "signer", o.Keys.SignedBy(c))
	return o.Keys.Accept(c)
}

// ReadLive reads the config history topic, then the config topic, to their
// ends and returns the live records of rule set name in the order every
// node considers them (versions.Newest). bad (nil: not told) is told of
// each record under name that does not decode, with its topic.
func ReadLive(ctx context.Context, cl *streams.Cluster, name string, bad func(topic, reason string)) ([]versions.Record, error) {
	var published []versions.Record
	t := cl.Topics()
	for _, topic := range []string{t.ConfigHistory, t.Config} {
		recs, err := cl.ReadAll(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		live, refused := versions.Live(streams.Entries(recs), name)
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
func ReadShadow(ctx context.Context, cl *streams.Cluster, name string, accept versions.Accept, refused func(topic string, version int64, reason string)) (ShadowRead, error) {
	t := cl.Topics()
	recs, err := cl.ReadAll(ctx, t.Config)
	if err != nil {
		return ShadowRead{}, fmt.Errorf("read %s: %w", t.Config, err)
	}
	fold := func(recs []*kgo.Record, topic string) (*versions.Shadow, *versions.Record) {
		good, bad := versions.Shadows(streams.Entries(recs), name)
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

// Publish numbers doc after the versions in the history (Policy.Next),
// signs it with keys' signer, checks the record as a node with keys' trust
// list would (a key the list lacks is refused here, not on every node),
// and publishes it: the live version, or with shadow the shadow
// (challenger) of the rule set of its name. who is its author.
func Publish(ctx context.Context, cl *streams.Cluster, keys Keys, doc *config.Document, who string, shadow bool) (versions.Record, error) {
	t := cl.Topics()
	recs, err := cl.ReadAll(ctx, t.ConfigHistory)
	if err != nil {
		return versions.Record{}, err
	}
	v, err := keys.Next(versions.Published(streams.Entries(recs), doc.Name))
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
	return c, streams.Publish(ctx, cl.Client(), t, c)
}

// short is the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }

// StartupRuleSet returns the rule set a node with options o starts with
// (publishing o.Bootstrap's document when nothing was ever published), as
// Start chooses it, without starting anything else.
func StartupRuleSet(ctx context.Context, o Options) (*rules.RuleSet, error) {
	o = o.withDefaults()
	cl := o.Cluster
	if cl == nil {
		var err error
		if cl, err = streams.Open(o.Connection); err != nil {
			return nil, err
		}
		defer cl.Close()
	}
	n := &Node{o: o, cluster: cl}
	return n.bootstrap(ctx)
}
