package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/adrules/adrules/internal/gen"
)

func cmdGen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o gen.Options
	fs.Uint64Var(&o.Seed, "seed", 1, "seed: the same seed writes the same file")
	fs.IntVar(&o.Accounts, "accounts", 3, "ad accounts")
	fs.IntVar(&o.AdsPerAccount, "ads", 40, "ads per account")
	start := fs.String("start", "2026-11-01T00:00:00Z", "start of event time, RFC 3339")
	fs.DurationVar(&o.Duration, "duration", 7*24*time.Hour, "span of event time")
	fs.DurationVar(&o.Interval, "interval", time.Hour, "reporting interval: one delta per live ad per interval")
	fs.IntVar(&o.Events, "events", 0, "write exactly this many lines (0: the whole span)")
	fs.Float64Var(&o.BadPct, "bad-pct", 0, "percent of malformed lines")
	fs.Float64Var(&o.DupPct, "dup-pct", 0, "percent of duplicate lines (an earlier event re-sent)")
	fs.Float64Var(&o.EpochMsPct, "epoch-ms-pct", 30, "percent of events with epoch-millisecond times instead of RFC 3339")
	out := fs.String("out", "-", "output file; - is standard output")
	actions := fs.String("actions", "", "also write external action proposals to this file")
	nActions := fs.Int("proposals", 500, "number of action proposals, with --actions")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules gen [flags]\n\nWrites a seeded synthetic history of metric events as JSON Lines.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	t, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return fmt.Errorf("--start: %w", err)
	}
	o.Start = t
	w, done, err := create(*out, stdout)
	if err != nil {
		return err
	}
	st, err := gen.Events(w, o)
	if err = done(err); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "gen: %d lines: %d events of %d ads, %d malformed, %d duplicates\n", st.Lines, st.Good, st.Ads, st.Bad, st.Dups)
	if *actions != "" {
		w, done, err := create(*actions, stdout)
		if err != nil {
			return err
		}
		n, err := gen.Proposals(w, gen.ProposalOptions{
			Seed: o.Seed, Accounts: o.Accounts, AdsPerAccount: o.AdsPerAccount,
			Start: o.Start, Duration: o.Duration, Count: *nActions,
		})
		if err = done(err); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "gen: %d action proposals in %s\n", n, *actions)
	}
	return nil
}

// create opens path for writing ("-" is stdout) behind a buffer; done
// flushes and closes it and returns the first error.
func create(path string, stdout io.Writer) (io.Writer, func(error) error, error) {
	if path == "-" {
		w := bufio.NewWriterSize(stdout, 1<<20)
		return w, func(err error) error {
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	return w, func(err error) error {
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}
