package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cmdProduce writes a JSON Lines file to a topic, keyed by ad_id (or by
// account_id on the proposals topics), and waits until every record is
// acknowledged.
func cmdProduce(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	topic := fs.String("topic", "", "topic (default: the metrics topic)")
	timeout := fs.Duration("timeout", time.Minute, "give up when the records are not all acknowledged by then")
	stamp := fs.String("timestamp", "now", "record timestamps: now, or event (each line's ts, so that replays by time find a history loaded later)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules produce --brokers LIST [--topic T] FILE.jsonl\n\nProduces one record per line, keyed by ad_id (account_id on the actions and proposals topics); - reads standard input.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fs.Usage()
		return exitError{2}
	}
	if *topic == "" {
		*topic = k.topics.Metrics
	}
	if *stamp != "now" && *stamp != "event" {
		fmt.Fprintf(stderr, "adrules produce: --timestamp %q: use now or event\n", *stamp)
		return exitError{2}
	}
	in := stdin
	if fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	c, err := streams.Open(k.connection(env))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		return err
	}
	n, unkeyed, err := streams.ProduceLines(ctx, c, *topic, in, *stamp == "event")
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "produced %d records to %s (%d without a %s key)\n", n, *topic, unkeyed, streams.KeyOf(*topic, k.topics))
	return nil
}

// cmdTail prints the records of a topic (decisions by default) as they
// come, as a read_committed consumer sees them.
func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	topic := fs.String("topic", "", "topic (default: the decisions topic)")
	fromStart := fs.Bool("from-beginning", false, "start at the beginning of the topic instead of its end")
	limit := fs.Int("n", 0, "stop after this many records (0: never)")
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	if *topic == "" {
		*topic = k.topics.Decisions
	}
	start := kgo.NewOffset().AtEnd()
	if *fromStart {
		start = kgo.NewOffset().AtStart()
	}
	c, err := streams.Dial(ctx, k.connection(env))
	if err != nil {
		return err
	}
	defer c.Close()
	cl, err := c.NewClient(kgo.ConsumeTopics(*topic), kgo.ConsumeResetOffset(start), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	seen := 0
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if *limit > 0 && seen >= *limit {
				return
			}
			w.Write(r.Value)
			w.WriteByte('\n')
			seen++
		})
		w.Flush()
		if *limit > 0 && seen >= *limit {
			return nil
		}
	}
}
