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

// nextVersion returns one more than the highest version in history. Live
// and shadow versions share one sequence: pass both, so that a version
// number names one document.
func nextVersion(hist []streams.ConfigRecord) int64 {
	var v int64
	for _, c := range hist {
		v = max(v, c.Version)
	}
	return v + 1
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
// its effective document as the next version: the live one, or with shadow
// the shadow (challenger) of the rule set of its name.
func publishFile(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, path, envName string, env map[string]string, shadow bool) (streams.ConfigRecord, error) {
	rs, err := loadRules(path, envName, env)
	if err != nil {
		return streams.ConfigRecord{}, err
	}
	return publish(ctx, k, opts, rs.Doc, author(env), shadow)
}

// publishDoc validates doc and publishes it as the next live version.
func publishDoc(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, doc *config.Document, who string) (streams.ConfigRecord, error) {
	return publish(ctx, k, opts, doc, who, false)
}

func publish(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, doc *config.Document, who string, shadow bool) (streams.ConfigRecord, error) {
	recs, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.ConfigHistory)
	if err != nil {
		return streams.ConfigRecord{}, err
	}
	hist, _ := streams.Configs(recs, doc.Name)
	shadows, _ := streams.Shadows(recs, doc.Name)
	c := streams.ConfigRecord{Name: doc.Name, Version: nextVersion(append(hist, shadows...)), SHA256: doc.SHA256(), Author: who,
		Document: doc.Canonical(), Shadow: shadow}
	if _, err := compileRecord(c); err != nil {
		return c, err
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
		fmt.Fprintln(stderr, "Usage: adrules config publish|get|history|rollback|status|retire-shadow [flags]")
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
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	opts, err := k.clientOpts(env)
	if err != nil {
		return err
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
			fmt.Fprintln(stderr, "Usage: adrules config publish --brokers LIST [--env NAME] [--shadow] FILE")
			return exitError{2}
		}
		c, err := publishFile(ctx, &k, opts, fs.Arg(0), *envName, env, *shadow)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError{1}
		}
		what := ""
		if c.Shadow {
			what = " as the shadow"
		}
		fmt.Fprintf(stdout, "published %s v%d%s sha256 %s\n", c.Name, c.Version, what, short(c.SHA256))
		return nil
	case "get":
		if *shadow {
			recs, err := readRecs(k.topics.Config)
			if err != nil {
				return err
			}
			cur, _ := shadowInForce(recs, *name)
			if cur == nil {
				return fmt.Errorf("rule set %q has no shadow", *name)
			}
			c := cur.c
			fmt.Fprintf(stderr, "%s v%d (shadow) sha256 %s by %s at %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt)
			fmt.Fprintf(stdout, "%s\n", c.Document)
			return nil
		}
		live, err := read(k.topics.Config)
		if err != nil {
			return err
		}
		// The newest valid version: the one nodes run.
		for len(live) > 0 {
			if _, err := compileRecord(live[len(live)-1]); err == nil {
				break
			}
			live = live[:len(live)-1]
		}
		if len(live) == 0 {
			return fmt.Errorf("rule set %q: %w", *name, streams.ErrNoConfig)
		}
		c := live[len(live)-1]
		fmt.Fprintf(stderr, "%s v%d sha256 %s by %s at %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt)
		fmt.Fprintf(stdout, "%s\n", c.Document)
		return nil
	case "history":
		recs, err := readRecs(k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		// Live and shadow versions in the order they were published.
		for _, r := range recs {
			one := []*kgo.Record{r}
			if live, _ := streams.Configs(one, *name); len(live) == 1 {
				c := live[0]
				fmt.Fprintf(stdout, "v%-4d %s  %-20s %s\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt)
			}
			if sh, _ := streams.Shadows(one, *name); len(sh) == 1 {
				c, what := sh[0], "shadow"
				if c.Retired {
					what = "shadow retired"
				}
				fmt.Fprintf(stdout, "v%-4d %-12s  %-20s %s  %s\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt, what)
			}
		}
		return nil
	case "rollback":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "Usage: adrules config rollback --brokers LIST [--name N] VERSION")
			return exitError{2}
		}
		v, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil {
			return fmt.Errorf("version %q: %w", fs.Arg(0), err)
		}
		recs, err := readRecs(k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		// A version number names one document, live or shadow: rolling
		// "back" to a shadow version makes its document live.
		hist, _ := streams.Configs(recs, *name)
		shadows, _ := streams.Shadows(recs, *name)
		for _, c := range append(hist, shadows...) {
			if c.Version != v || c.Retired {
				continue
			}
			rs, err := compileRecord(c)
			if err != nil {
				return fmt.Errorf("version %d no longer validates: %w", v, err)
			}
			n, err := publishDoc(ctx, &k, opts, rs.Doc, author(env))
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "published %s v%d (the document of v%d) sha256 %s\n", n.Name, n.Version, v, short(n.SHA256))
			return nil
		}
		return errors.New("no such version in the history")
	case "retire-shadow":
		recs, err := readRecs(k.topics.Config)
		if err != nil {
			return err
		}
		cur, last := shadowInForce(recs, *name)
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
		if cur, _ := shadowInForce(config, *name); cur != nil {
			c := cur.c
			fmt.Fprintf(stderr, "shadow of %s: v%d sha256 %s by %s at %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt)
		}
		return nil
	}
	fmt.Fprintf(stderr, "adrules config: unknown command %q\n", sub)
	return exitError{2}
}

// shadowInForce returns the shadow of rule set name that nodes run after
// the config records recs (nil when none), and the last shadow record.
func shadowInForce(recs []*kgo.Record, name string) (cur *shadowVersion, last *streams.ConfigRecord) {
	good, _ := streams.Shadows(recs, name)
	for i, c := range good {
		cur, _ = nextShadow(cur, c)
		last = &good[i]
	}
	return cur, last
}

// short returns the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }
