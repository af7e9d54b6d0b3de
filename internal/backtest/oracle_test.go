package backtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/gen"
)

// oracleEvent is what the oracle needs of a valid event.
type oracleEvent struct {
	id, ad         string
	ts, created    int64
	imp, clicks    int64
	spend, revenue float64
	hasCreated     bool
}

// oracleDecode validates a line by DESIGN section 5a, S2 and S7, with
// encoding/json and none of the engine's code.
func oracleDecode(line []byte) (oracleEvent, bool) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if dec.Decode(&m) != nil || m == nil {
		return oracleEvent{}, false
	}
	str := func(k string) (string, bool) {
		s, ok := m[k].(string)
		return s, ok && s != ""
	}
	num := func(k string) (float64, bool) {
		n, ok := m[k].(json.Number)
		if !ok {
			return 0, false
		}
		f, err := n.Float64()
		return f, err == nil && f >= 0 && !math.IsInf(f, 0)
	}
	count := func(k string) (int64, bool) {
		f, ok := num(k)
		return int64(f), ok && f == math.Trunc(f)
	}
	tm := func(k string) (int64, bool) {
		switch v := m[k].(type) {
		case json.Number:
			n, err := v.Int64()
			return n, err == nil && n >= 0
		case string:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n, n >= 0
			}
			t, err := time.Parse(time.RFC3339Nano, v)
			return t.UnixMilli(), err == nil
		}
		return 0, false
	}
	var e oracleEvent
	var ok [8]bool
	e.id, ok[0] = str("event_id")
	e.ad, ok[1] = str("ad_id")
	_, ok[2] = str("account_id")
	e.ts, ok[3] = tm("ts")
	e.imp, ok[4] = count("impressions")
	e.clicks, ok[5] = count("clicks")
	e.spend, ok[6] = num("spend")
	ok[7] = true
	if _, has := m["revenue"]; has {
		e.revenue, ok[7] = num("revenue")
	}
	if _, has := m["conversions"]; has {
		if _, c := count("conversions"); !c {
			return e, false
		}
	}
	if _, has := m["budget"]; has {
		if _, b := num("budget"); !b {
			return e, false
		}
	}
	if _, has := m["created_at"]; has {
		var c bool
		if e.created, c = tm("created_at"); !c {
			return e, false
		}
		e.hasCreated = true
	}
	return e, !slices.Contains(ok[:], false)
}

// TestOracle runs the default rules over a noisy generated week and compares
// the winners with an independent, naive implementation of S1 to S7 and S6:
// the same ads, at the same events, with the same values.
func TestOracle(t *testing.T) {
	var events bytes.Buffer
	if _, err := gen.Events(&events, gen.Options{Seed: 11, Accounts: 4, BadPct: 3, DupPct: 4, EpochMsPct: 40}); err != nil {
		t.Fatal(err)
	}
	// The oracle.
	type adAcc struct {
		seen        map[string]bool
		imp, clicks int64
		spend, rev  float64
		created     int64
		hasCreated  bool
		fired       bool
	}
	ads := map[string]*adAcc{}
	want := map[string]string{} // ad -> event_id of its winner decision
	wantValues := map[string][3]float64{}
	bad := 0
	sc := bufio.NewScanner(bytes.NewReader(events.Bytes()))
	for sc.Scan() {
		e, ok := oracleDecode(sc.Bytes())
		if !ok {
			bad++
			continue
		}
		a := ads[e.ad]
		if a == nil {
			a = &adAcc{seen: map[string]bool{}, created: e.ts}
			ads[e.ad] = a
		}
		if a.seen[e.id] {
			continue
		}
		a.seen[e.id] = true
		a.imp += e.imp
		a.clicks += e.clicks
		a.spend += e.spend
		a.rev += e.revenue
		if e.hasCreated && !a.hasCreated {
			a.created, a.hasCreated = e.created, true
		}
		ctr, roas := 0.0, 0.0
		if a.imp > 0 {
			ctr = float64(a.clicks) / float64(a.imp)
		}
		if a.spend > 0 {
			roas = a.rev / a.spend
		}
		hours := float64(e.ts-a.created) / 3.6e6
		if !a.fired && a.imp >= 1000 && hours >= 24 && (ctr > 0.03 || roas > 3.0) {
			a.fired = true
			want[e.ad] = e.id
			wantValues[e.ad] = [3]float64{ctr, roas, float64(a.imp)}
		}
	}
	if len(want) < 3 || bad == 0 {
		t.Fatalf("the generated history has %d winners and %d bad lines: the test would prove little", len(want), bad)
	}

	// The engine.
	data, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum, err := Run(context.Background(), Options{
		RuleSet: ruleSet(t, strings.Replace(string(data), "budget_scaling: true", "budget_scaling: false", 1)),
		Input:   bytes.NewReader(events.Bytes()), InputName: "ev", OutDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	if int(sum.Rejected) != bad {
		t.Errorf("dead letters: %d, the oracle rejects %d lines", sum.Rejected, bad)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "decisions.jsonl"))
	got := map[string]string{}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var d struct {
			AdID    string             `json:"ad_id"`
			EventID string             `json:"event_id"`
			Type    string             `json:"type"`
			Values  map[string]float64 `json:"values"`
		}
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[d.AdID]; dup {
			t.Errorf("ad %s won twice", d.AdID)
		}
		got[d.AdID] = d.EventID
		w := wantValues[d.AdID]
		if d.Type != "rag_index_winner" || math.Abs(d.Values["ctr"]-w[0]) > 1e-12 || math.Abs(d.Values["roas"]-w[1]) > 1e-9 || d.Values["impressions"] != w[2] {
			t.Errorf("ad %s: decision %s %v, oracle %v", d.AdID, d.Type, d.Values, w)
		}
	}
	for ad, id := range want {
		if got[ad] != id {
			t.Errorf("ad %s: oracle winner at event %q, engine at %q", ad, id, got[ad])
		}
	}
	for ad, id := range got {
		if want[ad] == "" {
			t.Errorf("ad %s: engine winner at %q, oracle none", ad, id)
		}
	}
}
