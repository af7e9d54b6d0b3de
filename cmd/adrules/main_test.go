package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// adrules runs the command in-process and returns its output and error.
// Unless env says otherwise, the command signs with testSigner's key and
// trusts it ($ADRULES_SIGNING_KEY, $ADRULES_TRUST), as the test nodes do.
func adrules(t *testing.T, stdin string, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	_, hasKey := env["ADRULES_SIGNING_KEY"]
	_, hasTrust := env["ADRULES_TRUST"]
	if !hasKey || !hasTrust {
		key, trust := testKeyFiles(t)
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		if !hasKey {
			env["ADRULES_SIGNING_KEY"] = key
		}
		if !hasTrust {
			env["ADRULES_TRUST"] = trust
		}
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb, env)
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	if ee, ok := err.(exitError); ok {
		return ee.code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nrules:\n  - id: r1\n    when: ad.ctr > 0.03 && w24h.roaz > 3\n    emit: {type: t}\n  - id: r2\n    when: ad.ctr > 1\n    cooldwn: 6h\n    emit: {type: t}\n"), 0o644)

	out, _, err := adrules(t, "", nil, "check", "../../examples/rules.yaml", "../../config/testdata/learning_config.yaml")
	if exitCode(err) != 0 || strings.Count(out, ": ok:") != 2 {
		t.Fatalf("valid files: exit %d, output %q", exitCode(err), out)
	}
	_, stderr, err := adrules(t, "", nil, "check", "../../examples/rules.yaml", bad)
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1", exitCode(err))
	}
	if !strings.Contains(stderr, bad+":8:5: ") || !strings.Contains(stderr, "cooldwn") {
		t.Errorf("no FILE:LINE:COL for the unknown key in:\n%s", stderr)
	}
	if _, _, err := adrules(t, "", nil, "check"); exitCode(err) != 2 {
		t.Errorf("no files: exit %d, want 2", exitCode(err))
	}
	// Once the unknown key is fixed, the expression typo shows with its rule id.
	os.WriteFile(bad, []byte("name: x\nrules:\n  - id: r1\n    when: ad.ctr > 0.03 && w24h.roaz > 3\n    emit: {type: t}\n"), 0o644)
	_, stderr, _ = adrules(t, "", nil, "check", bad)
	if !strings.Contains(stderr, bad+":4:33: rule r1: when: the window has no field roaz") || !strings.Contains(stderr, "roaz") {
		t.Errorf("expression error:\n%s", stderr)
	}
}

// TestBacktestDeterministic: the same inputs give byte-identical output
// files; standard input works as --input -.
func TestBacktestDeterministic(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	actions := filepath.Join(dir, "actions.jsonl")
	if _, _, err := adrules(t, "", nil, "gen", "--seed", "3", "--bad-pct", "1", "--dup-pct", "2", "--out", events, "--actions", actions, "--proposals", "200"); err != nil {
		t.Fatal(err)
	}
	outs := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}
	for i, out := range outs {
		args := []string{"backtest", "--rules", "../../examples/rules.yaml", "--input", events, "--actions", actions, "--out", out}
		stdin := ""
		if i == 2 {
			data, _ := os.ReadFile(events)
			stdin = string(data)
			args[4] = "-"
		}
		_, stderr, err := adrules(t, stdin, nil, args...)
		if err != nil {
			t.Fatalf("backtest: %v\n%s", err, stderr)
		}
		for _, want := range []string{"events:", "rule winner", "verdicts:", "events/s"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("summary lacks %q:\n%s", want, stderr)
			}
		}
	}
	for _, name := range []string{"decisions.jsonl", "actions.jsonl", "dlq.jsonl"} {
		a, _ := os.ReadFile(filepath.Join(outs[0], name))
		b, _ := os.ReadFile(filepath.Join(outs[1], name))
		if len(a) == 0 {
			t.Fatalf("%s is empty: the comparison would prove nothing", name)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs over the same input", name)
		}
		c, _ := os.ReadFile(filepath.Join(outs[2], name))
		// From stdin, only the input's name ("-") differs.
		if name == "decisions.jsonl" && !bytes.Equal(bytes.ReplaceAll(a, []byte(events), []byte("-")), c) {
			t.Errorf("%s from standard input differs", name)
		}
	}
}

func TestBacktestRefusesBadRules(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - id: r\n    when: ad.nope\n    emit: {type: t}\n"), 0o644)
	_, stderr, err := adrules(t, "", nil, "backtest", "--rules", bad, "--input", "-", "--out", dir)
	if exitCode(err) != 1 || !strings.Contains(stderr, bad+":3:") {
		t.Fatalf("exit %d, stderr %q", exitCode(err), stderr)
	}
}

func TestGenDeterministic(t *testing.T) {
	a, _, err := adrules(t, "", nil, "gen", "--seed", "5", "--events", "2000", "--bad-pct", "3")
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := adrules(t, "", nil, "gen", "--seed", "5", "--events", "2000", "--bad-pct", "3")
	c, _, _ := adrules(t, "", nil, "gen", "--seed", "6", "--events", "2000", "--bad-pct", "3")
	if strings.Count(a, "\n") != 2000 || a != b || a == c {
		t.Fatalf("gen: %d lines; same seed equal %v; other seed differs %v", strings.Count(a, "\n"), a == b, a != c)
	}
}

func TestEnvironmentLayering(t *testing.T) {
	// The development overlay lowers min_impressions; the hash changes with it,
	// and a predecessor variable changes it again.
	hash := func(env map[string]string, args ...string) string {
		out, stderr, err := adrules(t, "", env, append([]string{"check"}, args...)...)
		if err != nil {
			t.Fatalf("check: %v %s", err, stderr)
		}
		return out[strings.LastIndex(out, "sha256 "):]
	}
	base := hash(nil, "../../examples/rules.yaml")
	dev := hash(map[string]string{"ADRULES_ENV": "development"}, "../../examples/rules.yaml")
	devFlag := hash(nil, "--env", "development", "../../examples/rules.yaml")
	old := hash(map[string]string{"ENVIRONMENT": "development"}, "../../examples/rules.yaml")
	v := hash(map[string]string{"WINNER_CTR_THRESHOLD": "0.05"}, "../../examples/rules.yaml")
	if base == dev || dev != devFlag || dev != old || v == base {
		t.Fatalf("hashes: base %s dev %s --env %s ENVIRONMENT %s var %s", base, dev, devFlag, old, v)
	}
}

// TestDemo: the demo backtests a generated week, then compares a looser
// CTR threshold with the rules as they are and writes the report.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := adrules(t, "", nil, "demo", "--rules", "../../examples/rules.yaml", "--dir", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(out, "First winners found:") || !strings.Contains(out, "gained rag_index_winner") {
		t.Fatalf("the demo does not show the winners and the ads the looser threshold gains:\n%s", out)
	}
	for _, f := range []string{"out/decisions.jsonl", "compare/diff.jsonl", "compare/report.html", "compare/report.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("no %s: %v", f, err)
		}
	}
}
