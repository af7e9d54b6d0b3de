package state

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A snapshot file holds the keys of one partition, with a manifest:
//
//	magic "ADRSTATE", format (1 byte, SnapshotFormat)
//	pairs, in key order: uvarint(len(key)) key uvarint(len(value)) value
//	    (key without the partition's prefix, never empty)
//	uvarint(0)                          end of the pairs
//	uvarint(len(manifest)) manifest     JSON (Manifest)
//	sha256 of every byte before it      32 bytes
//
// The manifest's SHA256 is the digest of the pairs' bytes alone: it depends
// on the state's keys and values only, so two nodes that processed the same
// records to the same offset (batched alike or not) export the same digest,
// and Digest gives it without writing a file.
const (
	snapshotMagic = "ADRSTATE"
	// SnapshotFormat is the format version Export writes and Import reads.
	SnapshotFormat = 1
)

// Limits on what Import reads, so that a corrupt length cannot make it
// allocate without bound.
const (
	maxSnapshotKey      = 1 << 20
	maxSnapshotValue    = 64 << 20
	maxSnapshotManifest = 1 << 20
)

// ErrCorruptSnapshot is returned (wrapped) by Import and Verify for a
// snapshot that is not one: an unknown magic or format, a truncated file, a
// checksum or digest that does not match, a manifest that contradicts the
// keys or names another partition. Nothing was written then.
var ErrCorruptSnapshot = errors.New("state: corrupt snapshot")

// Manifest describes a snapshot of one partition's state.
type Manifest struct {
	Format    int    `json:"format"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Offset is the next input offset: every record before it is in the
	// state, none after. -1: nothing was committed.
	Offset int64 `json:"offset"`
	// EventTime is the largest event time the partition had read (epoch
	// ms), math.MinInt64 before the first; CreatedAt is it, written out
	// (empty then). A snapshot is dated by event time, never by the wall
	// clock.
	EventTime int64  `json:"event_time"`
	CreatedAt string `json:"created_at,omitempty"`
	// Versions are the rule set versions the state was built under, as
	// far as the writer knows them (at least the one in force at Offset).
	Versions []Version `json:"versions,omitempty"`
	// Keys and Bytes count the pairs; SHA256 is the hex digest of their
	// bytes (see Digest).
	Keys   int64  `json:"keys"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Version is a rule set version that processed records of a snapshot's
// partition.
type Version struct {
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
	// From is the first offset it processed, -1 when not known.
	From int64 `json:"from"`
}

// Snapshot is a consistent, read-only view of one partition's committed
// state (a Pebble snapshot): it is taken at once and read later, while the
// partition goes on committing. Close it.
type Snapshot struct {
	snap      *pebble.Snapshot
	topic     string
	partition int32
	prefix    []byte
	offset    int64
	evTime    int64
}

// Snapshot takes a snapshot of what one partition has committed.
func (d *DB) Snapshot(topic string, partition int32) (*Snapshot, error) {
	s := &Snapshot{snap: d.db.NewSnapshot(), topic: topic, partition: partition,
		prefix: partitionPrefix(topic, partition), offset: -1, evTime: math.MinInt64}
	for _, x := range []struct {
		kind byte
		into *int64
	}{{'o', &s.offset}, {'g', &s.evTime}} {
		v, closer, err := s.snap.Get(append(append([]byte(nil), s.prefix...), x.kind))
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			s.snap.Close()
			return nil, fmt.Errorf("state: snapshot %s/%d: %w", topic, partition, err)
		default:
			n, k := binary.Varint(v)
			closer.Close()
			if k <= 0 {
				s.snap.Close()
				return nil, fmt.Errorf("state: snapshot %s/%d: corrupt key %q", topic, partition, x.kind)
			}
			*x.into = n
		}
	}
	return s, nil
}

// Offset is the next offset of the partition as of the snapshot; -1 when
// nothing was committed.
func (s *Snapshot) Offset() int64 { return s.offset }

// EventTime is the partition's event time as of the snapshot.
func (s *Snapshot) EventTime() int64 { return s.evTime }

// Close releases the snapshot.
func (s *Snapshot) Close() error { return s.snap.Close() }

// Digest returns the hex sha256 of the partition's state (the pairs of an
// exported file) and how many keys it holds.
func (s *Snapshot) Digest() (string, int64, error) {
	m, err := s.export(io.Discard, nil)
	return m.SHA256, m.Keys, err
}

// Export writes the snapshot to w (see SnapshotFormat) with the versions
// the caller knows it was built under, and returns its manifest.
func (s *Snapshot) Export(w io.Writer, versions []Version) (Manifest, error) {
	return s.export(w, versions)
}

func (s *Snapshot) export(w io.Writer, versions []Version) (Manifest, error) {
	m := Manifest{Format: SnapshotFormat, Topic: s.topic, Partition: s.partition, Offset: s.offset,
		EventTime: s.evTime, Versions: versions}
	if s.evTime != math.MinInt64 {
		m.CreatedAt = time.UnixMilli(s.evTime).UTC().Format(time.RFC3339Nano)
	}
	file := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, file), 64<<10)
	bw.WriteString(snapshotMagic)
	bw.WriteByte(SnapshotFormat)
	digest := sha256.New()
	var buf []byte
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: s.prefix, UpperBound: prefixEnd(s.prefix)})
	if err != nil {
		return m, err
	}
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key()[len(s.prefix):], it.Value()
		buf = binary.AppendUvarint(buf[:0], uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
		digest.Write(buf)
		bw.Write(buf)
		m.Keys++
		m.Bytes += int64(len(buf))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return m, fmt.Errorf("state: export %s/%d: %w", s.topic, s.partition, err)
	}
	m.SHA256 = hex.EncodeToString(digest.Sum(nil))
	man, err := json.Marshal(&m)
	if err != nil {
		return m, err
	}
	buf = binary.AppendUvarint(binary.AppendUvarint(buf[:0], 0), uint64(len(man)))
	bw.Write(buf)
	bw.Write(man)
	if err := bw.Flush(); err != nil {
		return m, fmt.Errorf("state: export %s/%d: %w", s.topic, s.partition, err)
	}
	if _, err := w.Write(file.Sum(nil)); err != nil {
		return m, fmt.Errorf("state: export %s/%d: %w", s.topic, s.partition, err)
	}
	return m, nil
}

// Digest returns the digest of what a partition has committed (Snapshot's
// Digest) and how many keys it holds.
func (d *DB) Digest(topic string, partition int32) (string, int64, error) {
	s, err := d.Snapshot(topic, partition)
	if err != nil {
		return "", 0, err
	}
	defer s.Close()
	return s.Digest()
}

// Import replaces every key of a partition with those of the snapshot r
// holds, in one batch, and returns its manifest. It reads r to its end and
// checks it (format, checksum, digest, that the manifest names this
// partition and agrees with the keys) before it writes anything: a snapshot
// that does not check is refused with ErrCorruptSnapshot and the partition
// stays as it was. The caller must hold no Partition of it meanwhile.
//
// The batch holds the whole partition in memory until it commits.
func (d *DB) Import(topic string, partition int32, r io.Reader) (Manifest, error) {
	pre := partitionPrefix(topic, partition)
	b := d.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(pre, prefixEnd(pre), nil); err != nil {
		return Manifest{}, err
	}
	var key []byte
	m, err := readSnapshot(r, func(k, v []byte) error {
		key = append(append(key[:0], pre...), k...)
		return b.Set(key, v, nil)
	})
	if err != nil {
		return m, err
	}
	if m.Topic != topic || m.Partition != partition {
		return m, fmt.Errorf("%w: it holds %s/%d, not %s/%d", ErrCorruptSnapshot, m.Topic, m.Partition, topic, partition)
	}
	if err := b.Commit(d.writeOpts()); err != nil {
		return m, fmt.Errorf("state: import %s/%d: %w", topic, partition, err)
	}
	return m, nil
}

// VerifySnapshot reads a snapshot to its end, checks it as Import does and
// returns its manifest, writing nothing.
func VerifySnapshot(r io.Reader) (Manifest, error) {
	return readSnapshot(r, func([]byte, []byte) error { return nil })
}

// readSnapshot reads and checks a snapshot, handing each pair (key without
// the partition's prefix) to fn; its slices are valid during the call only.
func readSnapshot(r io.Reader, fn func(k, v []byte) error) (Manifest, error) {
	var m Manifest
	sr := &snapReader{r: bufio.NewReaderSize(r, 64<<10), file: sha256.New()}
	head := sr.bytes(len(snapshotMagic)+1, len(snapshotMagic)+1)
	if sr.err != nil {
		return m, sr.fail("header")
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return m, fmt.Errorf("%w: not a snapshot (magic %q)", ErrCorruptSnapshot, head[:len(snapshotMagic)])
	}
	if head[len(snapshotMagic)] != SnapshotFormat {
		return m, fmt.Errorf("%w: format %d, this build reads %d", ErrCorruptSnapshot, head[len(snapshotMagic)], SnapshotFormat)
	}
	digest := sha256.New()
	var keys, size int64
	offset, evTime := int64(-1), int64(math.MinInt64)
	var lenBuf []byte
	for {
		n0 := sr.n
		sr.digest = nil // the end marker is no pair
		kl := sr.uvarint()
		if sr.err != nil {
			return m, sr.fail("key")
		}
		if kl == 0 {
			break
		}
		lenBuf = binary.AppendUvarint(lenBuf[:0], kl)
		digest.Write(lenBuf)
		sr.digest = digest
		k := sr.bytes(int(min(kl, math.MaxInt32)), maxSnapshotKey)
		if sr.err != nil {
			return m, sr.fail("key")
		}
		k = append([]byte(nil), k...)
		v := sr.bytes(int(min(sr.uvarint(), math.MaxInt32)), maxSnapshotValue)
		if sr.err != nil {
			return m, sr.fail("value")
		}
		if len(k) == 1 && (k[0] == 'o' || k[0] == 'g') {
			n, c := binary.Varint(v)
			if c <= 0 {
				return m, fmt.Errorf("%w: key %q holds no number", ErrCorruptSnapshot, k)
			}
			if k[0] == 'o' {
				offset = n
			} else {
				evTime = n
			}
		}
		keys++
		size += sr.n - n0
		if err := fn(k, v); err != nil {
			return m, err
		}
	}
	sum := digest.Sum(nil)
	man := sr.bytes(int(min(sr.uvarint(), math.MaxInt32)), maxSnapshotManifest)
	if sr.err != nil {
		return m, sr.fail("manifest")
	}
	man = append([]byte(nil), man...)
	want := sr.file.Sum(nil)
	sr.file = nil
	got := sr.bytes(sha256.Size, sha256.Size)
	if sr.err != nil {
		return m, sr.fail("checksum")
	}
	if !bytes.Equal(got, want) {
		return m, fmt.Errorf("%w: checksum does not match", ErrCorruptSnapshot)
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		return m, fmt.Errorf("%w: bytes after the checksum", ErrCorruptSnapshot)
	}
	if err := json.Unmarshal(man, &m); err != nil {
		return m, fmt.Errorf("%w: manifest: %v", ErrCorruptSnapshot, err)
	}
	switch {
	case m.Format != SnapshotFormat:
		return m, fmt.Errorf("%w: the manifest says format %d", ErrCorruptSnapshot, m.Format)
	case m.SHA256 != hex.EncodeToString(sum):
		return m, fmt.Errorf("%w: digest %s, the manifest says %s", ErrCorruptSnapshot, hex.EncodeToString(sum), m.SHA256)
	case m.Keys != keys || m.Bytes != size:
		return m, fmt.Errorf("%w: %d keys (%d bytes), the manifest says %d (%d)", ErrCorruptSnapshot, keys, size, m.Keys, m.Bytes)
	case m.Offset != offset || m.EventTime != evTime:
		return m, fmt.Errorf("%w: offset %d and event time %d, the manifest says %d and %d", ErrCorruptSnapshot, offset, evTime, m.Offset, m.EventTime)
	}
	return m, nil
}

// snapReader reads a snapshot, hashing what it reads into file (and into
// digest when set); the first problem sticks in err.
type snapReader struct {
	r            *bufio.Reader
	file, digest hash.Hash
	buf          []byte
	n            int64
	err          error
}

func (s *snapReader) fail(what string) error {
	if errors.Is(s.err, io.EOF) || errors.Is(s.err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated (%s at byte %d)", ErrCorruptSnapshot, what, s.n)
	}
	if errors.Is(s.err, ErrCorruptSnapshot) {
		return fmt.Errorf("%w (%s at byte %d)", s.err, what, s.n)
	}
	return fmt.Errorf("state: read snapshot: %s at byte %d: %w", what, s.n, s.err)
}

func (s *snapReader) hash(b []byte) {
	s.n += int64(len(b))
	if s.file != nil {
		s.file.Write(b)
	}
	if s.digest != nil {
		s.digest.Write(b)
	}
}

func (s *snapReader) uvarint() uint64 {
	if s.err != nil {
		return 0
	}
	var b [binary.MaxVarintLen64]byte
	for i := range b {
		c, err := s.r.ReadByte()
		if err != nil {
			s.err = err
			return 0
		}
		b[i] = c
		if c < 0x80 {
			v, n := binary.Uvarint(b[:i+1])
			if n <= 0 {
				break
			}
			s.hash(b[:i+1])
			return v
		}
	}
	s.err = fmt.Errorf("%w: bad length", ErrCorruptSnapshot)
	return 0
}

// bytes reads n bytes (at most limit); the slice is valid until the next
// call.
func (s *snapReader) bytes(n, limit int) []byte {
	if s.err != nil {
		return nil
	}
	if n < 0 || n > limit {
		s.err = fmt.Errorf("%w: length %d over %d", ErrCorruptSnapshot, n, limit)
		return nil
	}
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	if _, err := io.ReadFull(s.r, b); err != nil {
		s.err = err
		return nil
	}
	s.hash(b)
	return b
}
