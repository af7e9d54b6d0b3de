package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configure Run.
type Options struct {
	Workload Workload
	// Restore are the history lengths (in metric events, each at least
	// Workload.Events, ascending) after which a fresh node takes over every
	// partition; default Events and 3 times Events.
	Restore []int
	// Root is the repository's root (examples/rules.yaml); default "../..",
	// the root from this package's directory, where go test runs.
	Root string
	// Dir holds the nodes' state; it must exist. Required.
	Dir string
	// Brokers, when set, is the broker to produce to and run against
	// (empty topics of the default names); default: an in-process kfake
	// broker of Run's own, closed when it returns.
	Brokers []string
	// Profile, when set, is where the pipeline part writes a CPU profile of
	// its window.
	Profile string
	// Runner runs a part; default Spawn, each part in a process of its
	// own. RunPart runs them in this process (their peak RSS is then the
	// process's).
	Runner func(ctx context.Context, part string, c PartConfig) (Result, error)
	// SnapshotEvery is how many records of a partition lie between two of
	// the first node's snapshots (node.Options.SnapshotEvery); default
	// node.DefaultSnapshotEvery.
	SnapshotEvery int64
	// Log, when set, is told of progress.
	Log io.Writer
	// NodeLog writes the nodes' logs to standard error.
	NodeLog bool
}

// Report is what Run measured.
type Report struct {
	Date     time.Time
	Workload Workload
	Gen      gen.Stats     // the first Workload.Events events
	Produce  time.Duration // producing them
	// Parts are the no-op consumer, the plain loop and the pipeline, in
	// that order, over the same Workload.Events events.
	Parts    []Result
	Restores []Restore
}

// Restore is one point of the restore benchmark.
type Restore struct {
	History int // metric events in the topic
	// CatchUp is the pipeline run that processed the events from the
	// previous point to History, on the first node's state (nil for the
	// first point, which the end-to-end pipeline processed).
	CatchUp *Result
	// Restore is a fresh node that replays every partition's whole log;
	// FromSnapshot one that imports each partition's newest snapshot the
	// first node wrote, then replays the tail.
	Restore, FromSnapshot Result
}

// Run produces the workload, runs the no-op consumer, the plain loop and
// the pipeline over it one after another, then the restore benchmark.
func Run(ctx context.Context, o Options) (*Report, error) {
	w := o.Workload.withDefaults()
	if o.Root == "" {
		o.Root = "../.."
	}
	if o.Runner == nil {
		o.Runner = Spawn
	}
	if len(o.Restore) == 0 {
		o.Restore = []int{w.Events, 3 * w.Events}
	}
	if !slices.IsSorted(o.Restore) || o.Restore[0] < w.Events {
		return nil, fmt.Errorf("bench: restore points %v: ascending, from %d events", o.Restore, w.Events)
	}
	if o.Dir == "" {
		return nil, errors.New("bench: no directory")
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	if len(o.Brokers) == 0 {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		o.Brokers = c.ListenAddrs()
	}
	topics := streams.DefaultTopics()
	rec, _, err := WinnerRules(o.Root)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(ProducerOpts(o.Brokers)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if err := Setup(ctx, cl, topics, w.Partitions, rec); err != nil {
		return nil, err
	}
	rep := &Report{Date: time.Now().UTC(), Workload: w}
	logf("producing %d events of %d ads to %d partitions", w.Events, w.Ads, w.Partitions)
	start := time.Now()
	if rep.Gen, err = Produce(ctx, cl, topics.Metrics, w, 0, w.Events); err != nil {
		return nil, err
	}
	rep.Produce = time.Since(start)
	snaps := filepath.Join(o.Dir, "snapshots")
	if err := os.MkdirAll(snaps, 0o755); err != nil {
		return nil, err
	}
	base := PartConfig{Brokers: o.Brokers, Topics: topics, Rules: rec, Group: "adrules", Log: o.NodeLog, SnapshotEvery: o.SnapshotEvery}

	nodeDir := filepath.Join(o.Dir, "node")
	for _, part := range []string{PartNoop, PartPlain, PartPipeline} {
		c := base
		c.Expect = int64(w.Events)
		if part == PartPipeline {
			c.NodeID, c.Dir, c.Profile, c.Snapshots = "n1", nodeDir, o.Profile, snaps
		}
		logf("running %s", part)
		r, err := o.Runner(ctx, part, c)
		if err != nil {
			return rep, fmt.Errorf("bench: %s: %w", part, err)
		}
		rep.Parts = append(rep.Parts, r)
	}

	history := w.Events
	for i, n := range o.Restore {
		pt := Restore{History: n}
		if n > history {
			logf("producing events %d to %d", history, n)
			if _, err := Produce(ctx, cl, topics.Metrics, w, history, n); err != nil {
				return rep, err
			}
			c := base
			c.Expect, c.NodeID, c.Dir, c.Snapshots = int64(n-history), "n1", nodeDir, snaps
			logf("processing them")
			r, err := o.Runner(ctx, PartPipeline, c)
			if err != nil {
				return rep, fmt.Errorf("bench: catching up to %d events: %w", n, err)
			}
			pt.CatchUp = &r
			history = n
		}
		c := base
		c.NodeID, c.Dir = fmt.Sprintf("fresh%d", i+1), filepath.Join(o.Dir, fmt.Sprintf("fresh%d", i+1))
		logf("a fresh node takes over %d events", n)
		r, err := o.Runner(ctx, PartRestore, c)
		if err != nil {
			return rep, fmt.Errorf("bench: restore after %d events: %w", n, err)
		}
		pt.Restore = r
		c.NodeID, c.Dir, c.Snapshots = fmt.Sprintf("snap%d", i+1), filepath.Join(o.Dir, fmt.Sprintf("snap%d", i+1)), snaps
		logf("a fresh node takes over %d events from the snapshots", n)
		if pt.FromSnapshot, err = o.Runner(ctx, PartRestore, c); err != nil {
			return rep, fmt.Errorf("bench: restore from snapshots after %d events: %w", n, err)
		}
		rep.Restores = append(rep.Restores, pt)
	}
	return rep, nil
}

// Print writes the report as tables.
func (r *Report) Print(w io.Writer) {
	wl := r.Workload
	fmt.Fprintf(w, "workload: %d events (%d ads reporting) of %d ads over %d partitions, winner rule only; produced in %s (%.0f events/s)\n",
		wl.Events, r.Gen.Ads, wl.Ads, wl.Partitions, r.Produce.Round(time.Millisecond), float64(wl.Events)/r.Produce.Seconds())
	fmt.Fprintf(w, "\n| | events/s | CPU µs/event | broker CPU µs/event | allocs/event | B/event | peak RSS | peak heap |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	names := map[string]string{
		PartNoop:     "a franz-go consumer that does nothing",
		PartPlain:    "a plain franz-go loop: encoding/json, a Go map",
		PartPipeline: "adrules node (streams.Node, engine, Pebble), winner rule only",
	}
	for _, p := range r.Parts {
		fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %.1f | %s | %s | %s |\n", names[p.Part], thousands(p.EventsPerSec()),
			p.PerEvent(p.CPU), p.PerEvent(p.BrokerCPU), float64(p.Allocs)/float64(max(p.Events, 1)),
			thousands(float64(p.AllocBytes)/float64(max(p.Events, 1))), mib(p.MaxRSS), mib(int64(p.PeakHeap)))
	}
	for _, p := range r.Parts {
		if p.Part == PartPipeline {
			fmt.Fprintf(w, "\npipeline: %d decisions, %d batches (%.0f events each), first batch committed after %s, batch commit p50 %s p99 %s, state %s on disk\n",
				p.Decisions, p.Batches, float64(p.Events)/float64(max(p.Batches, 1)), p.FirstBatch.Round(time.Millisecond),
				p.CommitP50.Round(time.Millisecond), p.CommitP99.Round(time.Millisecond), mib(int64(p.StateBytes)))
		}
	}
	if len(r.Restores) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| history | from | ready after | assigned after | partitions from a snapshot | metric events replayed | other records replayed | s per million events | longest partition | partitions' rebuilds added up | CPU s | peak RSS | the first node's state on disk |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var state uint64 // the first node's state at the point
	for _, p := range r.Parts {
		if p.Part == PartPipeline {
			state = p.StateBytes
		}
	}
	for _, pt := range r.Restores {
		if pt.CatchUp != nil {
			state = pt.CatchUp.StateBytes
		}
		for _, side := range []struct {
			from string
			x    Result
		}{{"log", pt.Restore}, {"snapshot", pt.FromSnapshot}} {
			x := side.x
			other := int64(0)
			for _, n := range x.Replayed {
				other += n
			}
			other -= x.Events
			perMillion := "–" // nothing replayed
			if x.Events > 0 {
				perMillion = fmt.Sprintf("%.1f", (x.Ready-x.Assigned).Seconds()/(float64(x.Events)/1e6))
			}
			fmt.Fprintf(w, "| %s | %s | %.1f s | %.1f s | %d of %d | %s | %s | %s | %.1f s | %.1f s | %.1f | %s | %s |\n", thousands(float64(pt.History)),
				side.from, x.Ready.Seconds(), x.Assigned.Seconds(), x.Imported, x.Partitions, thousands(float64(x.Events)), thousands(float64(other)),
				perMillion, x.RebuildMax.Seconds(), x.RebuildSum.Seconds(),
				x.CPU.Seconds(), mib(x.MaxRSS), mib(int64(state)))
		}
	}
	for _, pt := range r.Restores {
		if c := pt.CatchUp; c != nil {
			fmt.Fprintf(w, "\ncatching up to %d events: %s events/s, %.2f CPU µs/event, first batch committed after %s, %d batches, batch commit p50 %s, state %s on disk\n",
				pt.History, thousands(c.EventsPerSec()), c.PerEvent(c.CPU), c.FirstBatch.Round(time.Millisecond), c.Batches,
				c.CommitP50.Round(time.Millisecond), mib(int64(c.StateBytes)))
		}
	}
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// The environment of a part's process.
const (
	envPart = "ADRULES_BENCH_PART"
	envConf = "ADRULES_BENCH_CONF"
	envOut  = "ADRULES_BENCH_OUT"
)

// Spawn runs a part in a process of its own, this executable run again
// with the part in its environment: it must call Child first thing (a test
// binary, in TestMain). So each part's peak RSS and allocations are its
// own, and the broker's CPU (in this process) is told apart from the
// part's. Its output goes to this process's standard error.
func Spawn(ctx context.Context, part string, c PartConfig) (Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return Result{}, err
	}
	conf, err := json.Marshal(c)
	if err != nil {
		return Result{}, err
	}
	out, err := os.CreateTemp("", "adrules-bench-*.json")
	if err != nil {
		return Result{}, err
	}
	out.Close()
	defer os.Remove(out.Name())
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envPart+"="+part, envConf+"="+string(conf), envOut+"="+out.Name())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	before := cpuTime()
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("bench: the %s process: %w", part, err)
	}
	broker := cpuTime() - before
	data, err := os.ReadFile(out.Name())
	if err != nil {
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, err
	}
	r.BrokerCPU = broker
	return r, nil
}

// Child runs the part its environment names, when it does (Spawn), writes
// its Result where Spawn reads it, and returns the process's exit code and
// true; without a part it returns false and does nothing.
func Child() (int, bool) {
	part := os.Getenv(envPart)
	if part == "" {
		return 0, false
	}
	var c PartConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConf)), &c); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", part, err)
		return 1, true
	}
	r, err := RunPart(context.Background(), part, c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", part, err)
		return 1, true
	}
	data, err := json.Marshal(r)
	if err == nil {
		err = os.WriteFile(os.Getenv(envOut), data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", part, err)
		return 1, true
	}
	return 0, true
}
