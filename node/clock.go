package node

import "time"

// Clock is the wall clock of a node's loops: heartbeats, judging rounds,
// retries and the times heartbeats and claims carry. Tests substitute one
// (or run the node in a synctest bubble, where the wall clock is virtual).
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker that ticks every d.
	NewTicker(d time.Duration) Ticker
}

// Ticker is a Clock's ticker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// WallClock is the real clock.
func WallClock() Clock { return wallClock{} }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) NewTicker(d time.Duration) Ticker { return wallTicker{time.NewTicker(d)} }

type wallTicker struct{ t *time.Ticker }

func (t wallTicker) C() <-chan time.Time { return t.t.C }
func (t wallTicker) Stop()               { t.t.Stop() }

// sleep waits d on c, or until done is closed; it reports whether d passed.
func sleep(c Clock, d time.Duration, done <-chan struct{}) bool {
	t := c.NewTicker(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C():
		return true
	}
}
