package streams

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/adrules/adrules/engine"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// History knows which rule set version processed each record of the input
// partitions: the switch points the nodes recorded (engine.ConfigApplied,
// on Topics.Switches, and on the decisions topic for a replay), and the
// versions' documents on the config history. It is the engine.History of a
// node's rebuilds, and what `adrules replay` replays with, so both replay a
// record under the same version. Versions are told apart by their number:
// a rollback republishes an old document under a new number, and a record
// processed under it replays under that number.
type History struct {
	opts    []kgo.Opt // seed brokers and security
	topics  Topics
	name    string
	compile versions.Accept

	mu       sync.Mutex
	switches map[tp][]switchPoint
	next     map[string]int64 // per topic read (switches, config history): the next offset to read
	docs     map[int64][]versions.Record
	compiled map[versionKey]*rules.RuleSet
}

type switchPoint struct {
	offset  int64
	version int64
	sha     string
}

type versionKey struct {
	version int64
	sha     string
}

// NewHistory reads the switch points and documents of rule set name on
// demand with clients made of opts (seed brokers, TLS, SASL); compile
// turns a published version into a rule set as every node does.
func NewHistory(opts []kgo.Opt, topics Topics, name string, compile versions.Accept) *History {
	return &History{opts: opts, topics: topics, name: name, compile: compile,
		switches: map[tp][]switchPoint{}, next: map[string]int64{}, docs: map[int64][]versions.Record{}, compiled: map[versionKey]*rules.RuleSet{}}
}

var _ engine.History = (*History)(nil)

// Add records a switch point read elsewhere (the decisions topic).
func (h *History) Add(a engine.ConfigApplied) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.add(a)
}

func (h *History) add(a engine.ConfigApplied) {
	k := tp{a.Input.Topic, a.Input.Partition}
	sp := switchPoint{offset: a.Input.Offset, version: a.RulesetVersion, sha: a.RulesetSHA256}
	if slices.Contains(h.switches[k], sp) {
		return // read on both topics
	}
	h.switches[k] = append(h.switches[k], sp)
	// Several at one offset (a partition reopened there): the later wins,
	// so the sort keeps the order of arrival.
	slices.SortStableFunc(h.switches[k], func(a, b switchPoint) int { return cmp.Compare(a.offset, b.offset) })
}

// Refresh reads what was added to the switches and config history topics
// since the last read.
func (h *History) Refresh(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refresh(ctx)
}

func (h *History) refresh(ctx context.Context) error {
	for _, topic := range []string{h.topics.Switches, h.topics.ConfigHistory} {
		if topic == "" {
			continue
		}
		err := h.readNew(ctx, topic, func(r engine.Record) error {
			if topic == h.topics.ConfigHistory {
				live, _ := versions.Live([]versions.Entry{{Key: r.Key, Value: r.Value, Offset: r.Offset}}, h.name)
				for _, c := range live {
					h.docs[c.Version] = append(h.docs[c.Version], c)
				}
				return nil
			}
			var a engine.ConfigApplied
			if err := json.Unmarshal(r.Value, &a); err != nil || a.Type != engine.TypeConfigApplied {
				return nil // not a switch point: nothing to learn from it
			}
			h.add(a)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
	}
	return nil
}

// readNew reads the records of partition 0 of topic (both topics have one
// partition) from where the last read ended to the current end.
func (h *History) readNew(ctx context.Context, topic string, fn func(engine.Record) error) error {
	cl, err := kgo.NewClient(h.opts...)
	if err != nil {
		return err
	}
	rs, err := ResolveRange(ctx, cl, topic, Bound{}, Bound{}, Warm{})
	cl.Close()
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Partition != 0 {
			continue
		}
		r.From = max(r.From, h.next[topic])
		r.Warm = r.From
		if r.To <= r.From {
			return nil
		}
		err := ReadRange(ctx, h.opts, r, func(recs []engine.Record, _ []time.Time) error {
			for _, rec := range recs {
				if err := fn(rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		h.next[topic] = r.To
	}
	return nil
}

// RuleSetAt returns the rule set that processed the record at offset of
// topic/partition, and the offset of the next switch point after it (-1:
// none). A record older than every switch point of its partition is taken
// to have run under the first one; a partition with none gives a nil rule
// set (engine.History). It reads what was added to the topics first.
func (h *History) RuleSetAt(ctx context.Context, topic string, partition int32, offset int64) (*rules.RuleSet, int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.refresh(ctx); err != nil {
		return nil, -1, err
	}
	sp, until, ok := h.at(tp{topic, partition}, offset)
	if !ok {
		return nil, -1, nil
	}
	rs, err := h.ruleSet(sp)
	return rs, until, err
}

// VersionAt is RuleSetAt without reading the topics, and without
// compiling: the version and sha256 in force at a record, ok false when
// its partition has no switch point.
func (h *History) VersionAt(topic string, partition int32, offset int64) (version int64, sha string, until int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sp, until, ok := h.at(tp{topic, partition}, offset)
	return sp.version, sp.sha, until, ok
}

// RuleSet returns the compiled rule set of a version, as recorded with sha.
func (h *History) RuleSet(version int64, sha string) (*rules.RuleSet, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ruleSet(switchPoint{version: version, sha: sha})
}

func (h *History) at(k tp, offset int64) (switchPoint, int64, bool) {
	sp := h.switches[k]
	if len(sp) == 0 {
		return switchPoint{}, -1, false
	}
	i := sort.Search(len(sp), func(i int) bool { return sp[i].offset > offset })
	until := int64(-1)
	if i < len(sp) {
		until = sp[i].offset
	}
	if i == 0 {
		return sp[0], until, true
	}
	return sp[i-1], until, true
}

func (h *History) ruleSet(sp switchPoint) (*rules.RuleSet, error) {
	k := versionKey{sp.version, sp.sha}
	if rs, ok := h.compiled[k]; ok {
		return rs, nil
	}
	if sp.version <= 0 {
		return nil, fmt.Errorf("rule set sha256 %.12s ran as version %d, which is not published on %s: it cannot be replayed", sp.sha, sp.version, h.topics.ConfigHistory)
	}
	var doc *versions.Record
	for i, c := range h.docs[sp.version] {
		if c.SHA256 == sp.sha || sp.sha == "" {
			doc = &h.docs[sp.version][i]
		}
	}
	if doc == nil {
		return nil, fmt.Errorf("version %d (sha256 %.12s) of rule set %q is not on %s", sp.version, sp.sha, h.name, h.topics.ConfigHistory)
	}
	rs, err := h.compile(*doc)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", sp.version, err)
	}
	h.compiled[k] = rs
	return rs, nil
}
