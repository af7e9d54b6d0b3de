package snapshot

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/adrules/adrules/state"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// URLs: dev mode and tests
	_ "gocloud.dev/blob/memblob"  // mem:// URLs
	"gocloud.dev/gcerrors"
)

// Options configure a Store.
type Options struct {
	// Prefix goes before every name (a "/" is added when it has none);
	// default none.
	Prefix string
	// Keep is how many snapshots of each partition Save keeps; default 3.
	Keep int
}

// DefaultKeep is how many snapshots of a partition a Store keeps unless
// Options.Keep says otherwise.
const DefaultKeep = 3

// Store keeps snapshots in a bucket. Its methods are safe for concurrent
// use (as the bucket's are).
type Store struct {
	b      *blob.Bucket
	owned  bool
	prefix string
	keep   int
	// crash, in tests, makes Save stop at a step as a process killed there
	// would: nothing after it is done.
	crash string
}

// New returns a Store over b, which the caller closes.
func New(b *blob.Bucket, o Options) *Store {
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	return &Store{b: b, prefix: o.Prefix, keep: o.Keep}
}

// Open opens the bucket at url (gocloud.dev/blob.OpenBucket: "file:///dir",
// "mem://", or a production scheme whose driver the program links in) and
// returns a Store over it that Close closes.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	b, err := blob.OpenBucket(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("snapshot: open %s: %w", url, err)
	}
	s := New(b, o)
	s.owned = true
	return s, nil
}

// Close closes the bucket if Open opened it.
func (s *Store) Close() error {
	if s.owned {
		return s.b.Close()
	}
	return nil
}

// Entry is a snapshot in the store.
type Entry struct {
	Key       string
	Topic     string
	Partition int32
	Offset    int64
}

func (s *Store) dir(topic string, partition int32) string {
	return fmt.Sprintf("%s%s/%d/", s.prefix, topic, partition)
}

func (s *Store) key(topic string, partition int32, offset int64) string {
	return fmt.Sprintf("%s%020d.snap", s.dir(topic, partition), offset)
}

// parse reads the offset of a final name (ok) or of a temporary one (tmp).
func parse(base string) (offset int64, tmp, ok bool) {
	num, rest, found := strings.Cut(base, ".")
	if !found || len(num) != 20 {
		return 0, false, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	switch {
	case rest == "snap":
		return n, false, true
	case strings.HasSuffix(rest, ".tmp") && !strings.Contains(strings.TrimSuffix(rest, ".tmp"), "."):
		return n, true, false
	}
	return 0, false, false
}

// list returns the partition's snapshots, newest first, and its temporary
// objects.
func (s *Store) list(ctx context.Context, topic string, partition int32) (final, tmp []Entry, err error) {
	dir := s.dir(topic, partition)
	it := s.b.List(&blob.ListOptions{Prefix: dir, Delimiter: "/"})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("snapshot: list %s: %w", dir, err)
		}
		if obj.IsDir {
			continue
		}
		off, isTmp, ok := parse(strings.TrimPrefix(obj.Key, dir))
		e := Entry{Key: obj.Key, Topic: topic, Partition: partition, Offset: off}
		switch {
		case ok:
			final = append(final, e)
		case isTmp:
			tmp = append(tmp, e)
		}
	}
	slices.SortFunc(final, func(a, b Entry) int { return cmp.Compare(b.Offset, a.Offset) })
	return final, tmp, nil
}

// List returns the snapshots of a partition, newest (highest offset)
// first.
func (s *Store) List(ctx context.Context, topic string, partition int32) ([]Entry, error) {
	final, _, err := s.list(ctx, topic, partition)
	return final, err
}

// Newest returns the newest snapshot of a partition; ok is false when
// there is none.
func (s *Store) Newest(ctx context.Context, topic string, partition int32) (e Entry, ok bool, err error) {
	final, err := s.List(ctx, topic, partition)
	if err != nil || len(final) == 0 {
		return Entry{}, false, err
	}
	return final[0], true, nil
}

// Reader opens a snapshot for reading.
func (s *Store) Reader(ctx context.Context, e Entry) (io.ReadCloser, error) {
	r, err := s.b.NewReader(ctx, e.Key, nil)
	if err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", e.Key, err)
	}
	return r, nil
}

// Save writes a snapshot of a partition (see the package doc: a temporary
// object, then the final name) with the versions it was built under, then
// deletes the temporary objects a killed writer left at or before its
// offset and all but the newest Keep snapshots. A snapshot of nothing
// (offset -1) is not written.
func (s *Store) Save(ctx context.Context, snap *state.Snapshot, topic string, partition int32, versions []state.Version) (Entry, state.Manifest, error) {
	off := snap.Offset()
	if off < 0 {
		return Entry{}, state.Manifest{}, errors.New("snapshot: the partition has committed nothing")
	}
	e := Entry{Key: s.key(topic, partition, off), Topic: topic, Partition: partition, Offset: off}
	var nonce [8]byte
	rand.Read(nonce[:])
	tmp := fmt.Sprintf("%s%020d.%s.tmp", s.dir(topic, partition), off, hex.EncodeToString(nonce[:]))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.b.NewWriter(wctx, tmp, &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return e, state.Manifest{}, fmt.Errorf("snapshot: write %s: %w", tmp, err)
	}
	var m state.Manifest
	if s.crash == "upload" {
		// Killed halfway: a part written, the writer never closed.
		_, err = snap.Export(&halfWriter{w: w}, versions)
		cancel()
		w.Close()
		return e, m, errCrash
	}
	m, err = snap.Export(w, versions)
	if err != nil {
		cancel() // abort: the temporary object is not written
		w.Close()
		return e, m, fmt.Errorf("snapshot: write %s: %w", tmp, err)
	}
	if err := w.Close(); err != nil {
		return e, m, fmt.Errorf("snapshot: write %s: %w", tmp, err)
	}
	if s.crash == "copy" {
		return e, m, errCrash
	}
	if err := s.b.Copy(ctx, e.Key, tmp, nil); err != nil {
		return e, m, fmt.Errorf("snapshot: copy %s to %s: %w", tmp, e.Key, err)
	}
	if s.crash == "delete" {
		return e, m, errCrash
	}
	return e, m, s.retain(ctx, topic, partition, off)
}

// retain deletes the temporary objects at or before offset and the
// snapshots past the newest Keep.
func (s *Store) retain(ctx context.Context, topic string, partition int32, offset int64) error {
	final, tmp, err := s.list(ctx, topic, partition)
	if err != nil {
		return err
	}
	var errs []error
	del := func(key string) {
		if err := s.b.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			errs = append(errs, fmt.Errorf("snapshot: delete %s: %w", key, err))
		}
	}
	for _, e := range tmp {
		if e.Offset <= offset {
			del(e.Key)
		}
	}
	if len(final) > s.keep {
		for _, e := range final[s.keep:] {
			del(e.Key)
		}
	}
	return errors.Join(errs...)
}

// Restored is what Restore did.
type Restored struct {
	// Entry and Manifest are the snapshot imported; Entry.Key is "" when
	// none was.
	Entry    Entry
	Manifest state.Manifest
	// Refused are the snapshots newer than the one imported (or than the
	// local state) that did not check, newest first, each with why.
	Refused []error
}

// Restore imports into db the newest snapshot of a partition that lies
// past after (the offset of the partition's local state, -1 when it has
// none) and checks: a snapshot that does not (state.ErrCorruptSnapshot) is
// refused and the next older one tried. It imports nothing when no
// snapshot lies past after, or none checks: the caller replays from its
// local state. Any other error (the store cannot be read, the state cannot
// be written) is returned: the partition cannot be restored now.
func (s *Store) Restore(ctx context.Context, db *state.DB, topic string, partition int32, after int64) (Restored, error) {
	var res Restored
	final, err := s.List(ctx, topic, partition)
	if err != nil {
		return res, err
	}
	for _, e := range final {
		if e.Offset <= after {
			break
		}
		r, err := s.Reader(ctx, e)
		if gcerrors.Code(err) == gcerrors.NotFound {
			continue // deleted meanwhile by another node's retention
		}
		if err != nil {
			return res, err
		}
		m, err := db.Import(topic, partition, r)
		r.Close()
		switch {
		case errors.Is(err, state.ErrCorruptSnapshot):
			res.Refused = append(res.Refused, fmt.Errorf("%s: %w", e.Key, err))
			continue
		case err != nil:
			return res, fmt.Errorf("snapshot: restore %s: %w", e.Key, err)
		}
		res.Entry, res.Manifest = e, m
		return res, nil
	}
	return res, nil
}

// errCrash is what Save returns where a test makes it stop.
var errCrash = errors.New("snapshot: stopped as if killed (test)")

// halfWriter takes the first 4 KiB it is given, then fails.
type halfWriter struct {
	w io.Writer
	n int
}

func (h *halfWriter) Write(p []byte) (int, error) {
	if h.n >= 4<<10 {
		return 0, errCrash
	}
	p = p[:min(len(p), 4<<10-h.n)]
	n, err := h.w.Write(p)
	h.n += n
	return n, err
}
