package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// restoreRecorder keeps what a node tells its Observer of restores and
// snapshots.
type restoreRecorder struct {
	node.NopObserver
	mu       sync.Mutex
	progress map[string][2]int64 // "topic/partition" -> the last replayed, total told
	restores []node.Restore
	written  []node.SnapshotInfo
	failed   int
}

func (r *restoreRecorder) RestoreProgress(topic string, partition int32, replayed, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.progress == nil {
		r.progress = map[string][2]int64{}
	}
	r.progress[topic+"/"+fmt.Sprint(partition)] = [2]int64{replayed, total}
}

func (r *restoreRecorder) RestoreDone(x node.Restore) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.restores = append(r.restores, x)
}

func (r *restoreRecorder) SnapshotWritten(s node.SnapshotInfo, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		return
	}
	r.written = append(r.written, s)
}

func startObserved(t *testing.T, addrs []string, topics streams.Topics, id string, b *blob.Bucket, obs node.Observer) (*node.Node, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Start(ctx, node.Options{
		Logger:     slog.New(slog.DiscardHandler),
		Connection: streams.Connection{Brokers: addrs, Topics: topics},
		Group:      kafkatest.Group(topics), NodeID: id, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0",
		Bootstrap:  func() (*rules.RuleSet, error) { return kafkatest.DefaultRules(t, ".."), nil },
		Partitions: 4, CreateTopics: true, IdleAfter: time.Second,
		Keys:           versions.Keys{Policy: versions.Policy{AcceptUnsigned: true}, PublishUnsigned: true},
		SnapshotBucket: b, SnapshotEvery: 40, Observer: obs,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return n, cancel
}

func stopObserved(t *testing.T, n *node.Node, cancel context.CancelFunc) {
	t.Helper()
	cancel()
	if err := n.Wait(); err != nil {
		t.Errorf("node: %v", err)
	}
}

// TestRestoreObserver: node a processes a history and writes snapshots
// (each told with its event time and size); node b, fresh and with the
// store, restores the metric partitions from a snapshot and replays their
// tails; node c, fresh and without a store, replays the whole log, its
// progress told up to the records to replay. Each restore is told once,
// with its source.
func TestRestoreObserver(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	bucket, err := fileblob.OpenBucket(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	lines := kafkatest.History(t, 61, gen.Options{Accounts: 4})
	lines = lines[:len(lines)/2]
	cl := kafkatest.Client(t, addrs)
	group := kafkatest.Group(topics)

	ra := &restoreRecorder{}
	a, stopA := startObserved(t, addrs, topics, "a", bucket, ra)
	for i := range 2 {
		kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines[i*len(lines)/2:(i+1)*len(lines)/2])
		kafkatest.CaughtUp(t, addrs, group, topics, 2*time.Minute)
	}
	stopObserved(t, a, stopA)
	ra.mu.Lock()
	if len(ra.written) == 0 || ra.failed != 0 {
		t.Fatalf("node a: %d snapshots written, %d failed", len(ra.written), ra.failed)
	}
	for _, s := range ra.written {
		if s.Topic == topics.Metrics && (s.EventTime <= 0 || s.Bytes <= 0 || s.Offset <= 0) {
			t.Errorf("snapshot told: %+v", s)
		}
	}
	for _, x := range ra.restores {
		if x.Source != node.RestoreLocal {
			t.Errorf("node a, on an empty topic: restore %+v", x)
		}
	}
	ra.mu.Unlock()

	for _, tc := range []struct {
		id     string
		bucket *blob.Bucket
		source string
	}{{"b", bucket, node.RestoreSnapshot}, {"c", nil, node.RestoreLog}} {
		r := &restoreRecorder{}
		n, stop := startObserved(t, addrs, topics, tc.id, tc.bucket, r)
		waitReady(t, n)
		stopObserved(t, n, stop)
		r.mu.Lock()
		metrics := 0
		for _, x := range r.restores {
			if x.Topic != topics.Metrics {
				continue
			}
			metrics++
			if x.Source != tc.source || x.Elapsed <= 0 || (x.Snapshot != nil) != (tc.source == node.RestoreSnapshot) || x.EventTime <= 0 {
				t.Errorf("node %s: restore %+v, want source %s", tc.id, x, tc.source)
			}
			if x.Snapshot != nil && x.Snapshot.Offset <= 0 {
				t.Errorf("node %s: snapshot imported %+v", tc.id, *x.Snapshot)
			}
			p := r.progress[x.Topic+"/"+fmt.Sprint(x.Partition)]
			if x.Replayed > 0 && (p[0] != x.Replayed || p[1] != x.Replayed) {
				t.Errorf("node %s: partition %d replayed %d, last progress told %v", tc.id, x.Partition, x.Replayed, p)
			}
			if tc.source == node.RestoreLog && x.Replayed == 0 {
				t.Errorf("node %s: partition %d restored from the log replayed nothing", tc.id, x.Partition)
			}
		}
		if metrics != 4 {
			t.Errorf("node %s: %d restores of metric partitions told, want 4: %+v", tc.id, metrics, r.restores)
		}
		r.mu.Unlock()
	}
}
