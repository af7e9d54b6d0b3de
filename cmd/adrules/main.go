package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `adrules: an event-sourced rules engine for ad automation.

Usage:
  adrules check [--env NAME] FILE...
      Check rule files; print each problem as FILE:LINE:COL: rule ID: what is wrong.
  adrules backtest --rules FILE --input EVENTS.jsonl [--actions PROPOSALS.jsonl] [--baseline B] --out DIR
  adrules backtest --brokers LIST [--topic T] [--from T] [--to T] --rules FILE [--baseline FILE|live|VERSION] --out DIR
      Run the rules over a history (a file or a topic range), beside a baseline:
      each side's outputs, DIR/diff.jsonl, DIR/report.html, DIR/report.md.
  adrules replay --brokers LIST [--from T] [--to T] --verify
      Re-run the recorded rule set versions over a range; say identical or the first difference.
  adrules gen [--seed N] [--events N] [--bad-pct P] [--dup-pct P] [--out FILE]
      Write a synthetic history of metric events (JSON Lines).
  adrules demo
      Generate a week of events, backtest the default rules over it, show the result.
  adrules dev [--kafka-addr 127.0.0.1:9092] [--generate-rate N] [--http-addr ADDR]
      The embedded default: an in-process Kafka broker, a node, synthetic traffic.
  adrules run --brokers LIST --trust FILE [--signing-key FILE] [--group ID] [--data-dir DIR] [--http-addr ADDR]
      A node against a real cluster: it runs only versions signed by a key of its trust list.
  adrules keygen [--out PREFIX] [--name NAME]
      Make a publisher's key pair: PREFIX.key (private) and PREFIX.pub (a trust list line).
  adrules produce --brokers LIST [--topic T] FILE.jsonl
      Produce JSON Lines, keyed by ad_id (account_id for proposals).
  adrules tail --brokers LIST [--topic T]
      Print decisions (or another topic) as they come.
  adrules config publish|get|history|rollback|status --brokers LIST --signing-key FILE ...
      Publish a signed rule set version to the config topic that every node follows
      (publish --shadow FILE: a challenger that nodes run beside the live one).
  adrules shadow status --brokers LIST
      Compare the shadow rule set with the live one: agreement, precision, promotion.
  adrules version

Run 'adrules COMMAND -h' for a command's flags.
`

// exitError carries an exit code through to main.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, environ())
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "adrules:", err)
		os.Exit(1)
	}
}

// environ returns the process environment as a map.
func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// run runs one command; tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env map[string]string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{2}
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "check":
		return cmdCheck(args, stdout, stderr, env)
	case "backtest":
		return cmdBacktest(ctx, args, stdin, stdout, stderr, env)
	case "gen":
		return cmdGen(args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr, env)
	case "run":
		return cmdRun(ctx, args, stderr, env)
	case "dev":
		return cmdDev(ctx, args, stdout, stderr, env)
	case "produce":
		return cmdProduce(ctx, args, stdin, stdout, stderr, env)
	case "tail":
		return cmdTail(ctx, args, stdout, stderr, env)
	case "config":
		return cmdConfig(ctx, args, stdout, stderr, env)
	case "keygen":
		return cmdKeygen(args, stdout, stderr)
	case "replay":
		return cmdReplay(ctx, args, stdout, stderr, env)
	case "shadow":
		return cmdShadow(ctx, args, stdout, stderr, env)
	case "version":
		fmt.Fprintln(stdout, "adrules", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "adrules: unknown command %q\n\n%s", cmd, usage)
	return exitError{2}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
