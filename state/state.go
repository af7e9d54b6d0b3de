package state

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/adrules/adrules/rules"
	"github.com/cockroachdb/pebble/v2"
)

// DB is the Pebble database of one node: the state of every partition it
// has owned, each under its own key prefix.
type DB struct {
	db   *pebble.DB
	sync bool
}

// Options configure Open.
type Options struct {
	// Pebble is passed to pebble.Open; nil means Pebble's defaults. Tests
	// set Pebble.FS to vfs.NewMem().
	Pebble *pebble.Options
	// Sync makes each Commit wait for the write-ahead log to reach the disk.
	// Nodes set it (a commit must survive kill -9 and power loss); backtests,
	// whose state is thrown away, leave it off. Default false.
	Sync bool
}

// Open opens (creating if needed) the state database in dir.
func Open(dir string, o Options) (*DB, error) {
	po := o.Pebble
	if po == nil {
		po = &pebble.Options{}
	}
	if po.Logger == nil {
		po.Logger = quietLogger{}
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	return &DB{db: db, sync: o.Sync}, nil
}

// Close closes the database. Uncommitted changes are lost.
func (d *DB) Close() error { return d.db.Close() }

// Partition returns the state of one input partition. The caller must not
// use two Partitions of the same topic and partition at once.
func (d *DB) Partition(topic string, partition int32) (*Partition, error) {
	p := &Partition{
		db: d, prefix: partitionPrefix(topic, partition), offset: -1, evTime: math.MinInt64, latest: math.MinInt64,
		ads: newResident[rules.AdState](), accounts: newResident[rules.AccountState](),
	}
	for _, x := range []struct {
		kind byte
		into *int64
		what string
	}{{'o', &p.offset, "offset"}, {'g', &p.evTime, "event time"}} {
		v, closer, err := d.db.Get(p.key(x.kind))
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("state: read %s: %w", x.what, err)
		default:
			n, k := binary.Varint(v)
			closer.Close()
			if k <= 0 {
				return nil, fmt.Errorf("state: corrupt %s of %s/%d", x.what, topic, partition)
			}
			*x.into = n
		}
	}
	p.committedEvTime = p.evTime
	return p, nil
}

// Drop removes every key of one partition, so another node can own it.
func (d *DB) Drop(topic string, partition int32) error {
	pre := partitionPrefix(topic, partition)
	return d.db.DeleteRange(pre, prefixEnd(pre), d.writeOpts())
}

// Size reports the approximate disk size of the database in bytes.
func (d *DB) Size() uint64 { return d.db.Metrics().DiskSpaceUsage() }

func (d *DB) writeOpts() *pebble.WriteOptions {
	if d.sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// Partition is the in-memory state of one partition with write-behind to
// Pebble: Ad and Account load on first use, the engine changes the returned
// values, and Commit writes what changed, with the offset, in one batch.
type Partition struct {
	db       *DB
	prefix   []byte
	offset   int64
	ads      *resident[rules.AdState]
	accounts *resident[rules.AccountState]
	touched  []*rules.AdState
	accts    []*rules.AccountState
	acctSeen map[*rules.AccountState]bool
	buf      []byte
	// evTime is the largest event time read (engine.PartitionState), as of
	// the last SetEventTime; committedEvTime as of the last Commit.
	evTime, committedEvTime int64
	queue                   *rules.Queue
	// adMS and accountMS are how long an ad or account stays in memory
	// once silent (EvictAfter); latest is the largest MaxTS of an ad or
	// account committed, so that a partition whose event time nobody sets
	// (stage 2) still has a clock to measure silence by.
	adMS, accountMS int64
	latest          int64
}

// Offset returns the next offset to process, or -1.
func (p *Partition) Offset() int64 { return p.offset }

// EventTime returns the largest event time the partition has read,
// math.MinInt64 before the first.
func (p *Partition) EventTime() int64 { return p.evTime }

// SetEventTime changes the event time; it is written at the next Commit.
func (p *Partition) SetEventTime(ms int64) { p.evTime = ms }

// Queue returns stage 2's queue of the partition, loading it on first use
// with one iterator over its keys.
func (p *Partition) Queue() (*rules.Queue, error) {
	if p.queue != nil {
		return p.queue, nil
	}
	q := rules.NewQueue()
	v, closer, err := p.db.db.Get(p.key('k'))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("state: read queue: %w", err)
	default:
		err := decodeQueue(v, q)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("state: queue: %w", err)
		}
	}
	pre := p.key('q')
	it, err := p.db.db.NewIter(&pebble.IterOptions{LowerBound: pre, UpperBound: prefixEnd(pre)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var e rules.Pending
		e.Key = append([]byte(nil), it.Key()[len(pre):]...)
		if err := json.Unmarshal(it.Value(), &e.P); err != nil || e.P.Order == nil {
			return nil, fmt.Errorf("state: queued proposal: corrupt value %q", it.Value())
		}
		q.Load(e)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	p.queue = q
	return q, nil
}

// Ad returns an ad's state, loading it from Pebble on first use. The state
// returned is the caller's until the next Commit, which may evict it
// (EvictAfter); after that the caller asks again.
func (p *Partition) Ad(adID string) (*rules.AdState, error) {
	st, ok := p.ads.byID[adID]
	if !ok {
		var err error
		adID = strings.Clone(adID) // the caller's string may share a decoder's memory
		if st, err = p.loadAd(adID); err != nil {
			return nil, err
		}
		p.ads.add(adID, st)
	}
	if !st.Dirty.Listed {
		st.Dirty.Listed = true
		p.touched = append(p.touched, st)
	}
	return st, nil
}

// Account returns an account's stage-2 state, loading it on first use; like
// Ad's, it is the caller's until the next Commit.
func (p *Partition) Account(accountID string) (*rules.AccountState, error) {
	st, ok := p.accounts.byID[accountID]
	if !ok {
		var err error
		accountID = strings.Clone(accountID)
		if st, err = p.loadAccount(accountID); err != nil {
			return nil, err
		}
		p.accounts.add(accountID, st)
	}
	if p.acctSeen == nil {
		p.acctSeen = map[*rules.AccountState]bool{}
	}
	if !p.acctSeen[st] {
		p.acctSeen[st] = true
		p.accts = append(p.accts, st)
	}
	return st, nil
}

// Commit writes every changed ad and account and the next offset in one
// Pebble batch; then it evicts from memory some of the ads and accounts
// silent for long enough (EvictAfter).
func (p *Partition) Commit(next int64) error {
	b := p.db.db.NewBatch()
	defer b.Close()
	adScan, acctScan := evictScan+2*len(p.touched), evictScan+2*len(p.accts)
	for _, st := range p.touched {
		if err := p.writeAd(b, st); err != nil {
			return err
		}
		st.Dirty = rules.Dirty{}
		p.latest = max(p.latest, st.MaxTS)
	}
	clear(p.touched) // the array must not keep evicted ads alive
	p.touched = p.touched[:0]
	for _, st := range p.accts {
		p.buf = encodeAccount(p.buf[:0], st)
		if err := b.Set(p.accountKey(st.AccountID), p.buf, nil); err != nil {
			return err
		}
		p.latest = max(p.latest, st.MaxTS)
	}
	clear(p.accts)
	p.accts = p.accts[:0]
	clear(p.acctSeen)
	if p.evTime != p.committedEvTime {
		if err := b.Set(p.key('g'), binary.AppendVarint(nil, p.evTime), nil); err != nil {
			return err
		}
	}
	if err := p.writeQueue(b); err != nil {
		return err
	}
	if err := b.Set(p.key('o'), binary.AppendVarint(nil, next), nil); err != nil {
		return err
	}
	if err := b.Commit(p.db.writeOpts()); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	p.offset, p.committedEvTime = next, p.evTime
	if p.queue != nil {
		p.queue.Clean()
	}
	p.evict(adScan, acctScan)
	return nil
}

// EvictAfter makes every Commit drop from memory the ads whose newest event
// lies more than adMS behind the partition's event time, and the accounts
// whose newest approval lies more than accountMS behind it. 0 or less, the
// default, keeps them for as long as the Partition lives.
//
// Evicting changes nothing but memory: an ad or account is evicted only
// right after a commit wrote all of it, so it reloads from Pebble, on its
// next use, as it was (an ad's event ids in ts order rather than arrival
// order, which no result depends on). Nothing is deleted from Pebble: see
// the package doc. The engine passes how far back its rule set looks
// (engine.Evicter), so an evicted ad is read again only if it reports
// again.
func (p *Partition) EvictAfter(adMS, accountMS int64) { p.adMS, p.accountMS = adMS, accountMS }

// Each Commit looks at evictScan ads (and accounts) for eviction, twice
// as many as it wrote, and one in evictSweeps of those it held when the
// sweep last went round: the sweep outruns the loading of new ones,
// however small the batches, goes round every ad held within evictSweeps
// commits, and costs a commit about a tenth of a microsecond an ad looked
// at (1% of a commit's time with 200,000 ads held and 1,000 written).
const (
	evictScan   = 256
	evictSweeps = 128
)

// evict looks at the next adScan ads and acctScan accounts held in memory,
// where the last commit's sweep stopped, and evicts those silent for
// longer than EvictAfter says.
func (p *Partition) evict(adScan, acctScan int) {
	now := max(p.evTime, p.latest)
	if now == math.MinInt64 {
		return // no event time yet: nothing has been silent for any time
	}
	if p.adMS > 0 {
		p.ads.sweep(adScan, func(st *rules.AdState) bool {
			return st.Dirty == rules.Dirty{} && st.MaxTS < now-p.adMS
		})
	}
	if p.accountMS > 0 {
		p.accounts.sweep(acctScan, func(st *rules.AccountState) bool {
			return st.MaxTS < now-p.accountMS
		})
	}
}

// writeQueue adds what changed in the queue to b: proposals queued and
// judged, and the sources' progress.
func (p *Partition) writeQueue(b *pebble.Batch) error {
	q := p.queue
	if q == nil {
		return nil
	}
	pre := p.key('q')
	for _, e := range q.Added {
		v, err := json.Marshal(&e.P)
		if err != nil {
			return err
		}
		if err := b.Set(append(pre[:len(pre):len(pre)], e.Key...), v, nil); err != nil {
			return err
		}
	}
	for _, k := range q.Removed {
		if err := b.Delete(append(pre[:len(pre):len(pre)], k...), nil); err != nil {
			return err
		}
	}
	if q.Changed {
		if err := b.Set(p.key('k'), encodeQueue(nil, q), nil); err != nil {
			return err
		}
	}
	return nil
}

// Ads returns how many ads the partition holds in memory.
func (p *Partition) Ads() int { return len(p.ads.byID) }

// Accounts returns how many accounts the partition holds in memory.
func (p *Partition) Accounts() int { return len(p.accounts.byID) }

// resident holds the ads (or accounts) of a partition in memory: by id, and
// in a list, in no order, that Commit sweeps a slice of at a time for those
// to evict. A scan of the whole map at every commit would cost each batch
// in proportion to every ad the partition ever saw.
type resident[T any] struct {
	byID map[string]*T
	list []residentEntry[T]
	// next is where the next sweep starts in list; round is how many
	// there were when the sweep last started from the beginning. Entries
	// from next on have not been looked at since.
	next, round int
	// peak is the most held since byID was made: Go maps never give back
	// the memory of deleted entries, so when most are evicted the map is
	// made again.
	peak int
}

type residentEntry[T any] struct {
	id string
	v  *T
}

func newResident[T any]() *resident[T] { return &resident[T]{byID: map[string]*T{}} }

func (r *resident[T]) add(id string, v *T) {
	r.byID[id] = v
	r.list = append(r.list, residentEntry[T]{id, v})
	r.peak = max(r.peak, len(r.byID))
}

// minRemake is the fewest entries a map or list must have had before a
// sweep that leaves a quarter of them makes it again.
const minRemake = 1024

// sweep looks at n entries and one in evictSweeps of the round (at most
// all of them) from where the last sweep stopped, and evicts those old
// says to evict.
func (r *resident[T]) sweep(n int, old func(*T) bool) {
	if r.next == 0 {
		r.round = len(r.list)
	}
	for range min(n+r.round/evictSweeps, len(r.list)) {
		if r.next >= len(r.list) {
			r.next, r.round = 0, len(r.list)
		}
		e := r.list[r.next]
		if !old(e.v) {
			r.next++
			continue
		}
		delete(r.byID, e.id)
		// The last entry takes its place, and is looked at next.
		last := len(r.list) - 1
		r.list[r.next] = r.list[last]
		r.list[last] = residentEntry[T]{}
		r.list = r.list[:last]
	}
	if r.peak >= minRemake && len(r.byID) < r.peak/4 {
		m := make(map[string]*T, len(r.byID))
		for id, v := range r.byID {
			m[id] = v
		}
		r.byID, r.peak = m, len(m)
	}
	if cap(r.list) >= minRemake && len(r.list) < cap(r.list)/4 {
		list := make([]residentEntry[T], len(r.list))
		copy(list, r.list)
		r.list = list
	}
}

func (p *Partition) writeAd(b *pebble.Batch, st *rules.AdState) error {
	d := &st.Dirty
	if !d.Any {
		return nil
	}
	ad := p.adPrefix(st.AdID)
	p.buf = encodeAdMeta(p.buf[:0], st)
	if err := b.Set(append(ad, 'm'), p.buf, nil); err != nil {
		return err
	}
	if d.Cut && d.BucketCut >= 0 {
		if err := b.DeleteRange(append(ad, 'w'), binary.BigEndian.AppendUint64(append(ad, 'w'), uint64(d.BucketCut+1)), nil); err != nil {
			return err
		}
	}
	if d.Buckets {
		for i := range st.Buckets {
			bk := &st.Buckets[i]
			if bk.Minute < d.MinMinute {
				continue
			}
			p.buf = encodeTotals(p.buf[:0], &bk.Totals)
			if err := b.Set(binary.BigEndian.AppendUint64(append(ad, 'w'), uint64(bk.Minute)), p.buf, nil); err != nil {
				return err
			}
		}
	}
	if d.Cut && d.SeenCut >= 0 {
		if err := b.DeleteRange(append(ad, 's'), binary.BigEndian.AppendUint64(append(ad, 's'), uint64(d.SeenCut+1)), nil); err != nil {
			return err
		}
	}
	for _, s := range st.Seen[len(st.Seen)-min(d.NewSeen, len(st.Seen)):] {
		k := append(binary.BigEndian.AppendUint64(append(ad, 's'), uint64(s.TS)), s.ID...)
		if err := b.Set(k, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

func (p *Partition) loadAd(adID string) (*rules.AdState, error) {
	ad := p.adPrefix(adID)
	st := &rules.AdState{AdID: adID}
	it, err := p.db.db.NewIter(&pebble.IterOptions{LowerBound: ad, UpperBound: prefixEnd(ad)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key()[len(ad):], it.Value()
		if len(k) == 0 {
			continue
		}
		switch k[0] {
		case 'm':
			if err := decodeAdMeta(v, st); err != nil {
				return nil, fmt.Errorf("state: ad %q: %w", adID, err)
			}
		case 's':
			if len(k) < 9 {
				return nil, fmt.Errorf("state: ad %q: corrupt event id key", adID)
			}
			id := string(k[9:])
			st.Seen = append(st.Seen, rules.Seen{Hash: rules.IDHash(id), TS: int64(binary.BigEndian.Uint64(k[1:9])), ID: id})
		case 'w':
			if len(k) != 9 {
				return nil, fmt.Errorf("state: ad %q: corrupt bucket key", adID)
			}
			bk := rules.Bucket{Minute: int64(binary.BigEndian.Uint64(k[1:9]))}
			if err := decodeTotals(v, &bk.Totals); err != nil {
				return nil, fmt.Errorf("state: ad %q: %w", adID, err)
			}
			st.Buckets = append(st.Buckets, bk)
		}
	}
	return st, it.Error()
}

func (p *Partition) loadAccount(accountID string) (*rules.AccountState, error) {
	st := &rules.AccountState{AccountID: accountID}
	v, closer, err := p.db.db.Get(p.accountKey(accountID))
	if errors.Is(err, pebble.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	if err := decodeAccount(v, st); err != nil {
		return nil, fmt.Errorf("state: account %q: %w", accountID, err)
	}
	return st, nil
}

// Keys: every key of a partition starts with its prefix,
//
//	'p' uvarint(len(topic)) topic BE32(partition)
//
// followed by
//
//	'o'                                  next offset (varint)
//	'a' uvarint(len(ad)) ad 'm'          ad meta: ids, created_at, budget, lifetime totals, marks
//	'a' uvarint(len(ad)) ad 's' BE64(ts) event_id   remembered event id (empty value)
//	'a' uvarint(len(ad)) ad 'w' BE64(minute)        window bucket: totals of that minute
//	'c' uvarint(len(account)) account    stage-2 account history
//	'g'                                  largest event time read (varint)
//	'k'                                  stage-2 queue: sources' progress, frontier
//	'q' rules.OrderKey                   stage-2 queued proposal (JSON)
//
// so a partition, and within it an ad, is one contiguous key range.
func partitionPrefix(topic string, partition int32) []byte {
	b := []byte{'p'}
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = append(b, topic...)
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

func (p *Partition) key(kind byte) []byte {
	return append(append([]byte(nil), p.prefix...), kind)
}

func (p *Partition) adPrefix(adID string) []byte {
	b := make([]byte, 0, len(p.prefix)+len(adID)+24)
	b = append(append(b, p.prefix...), 'a')
	b = binary.AppendUvarint(b, uint64(len(adID)))
	return append(b, adID...)
}

func (p *Partition) accountKey(id string) []byte {
	b := append(append([]byte(nil), p.prefix...), 'c')
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

// prefixEnd returns the first key after every key with prefix pre.
func prefixEnd(pre []byte) []byte {
	end := append([]byte(nil), pre...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Values are versioned: the first byte is the encoding version.
const encVersion = 1

func encodeAdMeta(b []byte, st *rules.AdState) []byte {
	b = append(b, encVersion)
	for _, s := range []string{st.AccountID, st.CampaignID, st.AdsetID, st.VideoID} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, st.CreatedAt)
	b = appendBool(b, st.HasCreatedAt)
	b = binary.AppendVarint(b, st.MaxTS)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(st.Budget))
	b = appendBool(b, st.HasBudget)
	b = encodeTotals(b, &st.Life)
	b = binary.AppendUvarint(b, uint64(len(st.Marks)))
	for _, m := range st.Marks {
		b = appendString(b, m.RuleID)
		b = binary.AppendVarint(b, m.Last)
	}
	return b
}

func decodeAdMeta(v []byte, st *rules.AdState) error {
	r := reader{b: v}
	if r.byte() != encVersion {
		return errors.New("unknown encoding version")
	}
	st.AccountID, st.CampaignID, st.AdsetID, st.VideoID = r.string(), r.string(), r.string(), r.string()
	st.CreatedAt = r.varint()
	st.HasCreatedAt = r.byte() == 1
	st.MaxTS = r.varint()
	st.Budget = r.float()
	st.HasBudget = r.byte() == 1
	r.totals(&st.Life)
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		st.Marks = append(st.Marks, rules.Mark{RuleID: r.string(), Last: r.varint()})
	}
	return r.err
}

func encodeTotals(b []byte, t *rules.Totals) []byte {
	b = binary.AppendVarint(b, t.Impressions)
	b = binary.AppendVarint(b, t.Clicks)
	b = binary.AppendVarint(b, t.Conversions)
	b = binary.AppendVarint(b, t.Events)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(t.Spend))
	return binary.BigEndian.AppendUint64(b, math.Float64bits(t.Revenue))
}

func decodeTotals(v []byte, t *rules.Totals) error {
	r := reader{b: v}
	r.totals(t)
	return r.err
}

func encodeAccount(b []byte, st *rules.AccountState) []byte {
	b = append(b, encVersion)
	b = binary.AppendVarint(b, st.MaxTS)
	b = binary.AppendUvarint(b, uint64(len(st.Approved)))
	for _, a := range st.Approved {
		b = binary.AppendVarint(b, a.TS)
		b = appendString(b, a.Entity)
	}
	b = binary.AppendUvarint(b, uint64(len(st.Changes)))
	for _, c := range st.Changes {
		b = appendString(b, c.Entity)
		b = binary.AppendVarint(b, c.TS)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.OldBudget))
	}
	return b
}

func decodeAccount(v []byte, st *rules.AccountState) error {
	r := reader{b: v}
	if r.byte() != encVersion {
		return errors.New("unknown encoding version")
	}
	st.MaxTS = r.varint()
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		st.Approved = append(st.Approved, rules.Approval{TS: r.varint(), Entity: r.string()})
	}
	n = r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		st.Changes = append(st.Changes, rules.BudgetChange{Entity: r.string(), TS: r.varint(), OldBudget: r.float()})
	}
	return r.err
}

func encodeQueue(b []byte, q *rules.Queue) []byte {
	b = append(b, encVersion)
	b = binary.AppendUvarint(b, uint64(q.Expect))
	b = binary.AppendVarint(b, q.Frontier)
	srcs := make([]rules.Source, 0, len(q.Sources))
	for s := range q.Sources {
		srcs = append(srcs, s)
	}
	// A fixed order: the same queue, the same bytes.
	slices.SortFunc(srcs, func(a, b rules.Source) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	b = binary.AppendUvarint(b, uint64(len(srcs)))
	for _, s := range srcs {
		m := q.Sources[s]
		b = appendString(b, s.Topic)
		b = binary.AppendVarint(b, int64(s.Partition))
		b = binary.AppendVarint(b, m.At)
		b = appendBool(b, m.Idle)
	}
	return b
}

func decodeQueue(v []byte, q *rules.Queue) error {
	r := reader{b: v}
	if r.byte() != encVersion {
		return errors.New("unknown encoding version")
	}
	q.Expect = int(r.uvarint())
	q.Frontier = r.varint()
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		s := rules.Source{Topic: r.string(), Partition: int32(r.varint())}
		q.Sources[s] = rules.SourceProgress{At: r.varint(), Idle: r.byte() == 1}
	}
	return r.err
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// reader decodes values; the first problem sticks in err.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("value too short")

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) float() float64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errShort
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) totals(t *rules.Totals) {
	t.Impressions, t.Clicks, t.Conversions, t.Events = r.varint(), r.varint(), r.varint(), r.varint()
	t.Spend, t.Revenue = r.float(), r.float()
}

// quietLogger drops Pebble's informational messages (WAL recovery and the
// like) and keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}
