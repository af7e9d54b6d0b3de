package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
)

// TestForgedVersionsHistory: issue 11, signed versions, and row 9, as the
// config commands see them (package node tests that nodes refuse the same
// records). After v1 and v2, published and signed with the CLI, come by
// hand: an unsigned v3, a v3 signed by an untrusted key, v2's record and
// signature replayed as v4, a shadow's signature on a live v5, and a
// record numbered 9223372036854775807. config history says who signed
// what and leaves the last out; publish and rollback go on at v3 and v4;
// a rollback to a forgery or out of range is refused.
func TestForgedVersionsHistory(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	flags := configFlags(addrs, topics)
	strict := filepath.Join(t.TempDir(), "strict.yaml")
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.045")
	for i, file := range []string{"../../examples/rules.yaml", strict} {
		if out, stderr, err := adrules(t, "", nil, append(append([]string{"config", "publish"}, flags...), file)...); err != nil || !strings.Contains(out, fmt.Sprintf("published default v%d ", i+1)) || !strings.Contains(out, "signed by tester") {
			t.Fatalf("publish v%d: %v %s%s", i+1, err, out, stderr)
		}
	}

	// The forgeries: each a valid document, so that only its signature or
	// its number can refuse it.
	forged := kafkatest.Forge(t, addrs, topics, "../..", kafkatest.TestSigner())
	cl := kafkatest.Client(t, addrs)
	for _, c := range forged.Records() {
		if err := streams.Publish(context.Background(), cl, topics, c); err != nil {
			t.Fatal(err)
		}
	}

	hist, _, err := adrules(t, "", nil, append([]string{"config", "history"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("config history:\n%s", hist)
	for _, want := range []string{
		`(?m)^v1 .*signed by tester key ` + kafkatest.TestSigner().Public().ID() + `$`,
		`(?m)^v2 .*signed by tester key `,
		`(?m)^v3 .*mallory .*unsigned$`,
		`(?m)^v3 .*NOT TRUSTED: key ` + forged.Stranger.Public().ID() + ` \(says mallory\)$`,
		`(?m)^v4 .*BAD SIGNATURE: key `,
		`(?m)^v5 .*BAD SIGNATURE: key `,
	} {
		if !regexp.MustCompile(want).MatchString(hist) {
			t.Errorf("config history does not match %s:\n%s", want, hist)
		}
	}
	if strings.Contains(hist, "9223372036854775807") || strings.Count(hist, "\n") != 6 {
		t.Errorf("config history lists the record out of range, or not six versions:\n%s", hist)
	}

	// Row 9: publish and rollback go on after the highest trusted version.
	if out, stderr, err := adrules(t, "", nil, append(append([]string{"config", "publish"}, flags...), "../../examples/rules.yaml")...); err != nil || !strings.Contains(out, "published default v3 ") {
		t.Fatalf("publish after the forgeries: %v %s%s", err, out, stderr)
	}
	if out, stderr, err := adrules(t, "", nil, append(append([]string{"config", "rollback"}, flags...), "2")...); err != nil || !strings.Contains(out, "published default v4 (the document of v2)") {
		t.Fatalf("rollback after the forgeries: %v %s%s", err, out, stderr)
	}
	// A version nobody trusted is not signed anew by a rollback.
	if _, stderr, err := adrules(t, "", nil, append(append([]string{"config", "rollback"}, flags...), "5")...); exitCode(err) == 0 || !strings.Contains(err.Error()+stderr, "not signed by a trusted key") {
		t.Fatalf("rollback to the forged v5: %v %s", err, stderr)
	}
	if _, _, err := adrules(t, "", nil, append(append([]string{"config", "rollback"}, flags...), "9223372036854775807")...); err == nil || !errors.Is(err, versions.ErrVersionRange) {
		t.Fatalf("rollback to a version out of range: %v", err)
	}
}

// TestRunNeedsATrustList: `adrules run` without a trust list says which
// flag it needs (package node tests the node's refusals).
func TestRunNeedsATrustList(t *testing.T) {
	_, _, err := adrules(t, "", map[string]string{"ADRULES_TRUST": "", "ADRULES_SIGNING_KEY": ""}, "run", "--brokers", "127.0.0.1:1", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--trust FILE") {
		t.Fatalf("adrules run without --trust: %v", err)
	}
}

// TestPublishSigning: config publish needs a signing key, or --unsigned;
// a key the trust list lacks publishes nothing; adrules keygen makes a key
// pair that publishes once trusted, and config history names it.
func TestPublishSigning(t *testing.T) {
	addrs, topics := kafkatest.Brokers(t)
	kafkatest.Setup(t, addrs, topics)
	flags := configFlags(addrs, topics)
	publish := func(env map[string]string, args ...string) (string, string, error) {
		return adrules(t, "", env, append(append([]string{"config", "publish"}, flags...), append(args, "../../examples/rules.yaml")...)...)
	}
	noKey := map[string]string{"ADRULES_SIGNING_KEY": "", "ADRULES_TRUST": ""}
	if _, stderr, err := publish(noKey); exitCode(err) != 1 || !strings.Contains(stderr, "no signing key") {
		t.Fatalf("publish without a key: exit %d %s", exitCode(err), stderr)
	}
	out, stderr, err := publish(noKey, "--unsigned")
	if err != nil || !strings.Contains(out, "published default v1 ") || !strings.Contains(out, "unsigned") || !strings.Contains(stderr, "signatures not checked") {
		t.Fatalf("publish --unsigned: %v %s%s", err, out, stderr)
	}

	dir := t.TempDir()
	out, _, err = adrules(t, "", nil, "keygen", "--out", filepath.Join(dir, "alice"))
	if err != nil || !strings.Contains(out, "alice.pub") {
		t.Fatalf("keygen: %v %s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the private key file: %v %v", fi, err)
	}
	if _, _, err := adrules(t, "", nil, "keygen", "--out", filepath.Join(dir, "alice")); err == nil {
		t.Fatal("keygen wrote over an existing key")
	}
	alice := map[string]string{"ADRULES_SIGNING_KEY": filepath.Join(dir, "alice.key")} // the trust list: testSigner's alone
	if _, stderr, err := publish(alice); exitCode(err) != 1 || !strings.Contains(stderr, "would refuse") {
		t.Fatalf("publish with a key the trust list lacks: exit %d %s", exitCode(err), stderr)
	}
	_, trust := testKeyFiles(t)
	pub, _ := os.ReadFile(filepath.Join(dir, "alice.pub"))
	f, _ := os.OpenFile(trust, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(pub) // a rotation: both keys trusted
	f.Close()
	alice["ADRULES_TRUST"] = trust
	if out, stderr, err := publish(alice); err != nil || !strings.Contains(out, "published default v2 ") || !strings.Contains(out, "signed by alice") {
		t.Fatalf("publish with a trusted key: %v %s%s", err, out, stderr)
	}
	if out, stderr, err := publish(nil); err != nil || !strings.Contains(out, "published default v3 ") || !strings.Contains(out, "signed by tester") {
		t.Fatalf("publish with the other trusted key: %v %s%s", err, out, stderr)
	}
	hist, _, err := adrules(t, "", map[string]string{"ADRULES_TRUST": trust}, append([]string{"config", "history"}, flags...)...)
	if err != nil || !regexp.MustCompile(`(?m)^v1 .* unsigned\n^v2 .* signed by alice key \w{16}\n^v3 .* signed by tester key \w{16}$`).MatchString(hist) {
		t.Fatalf("history: %v\n%s", err, hist)
	}
	// Without a trust list, history says what the records claim.
	hist, _, _ = adrules(t, "", map[string]string{"ADRULES_TRUST": ""}, append([]string{"config", "history"}, flags...)...)
	if !strings.Contains(hist, "signer alice key") || !strings.Contains(hist, "unverified") {
		t.Fatalf("history without a trust list:\n%s", hist)
	}
}

// TestDevSigns: adrules dev makes a publisher key of its own (kept in its
// data directory, the private half mode 0600), signs its first version
// with it and trusts it alone: a version signed with it is run, one signed
// with another key is refused; restarted on the same data, dev keeps its
// key and its version.
func TestDevSigns(t *testing.T) {
	dir := t.TempDir()
	dev := func() (stop func(), kafka, api string) {
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- cmdDev(ctx, []string{"--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", dir,
				"--rules", "../../examples/rules.yaml", "--generate-rate", "0", "--status=false", "--partitions", "1"}, &out, io.Discard, nil)
		}()
		re := regexp.MustCompile(`Kafka on (\S+) [\s\S]*node on http://(\S+) [\s\S]*versions are signed by key`)
		eventually(t, "adrules dev started", func() bool {
			select {
			case err := <-done:
				t.Fatalf("adrules dev: %v\n%s", err, out.String())
			default:
			}
			return re.MatchString(out.String())
		})
		m := re.FindStringSubmatch(out.String())
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("adrules dev: %v", err)
			}
		}, m[1], m[2]
	}
	version := func(api string) float64 {
		resp, err := http.Get("http://" + api + "/api/config")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		v, _ := m["version"].(float64)
		return v
	}
	stop, kafka, api := dev()
	if fi, err := os.Stat(filepath.Join(dir, "publisher.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev's private key: %v %v", fi, err)
	}
	devKey, err := loadSigner(filepath.Join(dir, "publisher.key"))
	if err != nil {
		t.Fatal(err)
	}
	devEnv := map[string]string{"ADRULES_SIGNING_KEY": filepath.Join(dir, "publisher.key"), "ADRULES_TRUST": filepath.Join(dir, "publisher.pub")}
	hist, _, err := adrules(t, "", devEnv, "config", "history", "--brokers", kafka)
	if err != nil || !regexp.MustCompile(`(?m)^v1 .*bootstrap:dev .*signed by dev key `+devKey.Public().ID()+`$`).MatchString(hist) {
		t.Fatalf("dev's first version: %v\n%s", err, hist)
	}
	strict := filepath.Join(t.TempDir(), "strict.yaml")
	writeReplaced(t, "../../examples/rules.yaml", strict, "ctr_threshold: 0.03", "ctr_threshold: 0.045")
	if out, stderr, err := adrules(t, "", devEnv, "config", "publish", "--brokers", kafka, strict); err != nil || !strings.Contains(out, "v2") {
		t.Fatalf("publish with dev's key: %v %s%s", err, out, stderr)
	}
	eventually(t, "dev on v2", func() bool { return version(api) == 2 })
	// testSigner's key, trusted by the publisher but not by dev.
	if out, stderr, err := adrules(t, "", nil, "config", "publish", "--brokers", kafka, "../../examples/rules.yaml"); err != nil || !strings.Contains(out, "v3") {
		t.Fatalf("publish with another key: %v %s%s", err, out, stderr)
	}
	eventually(t, "dev refusing v3", func() bool {
		resp, err := http.Get("http://" + api + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return regexp.MustCompile(`(?m)^adrules_config_refused_total [1-9]`).Match(b)
	})
	if v := version(api); v != 2 {
		t.Fatalf("dev runs v%v after a version signed by another key, want 2", v)
	}
	stop()

	stop, _, api = dev()
	defer stop()
	if v := version(api); v != 2 {
		t.Fatalf("dev restarted on its data runs v%v, want 2", v)
	}
	again, err := loadSigner(filepath.Join(dir, "publisher.key"))
	if err != nil || again.Public().ID() != devKey.Public().ID() {
		t.Fatalf("dev changed its key on a restart: %v", err)
	}
}
