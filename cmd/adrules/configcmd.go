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
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readLive reads the config history topic, then the config topic, to their
// ends and returns the live records of rule set name in the order every
// node considers them (versions.Newest). bad (nil: not told) is told of
// each record under name that does not decode, with its topic.
func readLive(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, name string, bad func(topic, reason string)) ([]versions.Record, error) {
	var published []versions.Record
	for _, topic := range []string{k.topics.ConfigHistory, k.topics.Config} {
		recs, err := streams.ReadAll(ctx, k.brokerList(), opts, topic)
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

// shadowRead is the shadow of a rule set in force, as read from Kafka.
type shadowRead struct {
	cur  *versions.Shadow // nil: none
	last *versions.Record // the config topic's last shadow record; nil: none
	// fromHistory: the config topic's fold ended on a refused record
	// (versions.NeedsHistory), and the history decided.
	fromHistory bool
	recs        []*kgo.Record // the config topic's records
}

// readShadow reads the config topic to its end and returns the shadow of
// rule set name in force as every node decides it (versions.ShadowInForce
// with accept), the history deciding when versions.NeedsHistory says so.
// refused (nil: not told) is told of each record refused, with the topic
// it was read on (version 0: a record that does not decode).
func readShadow(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, name string, accept versions.Accept, refused func(topic string, version int64, reason string)) (shadowRead, error) {
	recs, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.Config)
	if err != nil {
		return shadowRead{}, fmt.Errorf("read %s: %w", k.topics.Config, err)
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
	r := shadowRead{recs: recs}
	r.cur, r.last = fold(recs, k.topics.Config)
	if versions.NeedsHistory(r.cur, r.last) {
		hist, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.ConfigHistory)
		if err != nil {
			return shadowRead{}, fmt.Errorf("read %s: %w", k.topics.ConfigHistory, err)
		}
		r.cur, _ = fold(hist, k.topics.ConfigHistory)
		r.fromHistory = true
	}
	return r, nil
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
func publishFile(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, keys keyring, path, envName string, env map[string]string, shadow bool) (versions.Record, error) {
	rs, err := loadRules(path, envName, env)
	if err != nil {
		return versions.Record{}, err
	}
	return publish(ctx, k, opts, keys, rs.Doc, author(env), shadow)
}

// publishDoc validates doc and publishes it as the next live version,
// signed with keys.
func publishDoc(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, keys keyring, doc *config.Document, who string) (versions.Record, error) {
	return publish(ctx, k, opts, keys, doc, who, false)
}

// publish numbers doc after the versions in the history (Policy.Next),
// signs it with keys' signer, checks the record as a node with keys' trust
// list would (a key the list lacks is refused here, not on every node),
// and publishes it.
func publish(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, keys keyring, doc *config.Document, who string, shadow bool) (versions.Record, error) {
	recs, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.ConfigHistory)
	if err != nil {
		return versions.Record{}, err
	}
	v, err := keys.Next(versions.Published(streams.Entries(recs), doc.Name))
	if err != nil {
		return versions.Record{}, fmt.Errorf("rule set %q: %w", doc.Name, err)
	}
	c := versions.Record{Name: doc.Name, Version: v, SHA256: doc.SHA256(), Author: who,
		Document: doc.Canonical(), Shadow: shadow}
	if err := keys.sign(&c); err != nil {
		return c, err
	}
	if _, err := keys.Accept(c); err != nil {
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
		if !keys.Checks() {
			fmt.Fprintf(stderr, "%s: signatures not checked (no --trust or $ADRULES_TRUST): nodes may refuse it\n", what)
		}
	}
	readRecs := func(topic string) ([]*kgo.Record, error) {
		return streams.ReadAll(ctx, k.brokerList(), opts, topic)
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
			sh, err := readShadow(ctx, &k, opts, *name, keys.Accept, nil)
			if err != nil {
				return err
			}
			if sh.cur == nil {
				return fmt.Errorf("rule set %q has no shadow", *name)
			}
			c := sh.cur.Record
			fmt.Fprintf(stderr, "%s v%d (shadow) sha256 %s by %s at %s, %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.signedBy(c))
			unverified("the shadow")
			fmt.Fprintf(stdout, "%s\n", c.Document)
			return nil
		}
		live, err := readLive(ctx, &k, opts, *name, nil)
		if err != nil {
			return err
		}
		// The newest valid (and, with a trust list, trusted) version: the
		// one nodes run.
		c, _, ok := versions.Newest(live, keys.Accept, nil)
		if !ok {
			return fmt.Errorf("rule set %q: %w", *name, streams.ErrNoConfig)
		}
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
		for _, c := range versions.Published(streams.Entries(recs), *name) {
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
		for _, c := range versions.Published(streams.Entries(recs), *name) {
			if c.Version != v || c.Retired {
				continue
			}
			if _, err := keys.Check(c); err != nil {
				untrusted = err
				continue
			}
			rs, err := versions.Compile(c)
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
		sh, err := readShadow(ctx, &k, opts, *name, keys.Accept, nil)
		if err != nil {
			return err
		}
		if sh.last == nil || sh.last.Retired {
			return fmt.Errorf("rule set %q has no shadow", *name)
		}
		// The version in force, or, when the last one was refused, that one.
		v := sh.last.Version
		if sh.cur != nil {
			v = sh.cur.Record.Version
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
		sh, err := readShadow(ctx, &k, opts, *name, keys.Accept, nil)
		if err != nil {
			return err
		}
		if sh.cur != nil {
			c := sh.cur.Record
			fmt.Fprintf(stderr, "shadow of %s: v%d sha256 %s by %s at %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt)
		}
		return nil
	}
	fmt.Fprintf(stderr, "adrules config: unknown command %q\n", sub)
	return exitError{2}
}

// short returns the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }
