package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows how far a long run is: on a terminal a bar redrawn in
// place, elsewhere a line every few seconds. It reads the wall clock: it
// reports, it never decides.
type progress struct {
	w     io.Writer
	tty   bool
	total int64 // 0 when unknown
	unit  string
	read  func() int64

	stop chan struct{}
	done sync.WaitGroup
}

// Redraw intervals: a terminal is cheap to redraw, a log is not.
const (
	ttyEvery  = 200 * time.Millisecond
	lineEvery = 5 * time.Second
)

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// startProgress reports read() of total every so often until Stop.
func startProgress(w io.Writer, total int64, unit string, read func() int64) *progress {
	p := &progress{w: w, tty: isTerminal(w), total: total, unit: unit, read: read, stop: make(chan struct{})}
	every := lineEvery
	if p.tty {
		every = ttyEvery
	}
	start := time.Now()
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				if p.tty {
					fmt.Fprintf(w, "\r\033[K%s\n", progressLine(p.read(), p.total, p.unit, time.Since(start), 30))
				}
				return
			case <-t.C:
				line := progressLine(p.read(), p.total, p.unit, time.Since(start), 30)
				if p.tty {
					fmt.Fprintf(w, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	}()
	return p
}

// Stop ends the reports (a terminal gets its last state and a newline).
func (p *progress) Stop() {
	close(p.stop)
	p.done.Wait()
}

// progressLine formats one report: a bar of width cells when the total is
// known, the count, the rate and the time left.
func progressLine(read, total int64, unit string, elapsed time.Duration, width int) string {
	var b strings.Builder
	rate := 0.0
	if elapsed > 0 {
		rate = float64(read) / elapsed.Seconds()
	}
	if total > 0 {
		frac := min(float64(read)/float64(total), 1)
		full := int(frac * float64(width))
		b.WriteString("[" + strings.Repeat("#", full) + strings.Repeat(".", width-full) + "]")
		fmt.Fprintf(&b, " %3.0f%% %s/%s %s", frac*100, count(read), count(total), unit)
	} else {
		fmt.Fprintf(&b, "%s %s", count(read), unit)
	}
	fmt.Fprintf(&b, ", %s/s", count(int64(rate)))
	if total > 0 && rate > 0 && read < total {
		left := time.Duration(float64(total-read) / rate * float64(time.Second))
		fmt.Fprintf(&b, ", %s left", left.Round(time.Second))
	}
	return b.String()
}

// count writes n shortly: 950, 12.3k, 4.56M.
func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// progressTo returns the progress hook of a library run (a backtest's, a
// replay's): a progress report on w from the run's start to its end.
func progressTo(w io.Writer) func(total int64, unit string, read func() int64) (stop func()) {
	return func(total int64, unit string, read func() int64) func() {
		return startProgress(w, total, unit, read).Stop
	}
}
