package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"

	"github.com/adrules/adrules/internal/backtest"
)

func cmdBacktest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("backtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rulesFile := fs.String("rules", "", "rules file (required)")
	input := fs.String("input", "", "metric events, JSON Lines; - reads standard input (required)")
	actions := fs.String("actions", "", "external action proposals, JSON Lines (optional)")
	out := fs.String("out", "", "output directory (required)")
	envName := fs.String("env", "", "environments overlay to apply (default: $ADRULES_ENV, else $ENVIRONMENT)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules backtest --rules FILE --input EVENTS.jsonl [--actions PROPOSALS.jsonl] --out DIR\n\nWrites DIR/decisions.jsonl, DIR/actions.jsonl and DIR/dlq.jsonl and prints a summary on stderr.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if *rulesFile == "" || *input == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitError{2}
	}
	rs, err := loadRules(*rulesFile, *envName, env)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{1}
	}
	o := backtest.Options{RuleSet: rs, InputName: *input, OutDir: *out}
	if *input == "-" {
		o.Input = stdin
	} else {
		f, err := os.Open(*input)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Input = f
	}
	if *actions != "" {
		f, err := os.Open(*actions)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Actions, o.ActionsName = f, *actions
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sum, err := backtest.Run(ctx, o)
	if err != nil {
		return err
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	fmt.Fprintf(stderr, "backtest of %s (sha256 %s) over %s\n", *rulesFile, rs.SHA256[:12], *input)
	sum.Print(stderr)
	if sum.Lines > 0 {
		fmt.Fprintf(stderr, "memory:     %.1f allocations per input line, peak RSS %d MiB\n",
			float64(after.Mallocs-before.Mallocs)/float64(sum.Lines), peakRSS()>>20)
	}
	fmt.Fprintf(stderr, "output:     %s/decisions.jsonl, actions.jsonl, dlq.jsonl\n", *out)
	return nil
}

// peakRSS returns the process's peak resident set size in bytes (0 where the
// system does not say).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss << 10 // Linux reports kilobytes
}
