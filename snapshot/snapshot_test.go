package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/snapshot"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
)

const t0 = int64(1793491200000)

func openDB(t *testing.T) *state.DB {
	t.Helper()
	db, err := state.Open("state", state.Options{Pebble: &pebble.Options{FS: vfs.NewMem()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// advance applies n more events to partition 0 of "m" and commits.
func advance(t *testing.T, db *state.DB, from, n int) int64 {
	t.Helper()
	p, err := db.Partition("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		ev := rules.Event{EventID: fmt.Sprint("e", i), TS: t0 + int64(i)*60_000, AccountID: "a", AdID: fmt.Sprint("ad", i%4), Impressions: int64(i)}
		st, err := p.Ad(ev.AdID)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(&ev, rules.IDHash(ev.EventID), 86_400_000, 86_400_000)
		p.SetEventTime(ev.TS)
	}
	if err := p.Commit(int64(from + n)); err != nil {
		t.Fatal(err)
	}
	return int64(from + n)
}

func save(t *testing.T, s *snapshot.Store, db *state.DB) (snapshot.Entry, state.Manifest, error) {
	t.Helper()
	snap, err := db.Snapshot("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	return s.Save(context.Background(), snap, "m", 0, []state.Version{{Version: 1, SHA256: "x", From: -1}})
}

func offsets(t *testing.T, s *snapshot.Store) []int64 {
	t.Helper()
	list, err := s.List(context.Background(), "m", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range list {
		out = append(out, e.Offset)
	}
	return out
}

func buckets(t *testing.T) map[string]func() *blob.Bucket {
	return map[string]func() *blob.Bucket{
		"mem": func() *blob.Bucket { return memblob.OpenBucket(nil) },
		"file": func() *blob.Bucket {
			b, err := fileblob.OpenBucket(t.TempDir(), &fileblob.Options{NoTempDir: true})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
}

// TestSaveListRestore: snapshots are named by offset, listed newest first,
// the newest Keep kept; Restore imports the newest past the local state's
// offset, and nothing when the local state is as new.
func TestSaveListRestore(t *testing.T) {
	for name, open := range buckets(t) {
		t.Run(name, func(t *testing.T) {
			b := open()
			defer b.Close()
			s := snapshot.New(b, snapshot.Options{Prefix: "grp", Keep: 2})
			db := openDB(t)
			var digests []string
			off := int64(0)
			for i := range 4 {
				off = advance(t, db, int(off), 10+i)
				e, m, err := save(t, s, db)
				if err != nil {
					t.Fatal(err)
				}
				if e.Offset != off || m.Offset != off || !strings.HasPrefix(e.Key, "grp/m/0/") {
					t.Fatalf("saved %+v (manifest offset %d), want offset %d", e, m.Offset, off)
				}
				digests = append(digests, m.SHA256)
			}
			if got := offsets(t, s); !slices.Equal(got, []int64{off, off - 13}) {
				t.Fatalf("kept %v, want the newest two", got)
			}
			if e, ok, err := s.Newest(context.Background(), "m", 0); err != nil || !ok || e.Offset != off {
				t.Fatalf("Newest: %+v %v %v", e, ok, err)
			}
			if _, ok, _ := s.Newest(context.Background(), "m", 1); ok {
				t.Fatal("a snapshot of a partition never saved")
			}

			fresh := openDB(t)
			res, err := s.Restore(context.Background(), fresh, "m", 0, -1)
			if err != nil || res.Entry.Offset != off || len(res.Refused) != 0 {
				t.Fatalf("Restore: %+v %v", res, err)
			}
			if d, _, _ := fresh.Digest("m", 0); d != digests[3] {
				t.Fatal("restored digest differs")
			}
			// The local state is as new as the newest: nothing to import.
			if res, err := s.Restore(context.Background(), fresh, "m", 0, off); err != nil || res.Entry.Key != "" {
				t.Fatalf("Restore over a state as new: %+v %v", res, err)
			}
		})
	}
}

// TestCorruptSnapshotSkipped: a final object that is not whole (a store
// that showed one anyway, a disk that rotted) is refused and the next
// older one imported; when none checks, nothing is imported and the local
// state stays for a full replay.
func TestCorruptSnapshotSkipped(t *testing.T) {
	b := memblob.OpenBucket(nil)
	defer b.Close()
	s := snapshot.New(b, snapshot.Options{Keep: 5})
	db := openDB(t)
	off1 := advance(t, db, 0, 20)
	e1, m1, err := save(t, s, db)
	if err != nil {
		t.Fatal(err)
	}
	off2 := advance(t, db, int(off1), 20)
	e2, _, err := save(t, s, db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data, err := b.ReadAll(ctx, e2.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, e2.Key, data[:len(data)/2], nil); err != nil { // truncated
		t.Fatal(err)
	}
	fresh := openDB(t)
	res, err := s.Restore(ctx, fresh, "m", 0, -1)
	if err != nil || res.Entry.Offset != off1 || len(res.Refused) != 1 || !errors.Is(res.Refused[0], state.ErrCorruptSnapshot) {
		t.Fatalf("Restore: %+v %v; want %d with %d refused", res, err, off1, off2)
	}
	if d, _, _ := fresh.Digest("m", 0); d != m1.SHA256 {
		t.Fatal("restored digest differs")
	}

	data[len(data)/3] ^= 1 // corrupt, whole length
	if err := b.WriteAll(ctx, e2.Key, data, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, e1.Key, []byte("not a snapshot"), nil); err != nil {
		t.Fatal(err)
	}
	fresh = openDB(t)
	res, err = s.Restore(ctx, fresh, "m", 0, -1)
	if err != nil || res.Entry.Key != "" || len(res.Refused) != 2 {
		t.Fatalf("Restore of nothing whole: %+v %v", res, err)
	}
	if p, _ := fresh.Partition("m", 0); p.Offset() != -1 {
		t.Fatal("a refused snapshot left keys")
	}
}

// TestKilledWriterNeverChosen: a Save killed during the upload, after it
// and before the copy, or after the copy leaves either no snapshot at its
// offset or a whole one; Restore chooses only whole ones, and the next
// Save removes what the killed one left.
func TestKilledWriterNeverChosen(t *testing.T) {
	for name, open := range buckets(t) {
		for _, step := range []string{"upload", "copy", "delete"} {
			t.Run(name+"/"+step, func(t *testing.T) {
				b := open()
				defer b.Close()
				s := snapshot.New(b, snapshot.Options{})
				db := openDB(t)
				off := advance(t, db, 0, 30)
				_, good, err := save(t, s, db)
				if err != nil {
					t.Fatal(err)
				}
				// Enough state that the upload is cut halfway.
				off2 := advance(t, db, int(off), 300)
				snapshot.Crash(s, step)
				_, killed, err := save(t, s, db)
				if err == nil {
					t.Fatal("the crash hook did nothing")
				}
				snapshot.Crash(s, "")
				want, wantOff := good.SHA256, off
				if step == "delete" { // the final object was written whole
					want, wantOff = killed.SHA256, off2
				}
				fresh := openDB(t)
				res, err := s.Restore(context.Background(), fresh, "m", 0, -1)
				if err != nil || res.Entry.Offset != wantOff || len(res.Refused) != 0 {
					t.Fatalf("Restore after a kill at %s: %+v %v, want offset %d", step, res, err, wantOff)
				}
				if d, _, _ := fresh.Digest("m", 0); d != want {
					t.Fatal("restored digest differs")
				}
				// The next Save cleans up: only final names remain.
				advance(t, db, int(off2), 5)
				if _, _, err := save(t, s, db); err != nil {
					t.Fatal(err)
				}
				it := b.List(nil)
				for {
					obj, err := it.Next(context.Background())
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					if base := filepath.Base(obj.Key); !strings.HasSuffix(base, ".snap") && !strings.HasSuffix(base, ".attrs") {
						t.Errorf("left over: %s", obj.Key)
					}
				}
			})
		}
	}
}

// failingReader fails after n bytes, as a connection that drops would.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset")
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestImportCutShort: an import whose reading fails midway (the process
// killed there is the same: the batch never commits) changes nothing; the
// same snapshot imports whole afterwards.
func TestImportCutShort(t *testing.T) {
	db := openDB(t)
	advance(t, db, 0, 200)
	snap, err := db.Snapshot("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m, err := snap.Export(&buf, nil)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	dst := openDB(t)
	advance(t, dst, 0, 7)
	before, _, _ := dst.Digest("m", 0)
	if _, err := dst.Import("m", 0, &failingReader{r: bytes.NewReader(buf.Bytes()), n: buf.Len() / 2}); err == nil || errors.Is(err, state.ErrCorruptSnapshot) {
		t.Fatalf("Import cut short: %v, want the read error", err)
	}
	if d, _, _ := dst.Digest("m", 0); d != before {
		t.Fatal("an import cut short changed the partition")
	}
	if _, err := dst.Import("m", 0, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := dst.Digest("m", 0); d != m.SHA256 {
		t.Fatal("digest after import differs")
	}
}
