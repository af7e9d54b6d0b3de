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
	doc, err := config.Load(name, c.Document, config.Options{})
	if err != nil {
		return nil, err
	}
	if got := doc.SHA256(); got != c.SHA256 {
		return nil, fmt.Errorf("%s: the document hashes to %s, not to its sha256 %s", name, short(got), c.SHA256)
	}
	return rules.Compile(doc, c.Version)
}

// nextVersion returns one more than the highest version of name in history.
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
// its effective document as the next version.
func publishFile(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, path, envName string, env map[string]string) (streams.ConfigRecord, error) {
	rs, err := loadRules(path, envName, env)
	if err != nil {
		return streams.ConfigRecord{}, err
	}
	return publishDoc(ctx, k, opts, rs.Doc, author(env))
}

func publishDoc(ctx context.Context, k *kafkaFlags, opts []kgo.Opt, doc *config.Document, who string) (streams.ConfigRecord, error) {
	recs, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.ConfigHistory)
	if err != nil {
		return streams.ConfigRecord{}, err
	}
	hist, _ := streams.Configs(recs, doc.Name)
	c := streams.ConfigRecord{Name: doc.Name, Version: nextVersion(hist), SHA256: doc.SHA256(), Author: who, Document: doc.Canonical()}
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
		fmt.Fprintln(stderr, "Usage: adrules config publish|get|history|rollback [flags]")
		return exitError{2}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	name := fs.String("name", "default", "rule set name")
	envName := fs.String("env", "", "environments overlay applied at publish time")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	opts, err := k.clientOpts(env)
	if err != nil {
		return err
	}
	read := func(topic string) ([]streams.ConfigRecord, error) {
		recs, err := streams.ReadAll(ctx, k.brokerList(), opts, topic)
		if err != nil {
			return nil, err
		}
		good, _ := streams.Configs(recs, *name)
		return good, nil
	}
	switch sub {
	case "publish":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "Usage: adrules config publish --brokers LIST [--env NAME] FILE")
			return exitError{2}
		}
		c, err := publishFile(ctx, &k, opts, fs.Arg(0), *envName, env)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError{1}
		}
		fmt.Fprintf(stdout, "published %s v%d sha256 %s\n", c.Name, c.Version, short(c.SHA256))
		return nil
	case "get":
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
		hist, err := read(k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		for _, c := range hist {
			fmt.Fprintf(stdout, "v%-4d %s  %-20s %s\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt)
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
		hist, err := read(k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		for _, c := range hist {
			if c.Version != v {
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
	case "status":
		recs, err := streams.ReadAll(ctx, k.brokerList(), opts, k.topics.Status)
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
			fmt.Fprintf(stdout, "%-24s %-8s %s v%d %s  heartbeat %s ago  http %s\n", h.Node, state, h.Ruleset, h.Version, short(h.SHA256), age, h.HTTP)
		}
		fmt.Fprintf(stderr, "%d live nodes\n", live)
		return nil
	}
	fmt.Fprintf(stderr, "adrules config: unknown command %q\n", sub)
	return exitError{2}
}

// short returns the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }
