package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/state"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// fill applies n seeded events of a few ads to a partition, committing
// after the event counts cuts says (cuts nil: every 7), and gives it an
// account, an event time and a queue; it returns the partition's offset.
func fill(t *testing.T, db *state.DB, topic string, part int32, seed uint64, n int, cut func(i int) bool) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(0, seed))
	p := partition(t, db, topic, part)
	off := int64(0)
	for i := range n {
		ev := rules.Event{EventID: fmt.Sprint("e", i), TS: t0 + int64(i)*7*minuteMS + rng.Int64N(hourMS),
			AccountID: "act", AdID: fmt.Sprint("ad", rng.IntN(5)), Impressions: rng.Int64N(1000), Clicks: rng.Int64N(10), Spend: float64(rng.IntN(500)) / 7}
		apply(t, p, &ev, dayMS, 2*dayMS)
		p.SetEventTime(max(p.EventTime(), ev.TS))
		off = int64(i + 1)
		if cut == nil && i%7 == 6 || cut != nil && cut(i) {
			commit(t, p, off)
		}
	}
	acct := account(t, p, "act")
	acct.MaxTS = t0
	acct.Approved = []rules.Approval{{TS: t0, Entity: "ad1"}}
	q, err := p.Queue()
	if err != nil {
		t.Fatal(err)
	}
	q.Expect = 3
	q.Changed = true
	commit(t, p, off)
	return off
}

func export(t *testing.T, db *state.DB, topic string, part int32, versions []state.Version) ([]byte, state.Manifest) {
	t.Helper()
	s, err := db.Snapshot(topic, part)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b bytes.Buffer
	m, err := s.Export(&b, versions)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), m
}

func digest(t *testing.T, db *state.DB, topic string, part int32) string {
	t.Helper()
	d, _, err := db.Digest(topic, part)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSnapshotRoundTrip: a partition exported and imported into another
// database (over a stale copy of it) has the same digest and loads the
// same ads, accounts, event time, queue and offset; the other partitions
// of either database are untouched; the manifest says what it covers.
func TestSnapshotRoundTrip(t *testing.T) {
	src := open(t, vfs.NewMem())
	defer closeDB(t, src)
	off := fill(t, src, "metrics", 2, 1, 300, nil)
	fill(t, src, "metrics", 1, 2, 50, nil) // a neighbour not exported
	versions := []state.Version{{Version: 1, SHA256: "aa", From: 0}, {Version: 2, SHA256: "bb", From: 120}}
	data, m := export(t, src, "metrics", 2, versions)
	if m.Topic != "metrics" || m.Partition != 2 || m.Offset != off || m.Format != state.SnapshotFormat || len(m.Versions) != 2 || m.Keys == 0 {
		t.Fatalf("manifest %+v", m)
	}
	if p := partition(t, src, "metrics", 2); m.EventTime != p.EventTime() || m.CreatedAt == "" {
		t.Fatalf("manifest event time %d (%q), partition's %d", m.EventTime, m.CreatedAt, p.EventTime())
	}
	if d := digest(t, src, "metrics", 2); d != m.SHA256 {
		t.Fatalf("Digest %s, manifest %s", d, m.SHA256)
	}

	dst := open(t, vfs.NewMem())
	defer closeDB(t, dst)
	fill(t, dst, "metrics", 2, 9, 400, nil) // a stale, different copy: replaced whole
	fill(t, dst, "metrics", 3, 3, 40, nil)  // another partition: kept
	before3 := digest(t, dst, "metrics", 3)
	got, err := dst.Import("metrics", 2, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != m.SHA256 || len(got.Versions) != 2 || got.Versions[1] != versions[1] {
		t.Fatalf("Import's manifest %+v, want %+v", got, m)
	}
	if d := digest(t, dst, "metrics", 2); d != m.SHA256 {
		t.Fatalf("digest after import %s, want %s", d, m.SHA256)
	}
	if d := digest(t, dst, "metrics", 3); d != before3 {
		t.Fatal("import changed another partition")
	}
	a, b := partition(t, src, "metrics", 2), partition(t, dst, "metrics", 2)
	if a.Offset() != b.Offset() || a.EventTime() != b.EventTime() {
		t.Fatalf("offset %d/%d, event time %d/%d", b.Offset(), a.Offset(), b.EventTime(), a.EventTime())
	}
	for i := range 5 {
		id := fmt.Sprint("ad", i)
		requireSameAd(t, id, ad(t, b, id), ad(t, a, id))
	}
	requireSameAccount(t, account(t, b, "act"), account(t, a, "act"))
	qa, _ := a.Queue()
	qb, _ := b.Queue()
	if qa.Expect != qb.Expect || qb.Expect != 3 {
		t.Fatalf("queue expects %d, want %d", qb.Expect, qa.Expect)
	}
	// Exported again, byte for byte the same file.
	if again, _ := export(t, dst, "metrics", 2, versions); !bytes.Equal(again, data) {
		t.Fatal("the imported partition exports other bytes")
	}
}

// TestSnapshotDigestIgnoresBatching: the same events committed at other
// cuts give the same digest, so a node that replayed to an offset and one
// that processed live agree.
func TestSnapshotDigestIgnoresBatching(t *testing.T) {
	var want string
	for i, cut := range []func(int) bool{
		nil,
		func(int) bool { return true },
		func(i int) bool { return i%97 == 0 },
		func(int) bool { return false },
	} {
		db := open(t, vfs.NewMem())
		fill(t, db, "m", 0, 5, 600, cut)
		d := digest(t, db, "m", 0)
		closeDB(t, db)
		if i == 0 {
			want = d
		} else if d != want {
			t.Errorf("cuts %d: digest %s, want %s", i, d, want)
		}
	}
}

// TestSnapshotRefused: a snapshot with any byte changed, cut at any
// length, with bytes after its end, or of another partition is refused
// with ErrCorruptSnapshot, and the partition it was to replace stays as it
// was.
func TestSnapshotRefused(t *testing.T) {
	src := open(t, vfs.NewMem())
	defer closeDB(t, src)
	fill(t, src, "m", 0, 1, 40, nil)
	data, _ := export(t, src, "m", 0, nil)
	dst := open(t, vfs.NewMem())
	defer closeDB(t, dst)
	fill(t, dst, "m", 0, 7, 10, nil)
	want := digest(t, dst, "m", 0)
	refused := func(what string, b []byte, part int32) {
		t.Helper()
		if _, err := dst.Import("m", part, bytes.NewReader(b)); !errors.Is(err, state.ErrCorruptSnapshot) {
			t.Fatalf("%s: Import: %v, want ErrCorruptSnapshot", what, err)
		}
		if _, err := state.VerifySnapshot(bytes.NewReader(b)); part == 0 && !errors.Is(err, state.ErrCorruptSnapshot) {
			t.Fatalf("%s: VerifySnapshot: %v, want ErrCorruptSnapshot", what, err)
		}
	}
	if _, err := state.VerifySnapshot(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, x := range []byte{0x01, 0x80} {
			b := bytes.Clone(data)
			b[i] ^= x
			refused(fmt.Sprintf("byte %d ^ %#x", i, x), b, 0)
		}
	}
	for n := range len(data) {
		refused(fmt.Sprintf("cut at %d", n), data[:n], 0)
	}
	refused("a byte after the end", append(bytes.Clone(data), 0), 0)
	refused("another partition", data, 1)
	if got := digest(t, dst, "m", 0); got != want {
		t.Fatal("a refused import changed the partition")
	}
	if p := partition(t, dst, "m", 1); p.Offset() != -1 {
		t.Fatal("a refused import wrote another partition")
	}
}

// TestSnapshotOfNothing: an empty partition exports a snapshot of no keys,
// offset -1, that imports as an empty partition.
func TestSnapshotOfNothing(t *testing.T) {
	db := open(t, vfs.NewMem())
	defer closeDB(t, db)
	data, m := export(t, db, "m", 0, nil)
	if m.Offset != -1 || m.Keys != 0 || m.EventTime != math.MinInt64 || m.CreatedAt != "" {
		t.Fatalf("manifest of nothing: %+v", m)
	}
	fill(t, db, "m", 0, 1, 10, nil)
	if _, err := db.Import("m", 0, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if p := partition(t, db, "m", 0); p.Offset() != -1 || p.EventTime() != math.MinInt64 {
		t.Fatalf("after importing nothing: offset %d", p.Offset())
	}
}
