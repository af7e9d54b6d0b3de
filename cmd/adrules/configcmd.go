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

	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
)

func author(env map[string]string) string {
	if a := env["ADRULES_AUTHOR"]; a != "" {
		return a
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
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
	cl, err := streams.Open(k.connection(env))
	if err != nil {
		return err
	}
	defer cl.Close()
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
	switch sub {
	case "publish":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "Usage: adrules config publish --brokers LIST --signing-key FILE [--trust FILE] [--env NAME] [--shadow] FILE")
			return exitError{2}
		}
		rs, err := loadRules(fs.Arg(0), *envName, env)
		var c versions.Record
		if err == nil {
			c, err = streams.PublishDocument(ctx, cl, keys, rs.Doc, author(env), *shadow)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitError{1}
		}
		what := ""
		if c.Shadow {
			what = " as the shadow"
		}
		fmt.Fprintf(stdout, "published %s v%d%s sha256 %s %s\n", c.Name, c.Version, what, short(c.SHA256), keys.SignedBy(c))
		unverified("the version")
		return nil
	case "get":
		if *shadow {
			sh, err := streams.ReadShadow(ctx, cl, *name, keys.Accept, nil)
			if err != nil {
				return err
			}
			if sh.Cur == nil {
				return fmt.Errorf("rule set %q has no shadow", *name)
			}
			c := sh.Cur.Record
			fmt.Fprintf(stderr, "%s v%d (shadow) sha256 %s by %s at %s, %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.SignedBy(c))
			unverified("the shadow")
			fmt.Fprintf(stdout, "%s\n", c.Document)
			return nil
		}
		live, err := streams.ReadLive(ctx, cl, *name, nil)
		if err != nil {
			return err
		}
		// The newest valid (and, with a trust list, trusted) version: the
		// one nodes run.
		c, _, ok := versions.Newest(live, keys.Accept, nil)
		if !ok {
			return fmt.Errorf("rule set %q: %w", *name, streams.ErrNoConfig)
		}
		fmt.Fprintf(stderr, "%s v%d sha256 %s by %s at %s, %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.SignedBy(c))
		unverified("the live version")
		fmt.Fprintf(stdout, "%s\n", c.Document)
		return nil
	case "history":
		recs, err := cl.ReadAll(ctx, k.topics.ConfigHistory)
		if err != nil {
			return err
		}
		// Live and shadow versions in the order they were published, and
		// who signed each (a retirement is not signed).
		for _, c := range versions.Published(streams.Entries(recs), *name) {
			switch {
			case !c.Shadow:
				fmt.Fprintf(stdout, "v%-4d %s  %-20s %s  %s\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.SignedBy(c))
			case c.Retired:
				fmt.Fprintf(stdout, "v%-4d %-12s  %-20s %s  shadow retired\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt)
			default:
				fmt.Fprintf(stdout, "v%-4d %s  %-20s %s  %s  shadow\n", c.Version, short(c.SHA256), c.Author, c.PublishedAt, keys.SignedBy(c))
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
		recs, err := cl.ReadAll(ctx, k.topics.ConfigHistory)
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
			unverified(fmt.Sprintf("v%d, %s", v, keys.SignedBy(c)))
			n, err := streams.PublishDocument(ctx, cl, keys, rs.Doc, author(env), false)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "published %s v%d (the document of v%d) sha256 %s %s\n", n.Name, n.Version, v, short(n.SHA256), keys.SignedBy(n))
			return nil
		}
		if untrusted != nil {
			return fmt.Errorf("version %d is not signed by a trusted key: %w", v, untrusted)
		}
		return errors.New("no such version in the history")
	case "retire-shadow":
		sh, err := streams.ReadShadow(ctx, cl, *name, keys.Accept, nil)
		if err != nil {
			return err
		}
		if sh.Last == nil || sh.Last.Retired {
			return fmt.Errorf("rule set %q has no shadow", *name)
		}
		// The version in force, or, when the last one was refused, that one.
		v := sh.Last.Version
		if sh.Cur != nil {
			v = sh.Cur.Record.Version
		}
		if err := streams.RetireShadow(ctx, cl.Client(), cl.Topics(), *name, v, author(env)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "retired the shadow of %s (v%d)\n", *name, v)
		return nil
	case "status":
		recs, err := cl.ReadAll(ctx, k.topics.Status)
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
		sh, err := streams.ReadShadow(ctx, cl, *name, keys.Accept, nil)
		if err != nil {
			return err
		}
		if sh.Cur != nil {
			c := sh.Cur.Record
			fmt.Fprintf(stderr, "shadow of %s: v%d sha256 %s by %s at %s\n", c.Name, c.Version, short(c.SHA256), c.Author, c.PublishedAt)
		}
		return nil
	}
	fmt.Fprintf(stderr, "adrules config: unknown command %q\n", sub)
	return exitError{2}
}

// short returns the first 12 characters of a hash, for people.
func short(h string) string { return h[:min(12, len(h))] }
