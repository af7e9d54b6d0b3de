package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/rules"
	"github.com/twmb/franz-go/pkg/kadm"
)

// TestReplayAfterRollback: issue 10 defect 3. A node runs v1 (the
// bootstrap), a stricter v2, v3 = `config rollback 1` (v1's document, the
// same sha256) and v4 = the same file published again, with events under
// each. Versions are told apart by their number, not by their document's
// hash: replay --verify says identical, and every replayed decision and
// proposal carries the version its record was processed under (3, not 1
// or 4, for those processed under v3).
func TestReplayAfterRollback(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	nc := testNodeConfig(addrs, topics, "n1", t.TempDir())
	node := startRunNode(t, nc)
	cl := kafkatest.Client(t, addrs)
	lines := kafkatest.History(t, 15, gen.Options{Accounts: 8})
	flags := topicFlags(addrs, topics)
	strict := filepath.Join(t.TempDir(), "strict.yaml")
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.045")

	steps := []struct {
		version int64
		cmd     []string // what publishes it (v1: the node's bootstrap)
	}{
		{1, nil},
		{2, []string{"config", "publish", strict}},
		{3, []string{"config", "rollback", "1"}},
		{4, []string{"config", "publish", "../../examples/rules.yaml"}},
	}
	ends := make([]map[int32]int64, len(steps)) // the metrics topic's end offsets after each step's events
	shas := make([]string, len(steps))
	for i, s := range steps {
		if s.cmd != nil {
			args := append(append(s.cmd[:2:2], flags...), s.cmd[2:]...)
			stdout, stderr, err := adrules(t, "", nil, args...)
			if err != nil || !strings.Contains(stdout, fmt.Sprintf(" v%d ", s.version)) {
				t.Fatalf("%s: %v\n%s%s", strings.Join(s.cmd, " "), err, stdout, stderr)
			}
		}
		eventually(t, fmt.Sprintf("the node on v%d", s.version), func() bool { return node.n.ruleSet().Version == s.version })
		shas[i] = node.n.ruleSet().SHA256
		kafkatest.ProduceAtEventTime(t, cl, topics.Metrics, "ad_id", lines[i*len(lines)/len(steps):(i+1)*len(lines)/len(steps)])
		waitProcessed(t, addrs, nc.group, topics)
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

	out := t.TempDir()
	stdout, stderr, err := adrules(t, "", nil, append([]string{"replay", "--verify", "--out", out}, flags...)...)
	if err != nil || !strings.HasPrefix(stdout, "identical: ") {
		t.Fatalf("replay --verify after a rollback and a republish: exit %d\n%s%s", exitCode(err), stdout, stderr)
	}
	t.Log(strings.TrimSpace(stdout))

	// Each replayed output carries the version of the step its input
	// record was produced in.
	versionOf := func(in rules.Input) int64 {
		for i, e := range ends {
			if in.Topic == topics.Metrics && in.Offset < e[in.Partition] {
				return steps[i].version
			}
		}
		return -1
	}
	for _, file := range []string{"decisions.jsonl", "proposals.jsonl"} {
		count := map[int64]int{}
		for _, l := range readLines(t, filepath.Join(out, file)) {
			var o struct {
				RulesetVersion int64        `json:"ruleset_version"`
				Input          *rules.Input `json:"input"`
			}
			if err := json.Unmarshal(l, &o); err != nil || o.Input == nil {
				t.Fatalf("%s: %s: %v", file, l, err)
			}
			want := versionOf(*o.Input)
			if o.RulesetVersion != want {
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
