package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/replay"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// strict is v2 of the tests: a stricter CTR threshold, so that some ads
// that win under v1 do not under v2.
var strict = []string{"ctr_threshold: 0.03", "ctr_threshold: 0.045"}

// TestVerify: a node processes a history across a switch from v1 to a
// stricter v2. The replay re-runs both versions where they applied and
// finds them identical, over all of it and from a time on; a proposal the
// rules did not make, then a decision tampered with, are named as the
// first difference.
func TestVerify(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	n := startNode(t, addrs, topics, publish(t, cl, topics, 1, document(t)))
	lines := kafkatest.History(t, 14, gen.Options{Accounts: 8})
	half := len(lines) / 2
	kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines[:half])
	waitProcessed(t, addrs, topics)
	n.eng.Swap(publish(t, cl, topics, 2, document(t, strict...)))
	kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines[half:])
	waitProcessed(t, addrs, topics)

	// The switch is on record: both versions applied.
	var applied []string
	err := streams.ReadTopic(context.Background(), cl, cl.Opts(), topics.Decisions, func(v []byte) error {
		if bytes.Contains(v, []byte(`"type":"config_applied"`)) {
			applied = append(applied, string(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(applied, "\n"); !strings.Contains(s, `"ruleset_version":1,`) || !strings.Contains(s, `"ruleset_version":2,`) {
		t.Fatalf("no switch from v1 to v2 on record:\n%s", s)
	}

	res := verify(t, options(t, addrs, topics))
	if res.Diff != "" {
		t.Fatalf("replay of what the node wrote: %s", res.Diff)
	}
	if len(res.Replayed.Decisions) == 0 || len(res.Replayed.Verdicts) == 0 {
		t.Fatalf("nothing compared: %d decisions, %d verdicts", len(res.Replayed.Decisions), len(res.Replayed.Verdicts))
	}
	if len(res.Recorded.Decisions) != len(res.Replayed.Decisions) || res.Range.Span() != int64(len(lines)) {
		t.Fatalf("%d decisions recorded, %d replayed, over %d records of %d", len(res.Recorded.Decisions), len(res.Replayed.Decisions), res.Range.Span(), len(lines))
	}
	t.Logf("identical: %d decisions, %d proposals, %d verdicts", len(res.Replayed.Decisions), len(res.Replayed.Proposals), len(res.Replayed.Verdicts))

	// From the switch on: the range is the records after it, state is
	// rebuilt from the start of the log.
	at, _ := streams.RecordTime(lines[half])
	o := options(t, addrs, topics)
	o.From = streams.Bound{Time: at}
	part := verify(t, o)
	if part.Diff != "" {
		t.Fatalf("replay from %s: %s", at, part.Diff)
	}
	if n := len(part.Replayed.Decisions); n == 0 || n >= len(res.Replayed.Decisions) {
		t.Fatalf("from %s: %d decisions of %d: the test would prove little", at, n, len(res.Replayed.Decisions))
	}

	// A proposal the rules did not make (as a changed engine would have
	// made it): stage 2 judges it, and the replay names it.
	var prop []byte
	err = streams.ReadTopic(context.Background(), cl, cl.Opts(), topics.Proposals, func(v []byte) error {
		if prop == nil && bytes.Contains(v, []byte(`"new_budget":`)) {
			prop = v
		}
		return nil
	})
	if err != nil || prop == nil {
		t.Fatalf("no budget proposal to change: %v", err)
	}
	var pr rules.Proposal
	if err := json.Unmarshal(prop, &pr); err != nil {
		t.Fatal(err)
	}
	*pr.NewBudget++
	changed, _ := json.Marshal(pr)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Proposals, Key: []byte(pr.AccountID), Value: changed}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitProcessed(t, addrs, topics)
	if d := verify(t, options(t, addrs, topics)).Diff; !strings.HasPrefix(d, "different: proposals") || !strings.Contains(d, "on "+topics.Proposals+", not replayed") {
		t.Fatalf("replay after a changed proposal:\n%s", d)
	}

	// Tamper with a decision: a copy with another value, as if a record
	// had been changed on its way. Decisions are compared first.
	var victim []byte
	err = streams.ReadTopic(context.Background(), cl, cl.Opts(), topics.Decisions, func(v []byte) error {
		if victim == nil && bytes.Contains(v, []byte(`"type":"rag_index_winner"`)) {
			victim = v
		}
		return nil
	})
	if err != nil || victim == nil {
		t.Fatalf("no decision to tamper with: %v", err)
	}
	var d rules.Decision
	if err := json.Unmarshal(victim, &d); err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(victim, []byte(`"ad_id":"`+d.AdID+`"`), []byte(`"ad_id":"`+d.AdID+`-forged"`), 1)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Decisions, Key: []byte(d.AdID), Value: forged}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	diff := verify(t, options(t, addrs, topics)).Diff
	want := "different: decisions of input " + d.Input.Topic
	if !strings.HasPrefix(diff, want) || !strings.Contains(diff, "on "+topics.Decisions+", not replayed: "+string(forged)) {
		t.Fatalf("replay after tampering: want %q and the forged record named, got\n%s", want, diff)
	}
	t.Log(diff)
}

// TestVerifyAfterRollback: issue 10 defect 3. A node runs v1, a stricter
// v2, v3 = v1's document again (a rollback: the same sha256) and v4 = the
// same once more, with events under each. Versions are told apart by
// their number, not by their document's hash: the replay is identical,
// and every replayed decision and proposal carries the version its record
// was processed under (3, not 1 or 4, for those processed under v3).
func TestVerifyAfterRollback(t *testing.T) {
	t.Parallel()
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	cl := kafkatest.Client(t, addrs)
	lines := kafkatest.History(t, 15, gen.Options{Accounts: 8})
	docs := [][]string{nil, strict, nil, nil} // the replacements in examples/rules.yaml of v1..v4
	var n *node
	ends := make([]map[int32]int64, len(docs)) // the metrics topic's end offsets after each version's events
	shas := make([]string, len(docs))
	for i, replace := range docs {
		rs := publish(t, cl, topics, int64(i+1), document(t, replace...))
		if n == nil {
			n = startNode(t, addrs, topics, rs)
		} else {
			n.eng.Swap(rs)
		}
		shas[i] = rs.SHA256
		kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines[i*len(lines)/len(docs):(i+1)*len(lines)/len(docs)])
		waitProcessed(t, addrs, topics)
		offs, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topics.Metrics)
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = map[int32]int64{}
		offs.Each(func(o kadm.ListedOffset) { ends[i][o.Partition] = o.Offset })
	}
	if shas[2] != shas[0] || shas[3] != shas[0] || shas[1] == shas[0] {
		t.Fatalf("v1..v4 run documents %.12s %.12s %.12s %.12s: want v1, v3 and v4 alike, v2 apart", shas[0], shas[1], shas[2], shas[3])
	}

	res := verify(t, options(t, addrs, topics))
	if res.Diff != "" {
		t.Fatalf("replay after a rollback and a republish: %s", res.Diff)
	}
	dir := t.TempDir()
	if err := res.Replayed.WriteDir(dir); err != nil {
		t.Fatal(err)
	}

	// Each replayed output carries the version its input record was
	// produced under.
	versionOf := func(in rules.Input) int64 {
		for i, e := range ends {
			if in.Topic == topics.Metrics && in.Offset < e[in.Partition] {
				return int64(i + 1)
			}
		}
		return -1
	}
	for _, file := range []string{"decisions.jsonl", "proposals.jsonl"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		count := map[int64]int{}
		for l := range bytes.Lines(data) {
			var o struct {
				RulesetVersion int64        `json:"ruleset_version"`
				Input          *rules.Input `json:"input"`
			}
			if err := json.Unmarshal(l, &o); err != nil || o.Input == nil {
				t.Fatalf("%s: %s: %v", file, l, err)
			}
			if want := versionOf(*o.Input); o.RulesetVersion != want {
				t.Errorf("%s: the output of %s/%d@%d carries ruleset_version %d, want %d: %s",
					file, o.Input.Topic, o.Input.Partition, o.Input.Offset, o.RulesetVersion, want, l)
			}
			count[o.RulesetVersion]++
		}
		t.Logf("%s: replayed outputs by version: %v", file, count)
		if count[3] == 0 || count[1] == 0 || count[4] == 0 {
			t.Errorf("%s: no replayed output of v1, v3 or v4 (%v): the test would prove little", file, count)
		}
	}
}

// TestOptionsRequired: Load names the option missing.
func TestOptionsRequired(t *testing.T) {
	cluster, err := streams.Open(streams.Connection{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	for _, c := range []struct {
		o    replay.Options
		want string
	}{
		{replay.Options{}, "no Cluster"},
		{replay.Options{Cluster: cluster}, "no Store"},
	} {
		if _, err := replay.Load(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%+v): %v, want %q", c.o, err, c.want)
		}
	}
}
