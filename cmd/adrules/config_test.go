package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConfigAsEvents: publish, history, get and rollback, and what config
// status and /metrics say of a running node: it bootstraps the first
// version, switches to a newly published one between batches, and refuses
// an invalid one, keeping the last good version (package node tests how).
func TestConfigAsEvents(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	b := strings.Join(addrs, ",")
	base, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v1, err := loadRules("../../examples/rules.yaml", "", nil)
	if err != nil {
		t.Fatal(err)
	}

	// A node with nothing published publishes its rules file as v1.
	n := startRunNode(t, testNodeConfig(addrs, topics, "c", t.TempDir())).n
	// runs waits until config status lists the node on version v of sha256
	// (in the heartbeat it writes at start, then every 2 seconds).
	runs := func(v int64, sha string) {
		t.Helper()
		line := regexp.MustCompile(fmt.Sprintf(`(?m)^c +live +default v%d %s +heartbeat .* http %s$`, v, short(sha), regexp.QuoteMeta(n.addr)))
		eventually(t, fmt.Sprintf("the node on v%d in config status", v), func() bool {
			out, stderr, err := adrules(t, "", nil, "config", "status", "--brokers", b, "--topic-config", topics.Config, "--topic-config-history", topics.ConfigHistory, "--topic-status", topics.Status)
			return err == nil && line.MatchString(out) && strings.Contains(stderr, "1 live nodes")
		})
	}
	metrics := func() map[string]float64 {
		_, series := scrape(t, "http://"+n.addr+"/metrics")
		return series
	}
	const liveVersion, refused = `adrules_config_version{pipeline="live"}`, `adrules_config_refused_total{}`
	runs(1, v1.SHA256)

	// v2: a stricter CTR threshold, published with the CLI.
	dir := t.TempDir()
	strict := filepath.Join(dir, "strict.yaml")
	os.WriteFile(strict, []byte(strings.Replace(string(base), "ctr_threshold: 0.03", "ctr_threshold: 0.05", 1)), 0o644)
	v2, err := loadRules(strict, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := adrules(t, "", nil, "config", "publish", "--brokers", b, "--topic-config", topics.Config, "--topic-config-history", topics.ConfigHistory, strict)
	if err != nil || !strings.Contains(out, "published default v2") {
		t.Fatalf("publish: %v %s %s", err, out, stderr)
	}
	// An invalid file is refused at publish time and publishes nothing.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(base), "ad.ctr >", "ad.ctx >", 1)), 0o644)
	if _, _, err := adrules(t, "", nil, "config", "publish", "--brokers", b, "--topic-config", topics.Config, "--topic-config-history", topics.ConfigHistory, bad); exitCode(err) != 1 {
		t.Fatalf("publishing an invalid file: exit %d, want 1", exitCode(err))
	}
	runs(2, v2.SHA256)
	if got := metrics()[liveVersion]; got != 2 {
		t.Fatalf("adrules_config_version = %v, want 2", got)
	}

	// v3 on the topic is invalid (a record written by hand): every node
	// refuses it and stays on v2.
	doc := strings.Replace(string(v2.Doc.Canonical()), "ad.ctr >", "ad.ctx >", 1)
	rec := signed(t, versions.Record{Name: "default", Version: 3, SHA256: "x", Author: "mallory", Document: json.RawMessage(doc)})
	cl := kafkatest.Client(t, addrs)
	if err := streams.Publish(context.Background(), cl, topics, rec); err != nil {
		t.Fatal(err)
	}
	// A tombstone never removes the live config.
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Config, Key: []byte("default")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/metrics counting the invalid version refused", func() bool { return metrics()[refused] >= 1 })
	if v := metrics()[liveVersion]; v != 2 {
		t.Fatalf("after an invalid v3 adrules_config_version = %v, want 2", v)
	}

	// Decisions carry the version in force.
	lines := kafkatest.History(t, 4, gen.Options{Accounts: 2})
	want, _ := kafkatest.Backtest(t, v2, lines)
	if len(want) == 0 {
		t.Fatal("v2 makes no decisions on this history: the test would prove little")
	}
	kafkatest.Produce(t, cl, topics.Metrics, "ad_id", lines)
	decisions, applied := kafkatest.ConsumeDecisions(t, addrs, topics.Decisions, len(want), time.Minute)
	// The switch points of the metric events, produced after the swap,
	// name v2 (stage 2 may have recorded v1's on the proposals topic, for
	// the progress records it read before).
	switches := 0
	for _, a := range applied {
		var m struct {
			Version int64 `json:"ruleset_version"`
			Input   struct {
				Topic string `json:"topic"`
			} `json:"input"`
		}
		json.Unmarshal(a, &m)
		if m.Input.Topic != topics.Metrics {
			continue
		}
		switches++
		if m.Version != 2 {
			t.Fatalf("a switch point of %s names v%d, want v2: %s", topics.Metrics, m.Version, a)
		}
	}
	if switches == 0 {
		t.Fatalf("no switch point of %s: %s", topics.Metrics, applied)
	}
	for _, d := range decisions {
		var m struct {
			Version int64 `json:"ruleset_version"`
		}
		json.Unmarshal(d, &m)
		if m.Version != 2 {
			t.Fatalf("a decision carries ruleset_version %d, want 2", m.Version)
		}
	}

	// History lists v1..v3; rollback republishes v1's document as v4.
	hist, _, err := adrules(t, "", nil, "config", "history", "--brokers", b, "--topic-config-history", topics.ConfigHistory)
	if err != nil || strings.Count(hist, "\n") != 3 {
		t.Fatalf("history: %v\n%s", err, hist)
	}
	out, _, err = adrules(t, "", nil, "config", "rollback", "--brokers", b, "--topic-config", topics.Config, "--topic-config-history", topics.ConfigHistory, "1")
	if err != nil || !strings.Contains(out, "published default v4 (the document of v1)") {
		t.Fatalf("rollback: %v %s", err, out)
	}
	// After the rollback the node runs v1's document.
	runs(4, v1.SHA256)
	got, _, err := adrules(t, "", nil, "config", "get", "--brokers", b, "--topic-config", topics.Config, "--topic-config-history", topics.ConfigHistory)
	if err != nil || !strings.Contains(got, `"ctr_threshold":0.03`) {
		t.Fatalf("get: %v %s", err, got)
	}
}

func writeReplaced(t *testing.T, from, to, old, new string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// configFlags are the flags of a config command against the test's topics.
func configFlags(addrs []string, topics streams.Topics) []string {
	return []string{"--brokers", strings.Join(addrs, ","), "--topic-config", topics.Config,
		"--topic-config-history", topics.ConfigHistory, "--topic-status", topics.Status}
}
