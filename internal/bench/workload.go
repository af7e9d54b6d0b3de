package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/adrules/adrules/config"
	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Workload is the synthetic history a run produces: Events metric events of
// Ads ads over Partitions partitions of the metrics topic.
type Workload struct {
	// Events is the number of metric events of the end-to-end run; default
	// 1,000,000 (issue 13).
	Events int
	// Ads is the number of ads; default 20,000. They are spread over
	// accounts of 200 ads (fewer ads: one account).
	Ads int
	// Partitions of every topic; default 6.
	Partitions int
	// Seed of the generator; default 1.
	Seed uint64
}

func (w Workload) withDefaults() Workload {
	if w.Events <= 0 {
		w.Events = 1_000_000
	}
	if w.Ads <= 0 {
		w.Ads = 20_000
	}
	if w.Partitions <= 0 {
		w.Partitions = 6
	}
	if w.Seed == 0 {
		w.Seed = 1
	}
	return w
}

// genOptions are the generator's options for the first n events of the
// workload. The span is two days of hourly intervals, so every ad has gone
// live by the 42nd hour and the history goes on with the same ads (gen
// writes past the span when asked for more events): with the defaults all
// 20,000 ads report in the first million events, 50 events each.
func (w Workload) genOptions(n int) gen.Options {
	per := min(w.Ads, 200)
	accounts := (w.Ads + per - 1) / per
	return gen.Options{Seed: w.Seed, Accounts: accounts, AdsPerAccount: per, Duration: 48 * time.Hour, Events: n}
}

// WinnerRules returns the rule set of the measurement: examples/rules.yaml
// (under root, the repository's root) with its winner rule only (issue 13:
// "winner rule only"), as version 1 of its name, the record a node compiles.
// Its windows, dedupe horizon and params are the default file's, so each
// event still keeps its minute bucket and its event id.
func WinnerRules(root string) (versions.Record, *rules.RuleSet, error) {
	path := filepath.Join(root, "examples", "rules.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return versions.Record{}, nil, err
	}
	doc, err := config.Load(path, data, config.Options{})
	if err != nil {
		return versions.Record{}, nil, err
	}
	var kept []config.Rule
	for _, r := range doc.Rules {
		if r.ID == "winner" {
			kept = append(kept, r)
		}
	}
	if len(kept) != 1 {
		return versions.Record{}, nil, fmt.Errorf("%s: no rule with id winner", path)
	}
	doc.Rules = kept
	// Loaded again from its canonical form, as a node loads a published
	// version, so that the hash is that of what is published.
	doc, err = config.Load("winner-only", doc.Canonical(), config.Options{})
	if err != nil {
		return versions.Record{}, nil, err
	}
	rec := versions.Record{Name: doc.Name, Version: 1, SHA256: doc.SHA256(), Author: "bench", Document: doc.Canonical()}
	rs, err := versions.Compile(rec)
	if err != nil {
		return versions.Record{}, nil, err
	}
	return rec, rs, nil
}

// Setup creates the topics with w.Partitions partitions each, as `adrules
// run --create-topics` does, and publishes rec as the live rule set.
func Setup(ctx context.Context, cl *kgo.Client, topics streams.Topics, partitions int, rec versions.Record) error {
	if err := streams.EnsureTopics(ctx, cl, topics.Specs(int32(partitions), 7), -1); err != nil {
		return err
	}
	return streams.Publish(ctx, cl, topics, rec)
}

// Produce writes events [from, to) of the workload to topic, keyed by ad_id
// and partitioned by murmur2 as `adrules produce` partitions them, and
// returns what the generator wrote of the first to events. Lines are made
// as they are produced, so a large history is never held in memory.
func Produce(ctx context.Context, cl *kgo.Client, topic string, w Workload, from, to int) (gen.Stats, error) {
	w = w.withDefaults()
	p := &producer{ctx: ctx, cl: cl, topic: topic, skip: from}
	st, err := gen.Events(p, w.genOptions(to))
	if err == nil {
		err = p.flush()
	}
	if err == nil && p.produced != to-from {
		err = fmt.Errorf("bench: produced %d events, want %d", p.produced, to-from)
	}
	return st, err
}

// producer is the io.Writer gen writes lines to: it produces each whole
// line past skip as one record, asynchronously, and flushes at the end.
type producer struct {
	ctx      context.Context
	cl       *kgo.Client
	topic    string
	skip     int
	line     int // lines seen
	produced int
	partial  []byte
	err      error
	failed   chan error
}

const adKey = `"ad_id":"`

func (p *producer) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			break
		}
		line := b[:i]
		if len(p.partial) > 0 {
			line = append(p.partial, line...)
			p.partial = nil
		}
		b = b[i+1:]
		if err := p.emit(line); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (p *producer) emit(line []byte) error {
	p.line++
	if p.line <= p.skip {
		return nil
	}
	if p.failed == nil {
		p.failed = make(chan error, 1)
	}
	select {
	case err := <-p.failed:
		return err
	default:
	}
	// The key is the ad_id as the line writes it (gen's ids need no
	// unescaping).
	i := bytes.Index(line, []byte(adKey))
	if i < 0 {
		return fmt.Errorf("bench: line %d has no ad_id: %s", p.line, line)
	}
	key := line[i+len(adKey):]
	key = key[:bytes.IndexByte(key, '"')]
	r := &kgo.Record{Topic: p.topic, Key: bytes.Clone(key), Value: bytes.Clone(line)}
	p.cl.Produce(p.ctx, r, func(_ *kgo.Record, err error) {
		if err != nil {
			select {
			case p.failed <- err:
			default:
			}
		}
	})
	p.produced++
	return nil
}

func (p *producer) flush() error {
	if len(p.partial) > 0 {
		return errors.New("bench: the generator's output ends in a partial line")
	}
	if err := p.cl.Flush(p.ctx); err != nil {
		return err
	}
	select {
	case err := <-p.failed:
		return err
	default:
		return nil
	}
}

// ProducerOpts are the client options of Produce: the default murmur2 key
// partitioner of franz-go (the Java client's, which adrules requires and
// `adrules produce` uses), batches that linger a little.
func ProducerOpts(brokers []string) []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5 * time.Millisecond),
		kgo.MaxBufferedRecords(100_000), kgo.ProducerBatchMaxBytes(1 << 20)}
}
