package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/adrules/adrules/internal/backtest"
	"github.com/adrules/adrules/replay"
	"github.com/adrules/adrules/streams"
)

const replayUsage = `Usage: adrules replay --brokers LIST [--from T] [--to T] --verify [--out DIR]

Re-runs the live rules over a range of the input topics exactly as the nodes
ran them: each partition with the rule set version in force at each record,
read from the switch points (config_applied records) on the decisions topic
and the documents on the config history topic. State is rebuilt from the
start of each input log, with no output before --from. T is an RFC 3339 time
or partition:offset pairs; the range selects metric events, and external
proposals by the same bounds on the actions topic.

--verify compares the result with what adrules.decisions, adrules.proposals
and adrules.actions hold for the range and prints "identical" or the first
difference (exit status 1). --out DIR writes the replayed decisions.jsonl,
proposals.jsonl and actions.jsonl. Offset bounds name partitions of the
metrics topic; external proposals are then compared over all of ad-actions.
Run it with a new adrules binary to check an upgrade: the same logs must give
the same outputs.
`

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	ruleset := fs.String("ruleset", "default", "name of the rule set on the config topic")
	group := fs.String("group", "adrules", "the nodes' consumer group (to check it has processed the range)")
	fromS := fs.String("from", "", "start of the range: RFC 3339 time or partition:offset pairs (default: start of the log)")
	toS := fs.String("to", "", "end of the range, exclusive (default: end of the log)")
	verify := fs.Bool("verify", false, "compare with the recorded decisions and verdicts")
	out := fs.String("out", "", "write the replayed decisions.jsonl and actions.jsonl here")
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || !*verify && *out == "" {
		fs.Usage()
		return exitError{2}
	}
	from, err := streams.ParseBound(*fromS)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, err := streams.ParseBound(*toS)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	cluster, err := streams.Dial(ctx, k.connection(env))
	if err != nil {
		return err
	}
	defer cluster.Close()
	store, closeStore, err := backtest.TempStore()
	if err != nil {
		return err
	}
	defer closeStore()
	r, err := replay.Load(ctx, replay.Options{
		Cluster: cluster, RuleSet: *ruleset, Group: *group, From: from, To: to,
		Store: store, Log: stderr,
		Progress: func(total int64, unit string, read func() int64) func() {
			return startProgress(stderr, total, unit, read).Stop
		},
	})
	if err != nil {
		return err
	}
	if r.Range().Span() == 0 {
		fmt.Fprintf(stderr, "warning: the range holds no records of %s (%s)\n", k.topics.Metrics, r.Range())
	}
	r.CheckProcessed(ctx)
	got, err := r.Run(ctx)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := got.WriteDir(*out); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "replayed: %d decisions, %d proposals, %d verdicts in %s\n", len(got.Decisions), len(got.Proposals), len(got.Verdicts), *out)
	}
	if !*verify {
		return nil
	}
	if d := r.FirstDiff(got); d != "" {
		fmt.Fprintln(stdout, d)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "identical: %d decisions, %d proposals and %d verdicts over %s %s\n",
		len(got.Decisions), len(got.Proposals), len(got.Verdicts), k.topics.Metrics, r.Range())
	return nil
}
