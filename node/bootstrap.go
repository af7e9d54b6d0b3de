package node

import (
	"context"
	"fmt"

	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
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
	published, err := streams.ReadLive(ctx, n.cluster, name, func(topic, reason string) {
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
	c, err := streams.PublishDocument(ctx, n.cluster, o.Keys, boot.Doc, "bootstrap:"+o.NodeID, false)
	if err != nil {
		return nil, fmt.Errorf("rule set %q: nothing is published, and the node cannot publish --rules %s: %w", name, o.BootstrapName, err)
	}
	log.Info("no rule set was published: published the rules file", "file", o.BootstrapName, "version", c.Version, "sha256", short(c.SHA256), "signer", o.Keys.SignedBy(c))
	return o.Keys.Accept(c)
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
