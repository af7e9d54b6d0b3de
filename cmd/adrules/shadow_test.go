package main

import (
	"encoding/json"
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
	return kafkatest.NewShadowCluster(t, addrs, topics, kafkatest.ShadowOptions{Root: "../..", Signer: testSigner(), AutoPromote: autoPromote, Decides: decides})
}

// shadowFlags are the command-line flags that point adrules at c.
func shadowFlags(c *kafkatest.ShadowCluster) []string {
	return []string{"--brokers", strings.Join(c.Addrs, ","), "--topic-config", c.Topics.Config, "--topic-config-history", c.Topics.ConfigHistory,
		"--topic-metrics", c.Topics.Metrics, "--topic-decisions", c.Topics.Decisions, "--topic-shadow-decisions", c.Topics.ShadowDecisions}
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
