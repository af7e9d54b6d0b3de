package backtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adrules/adrules/internal/report"
	"github.com/adrules/adrules/rules"
)

// Side is one rule set of a backtest and where its output goes. A
// backtest runs one side, or two (a candidate and a baseline) over the
// same records, each with its own state.
type Side struct {
	Name    string // "candidate" or "baseline", in summaries and reports
	Label   string // where the rule set comes from: a file, "live", "published"
	RuleSet *rules.RuleSet
	Dir     string // receives decisions.jsonl, actions.jsonl and dlq.jsonl
	// Summary is what the side did, set by the run (RunFiles,
	// TopicRun.Run) once it returns without error: Summary.Interrupted
	// says it was stopped before the end of its input.
	Summary *Summary
}

// ProgressFunc is called as a run starts, with the total of unit it will
// read over all its sides (0 when unknown) and a function saying how much
// it has read so far; the run calls the stop it returns when it ends. It
// has the shape of replay.Options.Progress: progress bars are the caller's.
type ProgressFunc func(total int64, unit string, read func() int64) (stop func())

// FilesOptions configure RunFiles.
type FilesOptions struct {
	// Input is the file of metric events (JSON Lines), or "-" for Stdin,
	// which only one side can read.
	Input string
	Stdin io.Reader
	// Actions, when not "", is a file of external proposals.
	Actions string
	// Batch is the number of records per batch; default 8192.
	Batch int
	// Progress, when set, gets the bytes of Input read by all sides (the
	// total unknown when Input is "-").
	Progress ProgressFunc
}

// RunFiles runs every side over the files of o at once, each reading them
// on its own, and sets each side's Summary. The error is the first side's,
// by the order of sides, that failed other than by ctx ending (interrupted
// sides have Summary.Interrupted set, and no error), named after it; or
// that of opening a file, before any side starts.
func RunFiles(ctx context.Context, o FilesOptions, sides []*Side) error {
	if o.Input == "-" && len(sides) > 1 {
		return errors.New("backtest: standard input can be read by one side only")
	}
	var read atomic.Int64
	runs := make([]Options, len(sides))
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for i, s := range sides {
		runs[i] = Options{RuleSet: s.RuleSet, InputName: o.Input, OutDir: s.Dir, Batch: o.Batch}
		if o.Input == "-" {
			runs[i].Input = &countingReader{r: o.Stdin, n: &read}
		} else {
			f, err := os.Open(o.Input)
			if err != nil {
				return err
			}
			closers = append(closers, f)
			runs[i].Input = &countingReader{r: f, n: &read}
		}
		if o.Actions != "" {
			f, err := os.Open(o.Actions)
			if err != nil {
				return err
			}
			closers = append(closers, f)
			runs[i].Actions, runs[i].ActionsName = f, o.Actions
		}
	}
	if o.Progress != nil {
		var total int64
		if o.Input != "-" {
			if st, err := os.Stat(o.Input); err == nil {
				total = st.Size() * int64(len(sides))
			}
		}
		defer o.Progress(total, "bytes", read.Load)()
	}
	return runSides(ctx, sides, runs)
}

// runSides runs each side with its options at once and waits for them all.
func runSides(ctx context.Context, sides []*Side, runs []Options) error {
	errs := make([]error, len(sides))
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Go(func() {
			s.Summary, errs[i] = Run(ctx, runs[i])
		})
	}
	wg.Wait()
	for i, s := range sides {
		if errs[i] != nil && (s.Summary == nil || !s.Summary.Interrupted) {
			return fmt.Errorf("%s: %w", s.Name, errs[i])
		}
	}
	return nil
}

// Compare compares the output of two sides that ran over the same records
// (report.Compare), with meta in the report's header, and writes
// diff.jsonl, report.html and report.md to dir.
func Compare(baseline, candidate *Side, meta report.Meta, dir string) (*report.Diff, error) {
	d, err := report.Compare(reportSide(baseline), reportSide(candidate))
	if err != nil {
		return nil, err
	}
	d.Meta = meta
	if err := report.WriteFiles(dir, d); err != nil {
		return nil, err
	}
	return d, nil
}

func reportSide(s *Side) report.Side {
	return report.Side{Name: s.Name, Dir: s.Dir, Label: s.Label, RulesetVersion: s.RuleSet.Version, RulesetSHA256: s.RuleSet.SHA256}
}

// LongestWindow is the longest rolling window rs declares: the warm-up
// that gives a range's first records the state they would have had.
func LongestWindow(rs *rules.RuleSet) time.Duration {
	var d time.Duration
	for _, w := range rs.Doc.Windows {
		d = max(d, w.D())
	}
	return d
}

// DefaultWarmup is the warm-up of a topic backtest of sides: the longest
// window of any side's rule set.
func DefaultWarmup(sides []*Side) time.Duration {
	var d time.Duration
	for _, s := range sides {
		d = max(d, LongestWindow(s.RuleSet))
	}
	return d
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
