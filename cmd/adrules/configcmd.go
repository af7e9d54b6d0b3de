package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// compileRecord validates and compiles a published version exactly as every
// node does: the document must load, hash to its sha256 and compile.
func compileRecord(c streams.ConfigRecord) (*rules.RuleSet, error) {
	name := fmt.Sprintf("%s v%d", c.Name, c.Version)
	if c.Shadow {
		name = fmt.Sprintf("%s v%d", streams.ShadowKey(c.Name), c.Version)
	}
	doc, err := config.Load(name, c.Document, config.Options{})
	if err != nil {
		return nil, err
	}
	if got := doc.SHA256(); got != c.SHA256 {
		return nil, fmt.Errorf("%s: the document hashes to %s, not to its sha256 %s", name, short(got), c.SHA256)
	}
	return rules.Compile(doc, c.Version)
}

// publishedVersions returns the live and shadow records of rule set name
// among recs, in the order they were published (retirements included).
func publishedVersions(recs []*kgo.Record, name string) []streams.ConfigRecord {
	var out []streams.ConfigRecord
	for _, r := range recs {
		one := []*kgo.Record{r}
		live, _ := streams.Configs(one, name)
		shadows, _ := streams.Shadows(one, name)
		out = append(append(out, live...), shadows...)
	}
	return out
}

func author(env map[string]string) string {
	if a := env["ADRULES_AUTHOR"]; a != "" {
		return a
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// publishFile layers, validates and compiles a rules file, then publishes
// its effective document as the next version, signed with keys: the live
// one, or with shadow the shadow (challenger) of the rule set of its name.
func publishFile(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, keys keyring, path, envName string, env map[string]string, shadow bool) (streams.ConfigRecord, error) {
	rs, err := loadRules(path, envName, env)
	if err != nil {
		return streams.ConfigRecord{}, err
	}
	return publish(ctx, k, opts, keys, rs.Doc, author(env), shadow)
}

// publishDoc validates doc and publishes it as the next live version,
// signed with keys.
func publishDoc(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, keys keyring, doc *config.Document, who string) (streams.ConfigRecord, error) {
	return publish(ctx, k, opts, keys, doc, who, false)
}

// publish numbers doc after the versions in the history (nextVersion),
// signs it with keys' signer, checks the record as a node with keys' trust
// list would (a key the list lacks is refused here, not on every node),
// and publishes it.
func publish(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, keys keyring, doc *config.Document, who string, shadow bool) (streams.ConfigRecord, error) {
	recs, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.ConfigHistory)
	if err != nil {
		return streams.ConfigRecord{}, err
	}
	v, err := nextVersion(publishedVersions(recs, doc.Name), keys)
	if err != nil {
		return streams.ConfigRecord{}, fmt.Errorf("rule set %q: %w", doc.Name, err)
	}
	c := streams.ConfigRecord{Name: doc.Name, Version: v, SHA256: doc.SHA256(), Author: who,
		Document: doc.Canonical(), Shadow: shadow}
	if err := keys.sign(&c); err != nil {
		return c, err
	}
	if _, err := keys.accept(c); err != nil {
		return c, fmt.Errorf("not published: nodes with this trust list would refuse it: %w", err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.brokerList()...)}, opts...)...)
	if err != nil {
		return c, err
	}
	defer cl.Close()
	return c, streams.Publish(ctx, cl, k.topics, c)
}

func cmdConfig(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: adrules config publish|get|history|rollback|status|retire-shadow [--signing-key FILE] [--trust FILE] [flags]")
		return exitError{2}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	name := fs.String("name", "default", "rule set name")
	envName := fs.String("env", "", "environments overlay applied at publish time")
	shadow := fs.Bool("shadow", false, "publish: publish FILE as the shadow (challenger) of the live rule set; get: show the shadow")
	var kf keyFlags
	kf.registerPublisher(fs)
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	opts, err := k.clientOpts(env)
	if err != nil {
		return err
	}
	keys, err := kf.load(env)
	if err != nil {
		return err
	}
	// Without a trust list, what nodes accept is not known here: say so
	// where it matters.
	unverified := func(what string) {
		if !keys.checks() {
			fmt.Fprintf(stderr, "%s: signatures not checked (no --trust or $ADRULES_TRUST): nodes may refuse it\n", what)
		}
	}
	readRecs := func(topic string) ([]*kgo.Record, error) {
		return streams.ReadAll(ctx, k.brokerList(), opts, topic)
	}
	read := func(topic string) ([]streams.ConfigRecord, error) {
		recs, err := readRecs(topic)
		if err != nil {
			return nil, err
		}
		good, _ := streams.Configs(recs, *name)
		return good, nil
	}
	switch sub {
	case "publish":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "Usage: adrules config publish --brokers LIST --signing-key FILE [--trust FILE] [--env NAME] [--shadow] FILE")
			return exitError{2}
		}
		c, err := publishFile(ctx, &k, opts, keys, fs.Arg(0), *envName, env, *shadow)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError{1}
		}
		what := ""
		if c.Shadow {
			what = " as the shadow"
		}
		fmt.Fprintf(stdout, "published %s v%d%s sha256 %s %s\n", c.Name, c.Version, what, short(c.SHA256), keys.signedBy(c))
		unverified("the version")
		return nil
	case "get":
		if *shadow {
			recs, err := readRecs(k.topics.Config)
			if err != nil {
				return err
			}
			cur, _ := shadowInForce(recs, *name, keys.accept)
			if cur == nil {
				return fmt.Errorf("rule set %q has no shadow", *name)
			}
			c := cur.c
			fmt.Fprintf(stderr, "%s v%d (shadow) sha256 %s by %s at %s, %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.signedBy(c))
			unverified("the shadow")
			fmt.Fprintf(stdout, "%s\n", c.Document)
			return nil
		}
		live, err := read(k.topics.Config)
		if err != nil {
			return err
		}
		// The newest valid (and, with a trust list, trusted) version: the
		// one nodes run.
		for len(live) > 0 {
			if _, err := keys.accept(live[len(live)-1]); err == nil {
				break
			}
			live = live[:len(live)-1]
		}
		if len(live) == 0 {
			return fmt.Errorf("rule set %q: %w", *name, streams.ErrNoConfig)
		}
		c := live[len(live)-1]
		fmt.Fprintf(stderr, "%s v%d sha256 %s by %s at %s, %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.signedBy(c))
		unverified("the live version")
		fmt.Fprintf(stdout, "%s\n", c.Document)
		return nil
	case "history":
		recs, err := readRecs(k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		// Live and shadow versions in the order they were published, and
		// who signed each (a retirement is not signed).
		for _, c := range publishedVersions(recs, *name) {
			switch {
			case !c.Shadow:
				fmt.Fprintf(stdout, "v%-4d %s  %-20s %s  %s\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.signedBy(c))
			case c.Retired:
				fmt.Fprintf(stdout, "v%-4d %-12s  %-20s %s  shadow retired\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt)
			default:
				fmt.Fprintf(stdout, "v%-4d %s  %-20s %s  %s  shadow\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.signedBy(c))
			}
		}
		return nil
	case "rollback":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "Usage: adrules config rollback --brokers LIST --signing-key FILE [--trust FILE] [--name N] VERSION")
			return exitError{2}
		}
		v, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err == nil {
			err = versions.CheckVersion(v)
		}
		if err != nil {
			return fmt.Errorf("version %q: %w", fs.Arg(0), err)
		}
		recs, err := readRecs(k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		// A version number names one document, live or shadow: rolling
		// "back" to a shadow version makes its document live. With a
		// trust list, only a version a trusted key signed: a rollback
		// signs the document anew, it must not launder one nobody
		// trusted.
		var untrusted error
		for _, c := range publishedVersions(recs, *name) {
			if c.Version != v || c.Retired {
				continue
			}
			if _, err := keys.check(c); err != nil {
				untrusted = err
				continue
			}
			rs, err := compileRecord(c)
			if err != nil {
				return fmt.Errorf("version %d no longer validates: %w", v, err)
			}
			unverified(fmt.Sprintf("v%d, %s", v, keys.signedBy(c)))
			n, err := publishDoc(ctx, &k, opts, keys, rs.Doc, author(env))
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "published %s v%d (the document of v%d) sha256 %s %s\n", n.Name, n.Version, v, short(n.SHA256), keys.signedBy(n))
			return nil
		}
		if untrusted != nil {
			return fmt.Errorf("version %d is not signed by a trusted key: %w", v, untrusted)
		}
		return errors.New("no such version in the history")
	case "retire-shadow":
		recs, err := readRecs(k.topics.Config)
		if err != nil {
			return err
		}
		cur, last := shadowInForce(recs, *name, keys.accept)
		if last == nil || last.Retired {
			return fmt.Errorf("rule set %q has no shadow", *name)
		}
		// The version in force, or, when the last one was refused, that one.
		v := last.Version
		if cur != nil {
			v = cur.c.Version
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.brokerList()...)}, opts...)...)
		if err != nil {
			return err
		}
		defer cl.Close()
		if err := streams.RetireShadow(ctx, cl, k.topics, *name, v, author(env)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "retired the shadow of %s (v%d)\n", *name, v)
		return nil
	case "status":
		recs, err := readRecs(k.topics.Status)
		if err != nil {
			return err
		}
		latest := map[string]*streams.Heartbeat{}
		var order []string
		for _, r := range recs {
			id := string(r.Key)
			if _, seen := latest[id]; !seen {
				order = append(order, id)
			}
			if r.Value == nil {
				latest[id] = nil
				continue
			}
			var h streams.Heartbeat
			if json.Unmarshal(r.Value, &h) == nil {
				latest[id] = &h
			}
		}
		live := 0
		for _, id := range order {
			h := latest[id]
			if h == nil {
				continue
			}
			at, _ := time.Parse(time.RFC3339, h.At)
			age := time.Since(at).Round(time.Second)
			state := "live"
			if age > 10*heartbeatEvery {
				state = "silent"
			} else {
				live++
			}
			sh := ""
			if h.Shadow > 0 {
				sh = fmt.Sprintf("  shadow v%d", h.Shadow)
			}
			fmt.Fprintf(stdout, "%-24s %-8s %s v%d %s  heartbeat %s ago  http %s%s\n", h.Node, state, h.Ruleset, h.Version, short(h.SHA256), age, h.HTTP, sh)
		}
		fmt.Fprintf(stderr, "%d live nodes\n", live)
		config, err := readRecs(k.topics.Config)
		if err != nil {
			return err
		}
		if cur, _ := shadowInForce(config, *name, keys.accept); cur != nil {
			c := cur.c
			fmt.Fprintf(stderr, "shadow of %s: v%d sha256 %s by %s at %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt)
		}
		return nil
	}
	fmt.Fprintf(stderr, "adrules config: unknown command %q\n", sub)
	return exitError{2}
}

// shadowInForce returns the shadow of rule set name that nodes accepting
// what accept accepts run after the config records recs (nil when none),
// and the last shadow record.
func shadowInForce(recs []*kgo.Record, name string, accept acceptFunc) (cur *shadowVersion, last *streams.ConfigRecord) {
	good, _ := streams.Shadows(recs, name)
	for i, c := range good {
		cur, _ = nextShadow(cur, c, accept)
		last = &good[i]
	}
	return cur, last
}

// short returns the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }
