package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestMain(m *testing.M) {
	if code, ok := Child(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

var (
	e2e        = flag.Bool("e2e", false, "run TestE2E, the measurement (make bench-e2e)")
	events     = flag.Int("events", 1_000_000, "TestE2E: metric events of the end-to-end run")
	ads        = flag.Int("ads", 20_000, "TestE2E: ads")
	partitions = flag.Int("partitions", 6, "TestE2E: partitions of every topic")
	restores   = flag.String("restore", "", "TestE2E: history lengths of the restore benchmark, comma-separated (default: events and 3 times events)")
	snapEvery  = flag.Int64("snapshot-every", 0, "TestE2E: records of a partition between two of the first node's snapshots (default node.DefaultSnapshotEvery)")
	nodeLog    = flag.Bool("node-log", false, "TestE2E: write the nodes' logs to standard error")
	profile    = flag.String("pipeline-cpuprofile", "", "TestE2E: write a CPU profile of the pipeline part here")
)

// TestE2E is the measurement; it runs only with -e2e.
func TestE2E(t *testing.T) {
	if !*e2e {
		t.Skip("the measurement runs with -e2e (make bench-e2e)")
	}
	o := Options{Workload: Workload{Events: *events, Ads: *ads, Partitions: *partitions},
		Dir: t.TempDir(), Profile: *profile, Log: os.Stderr, NodeLog: *nodeLog, SnapshotEvery: *snapEvery}
	for _, s := range strings.Split(*restores, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
			if err != nil {
				t.Fatalf("-restore: %v", err)
			}
			o.Restore = append(o.Restore, n)
		}
	}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\nend to end and restore, %s, GOMAXPROCS %d\n\n", rep.Date.Format(time.DateOnly), runtimeProcs())
	rep.Print(os.Stdout)
}

// TestSmoke runs every part once at a small size, each in a process of its
// own as the measurement does, and checks the counts: every event consumed
// or processed, the plain loop's sums those of the history, the pipeline's
// decisions (exactly once) those of a file backtest over the same events,
// every event replayed by each full restore, and a restore from the
// snapshots importing one per metric partition and replaying less. Timing
// is not checked.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a broker and ten processes")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := Workload{Events: 6000, Ads: 200, Partitions: 3, Seed: 7}
	total := 12000
	rep, err := Run(context.Background(), Options{Workload: w, Restore: []int{w.Events, total}, Dir: t.TempDir(), Brokers: c.ListenAddrs(),
		SnapshotEvery: 500})
	if err != nil {
		t.Fatal(err)
	}
	rep.Print(testWriter{t})

	lines := history(t, w, total)
	var impressions int64
	adSet := map[string]bool{}
	for _, l := range lines[:w.Events] {
		var ev metric
		if err := jsonUnmarshal(l, &ev); err != nil {
			t.Fatal(err)
		}
		impressions += ev.Impressions
		adSet[ev.AdID] = true
	}
	if len(rep.Parts) != 3 {
		t.Fatalf("%d parts", len(rep.Parts))
	}
	for _, p := range rep.Parts {
		if p.Events != int64(w.Events) || p.Wall <= 0 || p.CPU <= 0 || p.MaxRSS <= 0 {
			t.Errorf("%s: %d events in %s, CPU %s, peak RSS %d; want %d events and positive measures", p.Part, p.Events, p.Wall, p.CPU, p.MaxRSS, w.Events)
		}
	}
	if p := rep.Parts[1]; p.Ads != len(adSet) || p.Impressions != impressions || p.Ads != rep.Gen.Ads {
		t.Errorf("plain loop: %d ads, %d impressions; the history has %d ads (gen says %d), %d impressions", p.Ads, p.Impressions, len(adSet), rep.Gen.Ads, impressions)
	}

	// The pipeline's decisions, exactly once, equal the backtest's.
	_, rs, err := WinnerRules("../..")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := kafkatest.Backtest(t, rs, lines)
	if len(want) == 0 {
		t.Fatal("the history has no winner: the test would prove little")
	}
	decided := rep.Parts[2].Decisions
	for _, pt := range rep.Restores {
		if pt.CatchUp != nil {
			decided += pt.CatchUp.Decisions
			if pt.CatchUp.Events != int64(total-w.Events) {
				t.Errorf("catching up: %d events processed, want %d", pt.CatchUp.Events, total-w.Events)
			}
		}
	}
	if decided != int64(len(want)) {
		t.Errorf("the pipeline counted %d decisions, the backtest made %d", decided, len(want))
	}
	got, _ := kafkatest.ConsumeDecisions(t, c.ListenAddrs(), "adrules.decisions", len(want), time.Minute)
	if g, w := kafkatest.Normalize(t, got), kafkatest.Normalize(t, want); !slices.Equal(g, w) {
		t.Errorf("the node's decisions differ from the backtest's: %d vs %d", len(g), len(w))
	}

	for i, pt := range rep.Restores {
		r := pt.Restore
		if r.Events != int64(pt.History) || r.Partitions != 3*w.Partitions || r.Ready <= 0 {
			t.Errorf("restore %d: %d metric events replayed of %d, %d partitions restored (want %d), ready after %s",
				i, r.Events, pt.History, r.Partitions, 3*w.Partitions, r.Ready)
		}
		// From the snapshots: every metric partition imports one (each
		// had more than 500 events) and replays less than its history.
		s := pt.FromSnapshot
		if s.Imported < w.Partitions || s.Events >= int64(pt.History) || s.Partitions != 3*w.Partitions || s.Ready <= 0 {
			t.Errorf("restore %d from snapshots: %d partitions imported (want at least %d), %d metric events replayed of %d, %d partitions restored, ready after %s",
				i, s.Imported, w.Partitions, s.Events, pt.History, s.Partitions, s.Ready)
		}
	}
}

// TestPrefix: the first n events of a longer history are those of a
// history of n events, which the restore benchmark relies on when it
// produces the events past the first run's.
func TestPrefix(t *testing.T) {
	w := Workload{Events: 500, Ads: 30, Partitions: 2}.withDefaults()
	short, long := history(t, w, 500), history(t, w, 1300)
	if !slices.EqualFunc(short, long[:500], bytes.Equal) {
		t.Fatal("a longer history does not begin with the shorter one")
	}
}

// TestWinnerRules: the measured rule set is the default file's winner rule
// alone, as a node compiles it.
func TestWinnerRules(t *testing.T) {
	rec, rs, err := WinnerRules("../..")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Doc.Rules) != 1 || rs.Doc.Rules[0].ID != "winner" || rs.Version != 1 || rs.SHA256 != rec.SHA256 {
		t.Fatalf("rules %v, version %d, sha256 %s (record %s)", rs.Doc.Rules, rs.Version, rs.SHA256, rec.SHA256)
	}
}

func history(t *testing.T, w Workload, n int) [][]byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := gen.Events(&b, w.withDefaults().genOptions(n)); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSpace(b.Bytes()), []byte("\n"))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
