// Package lint holds tests that keep the architecture of DESIGN.md section 7:
// imports point one way, rules do no I/O and read no clock, and only the
// command touches Prometheus.
package lint

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/adrules/adrules"

// list runs go list with a template over a package.
func list(t *testing.T, format, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", format, module+"/"+pkg)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func root(t *testing.T) string {
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestImportDirections(t *testing.T) {
	for _, tc := range []struct {
		pkg        string
		transitive bool     // check every dependency, not only direct imports
		forbidden  []string // substrings of import paths
	}{
		{"rules", false, []string{"os", "net", "io/fs", "log", "log/slog", "math/rand", "twmb/franz-go", "cockroachdb/pebble", "prometheus", module + "/engine", module + "/state", module + "/streams"}},
		{"rules", true, []string{"twmb/franz-go", "cockroachdb/pebble", "prometheus"}},
		{"config", false, []string{"os", "net", module + "/"}},
		{"engine", true, []string{"twmb/franz-go", "cockroachdb/pebble", "prometheus", module + "/state", module + "/streams"}},
		{"state", true, []string{"twmb/franz-go", "prometheus", module + "/engine", module + "/streams"}},
		// snapshot keeps state's snapshots in a blob store: never Kafka,
		// the engine, the node or metrics.
		{"snapshot", true, []string{"twmb/franz-go", "prometheus", module + "/engine", module + "/streams", module + "/node", module + "/cmd/", module + "/internal/"}},
		{"versions", false, []string{"os", "net", "io/fs", "log", "log/slog", "math/rand", "twmb/franz-go", "cockroachdb/pebble", "prometheus"}},
		{"versions", true, []string{"twmb/franz-go", "cockroachdb/pebble", "prometheus", module + "/engine", module + "/state", module + "/streams", module + "/internal/"}},
		// replay may import engine, streams, versions, rules and franz-go.
		{"replay", false, []string{module + "/state", module + "/internal/", module + "/config", module + "/cmd/", "cockroachdb/pebble", "prometheus/client_golang"}},
		{"replay", true, []string{"cockroachdb/pebble", "prometheus/client_golang", module + "/state", module + "/internal/"}},
		// node is library code: never Prometheus (its adapter is
		// node/nodeprom), never the command.
		{"node", true, []string{"prometheus", module + "/cmd/", module + "/node/nodeprom"}},
		{"node/nodeprom", false, []string{"twmb/franz-go", "cockroachdb/pebble", module + "/state", module + "/streams", module + "/cmd/"}},
		// The command turns flags into options and prints: the engine and
		// the state are the node's and the backtest's business.
		{"cmd/adrules", false, []string{module + "/engine", module + "/state", "cockroachdb/pebble"}},
		// streams is an adapter others build on: never the node, the
		// replay or the command.
		{"streams", false, []string{module + "/node", module + "/replay", module + "/cmd/", "prometheus"}},
	} {
		format := "{{join .Imports \" \"}}"
		if tc.transitive {
			format = "{{join .Deps \" \"}}"
		}
		for _, imp := range list(t, format, tc.pkg) {
			for _, bad := range tc.forbidden {
				if imp == bad || (strings.Contains(bad, "/") && contains(imp, bad)) {
					t.Errorf("%s imports %s (forbidden: %s)", tc.pkg, imp, bad)
				}
			}
		}
	}
}

// TestVersionsImportsOnlyConfigAndRules keeps versions pure: of the module,
// it imports config and rules only; else the standard library.
func TestVersionsImportsOnlyConfigAndRules(t *testing.T) {
	for _, imp := range list(t, "{{join .Imports \" \"}}", "versions") {
		switch {
		case imp == module+"/config" || imp == module+"/rules":
		case strings.Contains(strings.Split(imp, "/")[0], "."):
			t.Errorf("versions imports %s; it may import only config, rules and the standard library", imp)
		}
	}
}

// TestStreamsImportsNoInternal: streams is an adapter others build on; it
// never depends on the module's internal packages.
func TestStreamsImportsNoInternal(t *testing.T) {
	for _, imp := range list(t, "{{join .Deps \" \"}}", "streams") {
		if strings.HasPrefix(imp, module+"/internal/") {
			t.Errorf("streams depends on %s: it may import no internal package", imp)
		}
	}
}

// TestKafkatestInTestsOnly: internal/kafkatest is for tests; no package's
// own code imports it.
func TestKafkatestInTestsOnly(t *testing.T) {
	lines := list(t, `{{.ImportPath}}={{join .Deps ","}}`, "...")
	if len(lines) < 10 {
		t.Fatalf("go list found %d packages", len(lines))
	}
	for _, line := range lines {
		pkg, deps, _ := strings.Cut(line, "=")
		if strings.HasPrefix(pkg, module+"/internal/kafkatest") {
			continue
		}
		for _, d := range strings.Split(deps, ",") {
			if strings.HasPrefix(d, module+"/internal/kafkatest") {
				t.Errorf("%s depends on %s, which is for tests only", pkg, d)
			}
		}
	}
}

// TestConfigImportsOnlyYAML keeps config to the standard library and yaml.v3.
func TestConfigImportsOnlyYAML(t *testing.T) {
	for _, imp := range list(t, "{{join .Imports \" \"}}", "config") {
		if strings.Contains(strings.Split(imp, "/")[0], ".") && imp != "gopkg.in/yaml.v3" {
			t.Errorf("config imports %s; it may import only the standard library and gopkg.in/yaml.v3", imp)
		}
	}
}

// TestNoClockInRules greps the non-test sources of rules, config and
// versions for reads of the wall clock and for randomness, as pebble's
// lint tests grep for fmt.Errorf.
func TestNoClockInRules(t *testing.T) {
	forbidden := regexp.MustCompile(`time\.Now\(|time\.Since\(|rand\.`)
	for _, dir := range []string{"rules", "config", "versions"} {
		files, _ := filepath.Glob(filepath.Join(root(t), dir, "*.go"))
		if len(files) == 0 {
			t.Fatalf("no sources in %s", dir)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			for n := 1; sc.Scan(); n++ {
				line := sc.Text()
				if strings.HasPrefix(strings.TrimSpace(line), "//") {
					continue
				}
				if forbidden.MatchString(line) {
					t.Errorf("%s:%d: %s reads the clock or randomness: %s", f, n, dir, strings.TrimSpace(line))
				}
			}
		}
	}
}

// TestOnlyCmdImportsPrometheus walks every package of the module: only
// cmd/adrules (the registry) and node/nodeprom (the adapter) import
// Prometheus.
func TestOnlyCmdImportsPrometheus(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], module+"/cmd/") || f[0] == module+"/node/nodeprom" {
			continue
		}
		for _, imp := range f[1:] {
			if strings.Contains(imp, "prometheus/client_golang") && !strings.Contains(imp, "testutil") {
				t.Errorf("%s imports %s: only cmd and node/nodeprom may (metrics are an adapter on the observers)", f[0], imp)
			}
		}
	}
}
