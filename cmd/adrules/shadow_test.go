package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/internal/shadow"
)

// newShadowCluster is kafkatest.NewShadowCluster on the test's cluster,
// with the shipped rules file, signed by testSigner.
func newShadowCluster(t *testing.T, autoPromote bool, decides func(int) bool) *kafkatest.ShadowCluster {
	t.Helper()
	addrs, topics := kafkatest.Brokers(t)
	return kafkatest.NewShadowCluster(t, addrs, topics, kafkatest.ShadowOptions{Root: "../..", Signer: kafkatest.TestSigner(), AutoPromote: autoPromote, Decides: decides})
}

// shadowFlags are the command-line flags that point adrules at c.
func shadowFlags(c *kafkatest.ShadowCluster) []string {
	return []string{"--brokers", strings.Join(c.Addrs, ","), "--topic-config", c.Topics.Config, "--topic-config-history", c.Topics.ConfigHistory,
		"--topic-metrics", c.Topics.Metrics, "--topic-decisions", c.Topics.Decisions, "--topic-shadow-decisions", c.Topics.ShadowDecisions}
}

// TestShadowPublish: publish --shadow refuses an invalid file with its
// position, and takes the next number of the one sequence that live and
// shadow versions share; get --shadow shows it, history lists it, and
// retire-shadow ends it.
func TestShadowPublish(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	flags := configFlags(addrs, topics)
	config := func(args ...string) (string, string, error) {
		return adrules(t, "", nil, append(append([]string{"config", args[0]}, flags...), args[1:]...)...)
	}
	dir := t.TempDir()
	loose, bad := filepath.Join(dir, "loose.yaml"), filepath.Join(dir, "bad.yaml")
	writeReplaced(t, "../../examples/rules.yaml", loose, "ctr_threshold: 0.03", "ctr_threshold: 0.02")
	writeReplaced(t, "../../examples/rules.yaml", bad, "ad.ctr >", "ad.ctx >")

	if out, _, err := config("publish", "../../examples/rules.yaml"); err != nil || !strings.Contains(out, "published default v1 sha256") {
		t.Fatalf("publish v1: %v %s", err, out)
	}
	_, stderr, err := config("publish", "--shadow", bad)
	if exitCode(err) != 1 || !regexp.MustCompile(regexp.QuoteMeta(bad)+`:\d+:\d+: rule winner: `).MatchString(stderr) {
		t.Fatalf("publishing an invalid shadow: exit %d, %q; want 1 and FILE:LINE:COL", exitCode(err), stderr)
	}
	if out, _, err := config("publish", "--shadow", loose); err != nil || !strings.Contains(out, "published default v2 as the shadow") {
		t.Fatalf("publish --shadow: %v %s", err, out)
	}
	// The next live version comes after the shadow's.
	if out, _, err := config("publish", "../../examples/rules.yaml"); err != nil || !strings.Contains(out, "published default v3 sha256") {
		t.Fatalf("publish v3: %v %s", err, out)
	}
	if out, stderr, err := config("get", "--shadow"); err != nil || !strings.Contains(out, `"ctr_threshold":0.02`) || !strings.Contains(stderr, "default v2 (shadow)") {
		t.Fatalf("get --shadow: %v %s %s", err, out, stderr)
	}
	if out, _, err := config("get"); err != nil || !strings.Contains(out, `"ctr_threshold":0.03`) {
		t.Fatalf("get: %v %s", err, out)
	}
	if out, _, err := config("history"); err != nil || strings.Count(out, "\n") != 3 || !regexp.MustCompile(`(?m)^v2 .*shadow$`).MatchString(out) {
		t.Fatalf("history: %v\n%s", err, out)
	}
	if out, _, err := config("retire-shadow"); err != nil || !strings.Contains(out, "retired the shadow of default (v2)") {
		t.Fatalf("retire-shadow: %v %s", err, out)
	}
	if _, _, err := config("get", "--shadow"); err == nil {
		t.Fatal("get --shadow after the retirement found a shadow")
	}
	if _, _, err := config("retire-shadow"); err == nil {
		t.Fatal("retiring a retired shadow succeeded")
	}
	if out, _, err := config("history"); err != nil || !regexp.MustCompile(`(?m)^v2 .*shadow retired$`).MatchString(out) {
		t.Fatalf("history after the retirement: %v\n%s", err, out)
	}
	if out, _, err := config("publish", "--shadow", loose); err != nil || !strings.Contains(out, "published default v4 as the shadow") {
		t.Fatalf("a second shadow: %v %s", err, out)
	}
}

func TestShadowStatus(t *testing.T) {
	t.Run("no shadow", func(t *testing.T) {
		c := newShadowCluster(t, false, nil)
		out, stderr, err := adrules(t, "", nil, append([]string{"shadow", "status"}, shadowFlags(c)...)...)
		if err != nil || !strings.Contains(out, "rule set default: live v1") || !strings.Contains(out, "no shadow is published") {
			t.Fatalf("status: %v\n%s%s", err, out, stderr)
		}
		out, _, err = adrules(t, "", nil, append([]string{"shadow", "status", "--json"}, shadowFlags(c)...)...)
		if err != nil || !strings.Contains(out, `"shadow": null`) {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
	})

	t.Run("better", func(t *testing.T) {
		c := newShadowCluster(t, false, kafkatest.BetterShadow)
		out, stderr, err := adrules(t, "", nil, append([]string{"shadow", "status"}, shadowFlags(c)...)...)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, stderr)
		}
		t.Logf("\n%s", out)
		for _, want := range []string{
			"shadow v2 (sha256 " + short(c.Shadow.SHA256()) + ") since 2025-01-01T00:00:00Z",
			"roas >= 3 or ctr > 0.03 (the live thresholds)",
			"live           400       400       220    0.5500\n",
			"shadow         340       340       220    0.6471\n",
			"rule        both live only shadow only\nwinner       340        60           0\n",
			"improvement +17.65% relative, +9.71 points",
			"verdict: promote (auto_promote is off",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q", want)
			}
		}
		out, _, err = adrules(t, "", nil, append([]string{"shadow", "status", "--json"}, shadowFlags(c)...)...)
		var v shadowJSON
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Report == nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if r := v.Report; !r.Promote || r.Shadow != (shadow.SideReport{Decisions: 340, Resolved: 340, Held: 220, Precision: 220.0 / 340}) ||
			v.Shadow.SHA256 != c.Shadow.SHA256() || v.Live.Version != 1 {
			t.Errorf("json: %+v %+v", v, *v.Report)
		}
	})

	t.Run("not better", func(t *testing.T) {
		// The shadow decides what the live side decides: no improvement.
		c := newShadowCluster(t, true, func(int) bool { return true })
		out, stderr, err := adrules(t, "", nil, append([]string{"shadow", "status"}, shadowFlags(c)...)...)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, stderr)
		}
		for _, want := range []string{
			"shadow         400       400       220    0.5500\n",
			"winner       400         0           0\n",
			"not met  improvement",
			"verdict: keep the live rule set: shadow precision 0.5500 is +0.00% relative to live 0.5500; needs at least +2.00%",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q\n%s", want, out)
			}
		}
	})
}
