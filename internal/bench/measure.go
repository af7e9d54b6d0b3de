package bench

import (
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"
)

// Result is what one part measured over its window: from before it made
// its first client to the moment it had handled its last event (the
// pipeline: committed it), not its shutdown.
type Result struct {
	Part   string `json:"part"`
	Events int64  `json:"events"` // records consumed, processed or (restore) the partitions' history
	// Wall is the window's length.
	Wall time.Duration `json:"wall"`
	// CPU is the user and system time of the part's process over the
	// window (getrusage), every goroutine of it: the client, the engine,
	// Pebble's compactions.
	CPU time.Duration `json:"cpu"`
	// BrokerCPU is that of the process that runs the broker (the parent)
	// over the part's whole run, filled in by Spawn.
	BrokerCPU time.Duration `json:"broker_cpu"`
	// Allocs and AllocBytes are the heap allocations over the window
	// (runtime.MemStats Mallocs and TotalAlloc).
	Allocs     uint64 `json:"allocs"`
	AllocBytes uint64 `json:"alloc_bytes"`
	// MaxRSS is the part's process's peak resident set (getrusage maxrss):
	// each part runs in a process of its own, so it is the part's alone.
	MaxRSS int64 `json:"max_rss"`
	// PeakHeap is the largest HeapInuse seen, sampled every 100 ms.
	PeakHeap uint64 `json:"peak_heap"`

	// The plain loop: distinct ads and their total impressions.
	Ads         int   `json:"ads,omitempty"`
	Impressions int64 `json:"impressions,omitempty"`

	// The pipeline.
	Decisions  int64         `json:"decisions,omitempty"`
	Batches    int           `json:"batches,omitempty"`
	FirstBatch time.Duration `json:"first_batch,omitempty"` // from the start to the first batch committed
	CommitP50  time.Duration `json:"commit_p50,omitempty"`  // a batch's commits: the transaction, then Pebble
	CommitP99  time.Duration `json:"commit_p99,omitempty"`
	StateBytes uint64        `json:"state_bytes,omitempty"` // Pebble's disk usage at the end

	// The restore.
	Assigned   time.Duration    `json:"assigned,omitempty"`    // from the start to the first assignment
	Ready      time.Duration    `json:"ready,omitempty"`       // from the start to every assigned partition restored
	Replayed   map[string]int64 `json:"replayed,omitempty"`    // records replayed into the state, by topic
	RebuildMax time.Duration    `json:"rebuild_max,omitempty"` // the longest rebuild of one partition
	RebuildSum time.Duration    `json:"rebuild_sum,omitempty"` // all partitions' rebuilds, added up
	Partitions int              `json:"partitions,omitempty"`  // partitions restored
	Imported   int              `json:"imported,omitempty"`    // partitions restored from a snapshot
}

// EventsPerSec is Events over Wall.
func (r Result) EventsPerSec() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Events) / r.Wall.Seconds()
}

// PerEvent divides d by the events, in µs.
func (r Result) PerEvent(d time.Duration) float64 {
	if r.Events == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.Events)
}

// meter measures a window of this process.
type meter struct {
	start   time.Time
	cpu     time.Duration
	mem     runtime.MemStats
	profile *os.File
	stop    chan struct{}
	peak    chan uint64
}

// startMeter starts a window; profile, when not empty, is a file to write
// a CPU profile of the window to.
func startMeter(profile string) (*meter, error) {
	m := &meter{stop: make(chan struct{}), peak: make(chan uint64, 1)}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		m.profile = f
	}
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-m.stop:
				m.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	runtime.ReadMemStats(&m.mem)
	m.cpu = cpuTime()
	m.start = time.Now()
	return m, nil
}

// end closes the window into r.
func (m *meter) end(r *Result) {
	r.Wall = time.Since(m.start)
	r.CPU = cpuTime() - m.cpu
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.Allocs = ms.Mallocs - m.mem.Mallocs
	r.AllocBytes = ms.TotalAlloc - m.mem.TotalAlloc
	r.MaxRSS = maxRSS()
	close(m.stop)
	r.PeakHeap = max(<-m.peak, ms.HeapInuse)
	if m.profile != nil {
		pprof.StopCPUProfile()
		m.profile.Close()
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is the process's peak resident set in bytes (Linux reports KiB).
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

// percentile returns the p-th percentile (0..100) of ds, 0 when empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
