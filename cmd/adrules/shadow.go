package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/adrules/adrules/internal/shadow"
	"github.com/adrules/adrules/node"
	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
)

func cmdShadow(ctx context.Context, args []string, stdout, stderr io.Writer, env map[string]string) error {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(stderr, "Usage: adrules shadow status --brokers LIST [--ruleset NAME] [--json]")
		return exitError{2}
	}
	fs := flag.NewFlagSet("shadow status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k kafkaFlags
	k.register(fs, "127.0.0.1:9092")
	// The shadow's decisions topic, unless the Kafka flags already name it.
	if fs.Lookup("topic-shadow-decisions") == nil {
		fs.StringVar(&k.topics.ShadowDecisions, "topic-shadow-decisions", k.topics.ShadowDecisions, "the shadow rule set's decisions topic")
	}
	name := fs.String("ruleset", "default", "rule set name")
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	var kf keyFlags
	kf.registerTrust(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: adrules shadow status --brokers LIST [--ruleset NAME] [--json]\n\nCompares the shadow rule set with the live one since the shadow was published:\nagreement per rule, the precision of each side's winner decisions, the test and the promotion verdict.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return exitError{2}
	}
	cl, err := streams.Open(k.connection(env))
	if err != nil {
		return err
	}
	defer cl.Close()
	keys, err := kf.load(env)
	if err != nil {
		return err
	}
	if !keys.Checks() {
		fmt.Fprintln(stderr, "signatures not checked (no --trust or $ADRULES_TRUST): the versions judged may be ones nodes refuse")
	}
	j, err := node.Judge(ctx, cl, keys.Accept, *name, &node.JudgeState{})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(judgementJSON(j))
	}
	printJudgement(stdout, j)
	return nil
}

// shadowJSON is the --json form of a judgement.
type shadowJSON struct {
	Ruleset string         `json:"ruleset"`
	Live    versionJSON    `json:"live"`
	Shadow  *versionJSON   `json:"shadow"` // null: no shadow is published
	Report  *shadow.Report `json:"report,omitempty"`
}

type versionJSON struct {
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
	Since   string `json:"since,omitempty"`   // the shadow's start, RFC 3339
	Invalid string `json:"invalid,omitempty"` // newer shadow versions every node refused (this one runs)
}

// judgementJSON is the --json form of j.
func judgementJSON(j *node.Judgement) shadowJSON {
	v := shadowJSON{Ruleset: j.Name, Live: versionJSON{Version: j.Live.Version, SHA256: j.Live.SHA256}}
	if j.Shadow != nil {
		v.Shadow = &versionJSON{Version: j.Shadow.Version, SHA256: j.Shadow.SHA256, Since: rules.FormatTime(j.Since)}
		if j.Invalid != nil {
			v.Shadow.Invalid = j.Invalid.Error()
		}
		v.Report = &j.Report
	}
	return v
}

// printJudgement writes j for people.
func printJudgement(w io.Writer, j *node.Judgement) {
	if j.Shadow == nil {
		fmt.Fprintf(w, "rule set %s: live v%d (sha256 %s); no shadow is published\n", j.Name, j.Live.Version, short(j.Live.SHA256))
		return
	}
	r, s := j.Report, j.Report.Settings
	fmt.Fprintf(w, "rule set %s: live v%d (sha256 %s), shadow v%d (sha256 %s) since %s\n",
		j.Name, j.Live.Version, short(j.Live.SHA256), j.Shadow.Version, short(j.Shadow.SHA256), rules.FormatTime(j.Since))
	if j.Invalid != nil {
		fmt.Fprintf(w, "warning: a newer shadow version is %v; nodes run, and this judges, v%d\n", j.Invalid, j.Shadow.Version)
	}
	join := "or"
	if s.RequireBoth {
		join = "and"
	}
	wm := "none yet"
	if r.Watermark != 0 {
		wm = rules.FormatTime(r.Watermark)
	}
	fmt.Fprintf(w, "outcomes: a %s decision held when the ad's next %gh of events give roas >= %g %s ctr > %g (the live thresholds); watermark %s\n\n",
		s.WinnerType, s.Horizon.D().Hours(), s.ROASThreshold, join, s.CTRThreshold, wm)

	fmt.Fprintf(w, "%-8s %9s %9s %9s %9s\n", "side", "decisions", "resolved", "held", "precision")
	for _, sd := range []struct {
		name string
		r    shadow.SideReport
	}{{"live", r.Live}, {"shadow", r.Shadow}} {
		fmt.Fprintf(w, "%-8s %9d %9d %9d %9.4f\n", sd.name, sd.r.Decisions, sd.r.Resolved, sd.r.Held, sd.r.Precision)
	}
	fmt.Fprintln(w)
	width := len("rule")
	for _, a := range r.Agreement {
		width = max(width, len(a.Rule))
	}
	fmt.Fprintf(w, "%-*s %9s %9s %11s\n", width, "rule", "both", "live only", "shadow only")
	for _, a := range r.Agreement {
		fmt.Fprintf(w, "%-*s %9d %9d %11d\n", width, a.Rule, a.Both, a.LiveOnly, a.ShadowOnly)
	}
	if len(r.Agreement) == 0 {
		fmt.Fprintln(w, "(no decisions since the shadow's start)")
	}
	fmt.Fprintf(w, "\ntest: z %.3f (critical %.3f at confidence %g), p %.4f; improvement %+.2f%% relative, %+.2f points\n",
		r.Z, r.ZCritical, s.ConfidenceLevel, r.PValue, r.ImprovementPct, r.ImprovementPts)
	fmt.Fprintln(w, "criteria:")
	for _, c := range r.Criteria {
		mark := "met    "
		if !c.Met {
			mark = "not met"
		}
		fmt.Fprintf(w, "  %s  %-14s %s\n", mark, c.Name, c.Detail)
	}
	switch {
	case r.Promote && j.Invalid != nil:
		fmt.Fprintln(w, "verdict: the criteria are met, but a newer shadow version was refused: nothing is promoted until a valid one is published or the shadow is retired")
	case r.Promote && s.AutoPromote:
		fmt.Fprintln(w, "verdict: promote (auto_promote is on: the first node to see it publishes the shadow as the next live version)")
	case r.Promote:
		fmt.Fprintln(w, "verdict: promote (auto_promote is off: publish the shadow's file with adrules config publish)")
	default:
		fmt.Fprintf(w, "verdict: keep the live rule set: %s\n", strings.Join(r.Reasons, "; "))
	}
}
