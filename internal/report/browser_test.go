package report

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// browser finds a headless-capable Chromium. Without one the test fails on
// CI (.ci/run installs Debian's chromium) and is skipped elsewhere.
func browser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium, chromium-browser or google-chrome on PATH (CI=true; .ci/run installs Debian's chromium)")
	}
	t.Skip("no chromium, chromium-browser or google-chrome on PATH: skipping the browser test (apt-get install chromium to run it)")
	return ""
}

// render opens the page in headless Chromium and returns the DOM after its
// scripts ran, and the browser's log (console messages included).
func render(t *testing.T, bin, page string) (dom, log string) {
	t.Helper()
	// A bound on a hung browser, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	u := url.URL{Scheme: "file", Path: page}
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=5000", "--dump-dom", u.String())
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

var charts = []string{"chart-hours", "chart-budget", "chart-top"}

// problems lists what is wrong with a rendered page: the body's status is
// not "ok", the error box is missing or holds errors, a chart has no
// data-rendered count (or none above 0 when marks are wanted), or the log
// has an uncaught exception.
func problems(dom, log string, wantMarks bool) []string {
	var out []string
	if m := regexp.MustCompile(`<body[^>]*\bdata-status="([^"]*)"`).FindStringSubmatch(dom); m == nil || m[1] != "ok" {
		out = append(out, "body data-status is not ok: "+strings.Join(m, " "))
	}
	if m := regexp.MustCompile(`(?s)<pre id="errors"[^>]*>(.*?)</pre>`).FindStringSubmatch(dom); m == nil {
		out = append(out, "no error box")
	} else if m[1] != "" {
		out = append(out, "errors recorded: "+m[1])
	}
	for _, id := range charts {
		tag := regexp.MustCompile(`<svg[^>]*\bid="` + id + `"[^>]*>`).FindString(dom)
		m := regexp.MustCompile(`\bdata-rendered="(\d+)"`).FindStringSubmatch(tag)
		if m == nil {
			out = append(out, id+": not rendered: "+tag)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); wantMarks && n == 0 {
			out = append(out, id+": no marks drawn")
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Uncaught") {
			out = append(out, "log: "+line)
		}
	}
	return out
}

// TestBrowser opens report.html in a real headless browser: the charts
// render, with marks, and no script error, also with hostile ad ids; an
// empty comparison renders too; and pages broken on purpose are caught,
// showing the check can fail.
func TestBrowser(t *testing.T) {
	bin := browser(t)
	root := t.TempDir()
	bs, cs := twoSides(t, root, hostile, "a4")
	d, err := Compare(bs, cs)
	if err != nil {
		t.Fatal(err)
	}
	d.Meta = Meta{Input: "events.jsonl", Records: 10}
	var full bytes.Buffer
	if err := d.WriteHTML(&full); err != nil {
		t.Fatal(err)
	}

	(&fixture{}).write(t, filepath.Join(root, "empty-b"))
	(&fixture{}).write(t, filepath.Join(root, "empty-c"))
	e, err := Compare(Side{Dir: filepath.Join(root, "empty-b")}, Side{Dir: filepath.Join(root, "empty-c")})
	if err != nil {
		t.Fatal(err)
	}
	var empty bytes.Buffer
	if err := e.WriteHTML(&empty); err != nil {
		t.Fatal(err)
	}

	page := full.String()
	const charts = `<script type="application/json" id="data">`
	if !strings.Contains(page, charts) || !strings.Contains(page, "function topChart(svg, data) {") {
		t.Fatal("the page changed: update the broken variants")
	}
	for _, tc := range []struct {
		name, page string
		wantMarks  bool
		broken     []string // substrings of the problems expected; none for a good page
	}{
		{"report", page, true, nil},
		{"empty", empty.String(), false, nil},
		{"throws", strings.Replace(page, charts, `<script>throw new Error("boom")</script>`+charts, 1), true,
			[]string{"data-status is not ok", "errors recorded: error: Uncaught Error: boom", "log: "}},
		{"chart fails", strings.Replace(page, "function topChart(svg, data) {", "function topChart(svg, data) { data.top.nope.x;", 1), true,
			[]string{"data-status is not ok", "errors recorded: chart-top: TypeError", "chart-top: not rendered"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "report.html")
			if err := os.WriteFile(path, []byte(tc.page), 0o644); err != nil {
				t.Fatal(err)
			}
			dom, log := render(t, bin, path)
			got := problems(dom, log, tc.wantMarks)
			if tc.broken == nil {
				if len(got) > 0 {
					t.Errorf("problems:\n%s\nDOM:\n%s", strings.Join(got, "\n"), dom)
				}
				if !strings.Contains(dom, "</table>") {
					t.Error("no tables in the DOM")
				}
				return
			}
			all := strings.Join(got, "\n")
			for _, want := range tc.broken {
				if !strings.Contains(all, want) {
					t.Errorf("a broken page: problems lack %q:\n%s", want, all)
				}
			}
		})
	}
}
