package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestSASL: the Kafka commands authenticate with SASL; a wrong password is
// refused.
func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ad-metrics"), kfake.EnableSASL(), kfake.Superuser(mech, "admin", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			file := filepath.Join(t.TempDir(), "e.jsonl")
			os.WriteFile(file, []byte(`{"event_id":"e","ts":1,"account_id":"a","ad_id":"x","impressions":1,"clicks":0,"spend":0}`+"\n"), 0o644)
			args := []string{"produce", "--brokers", c.ListenAddrs()[0], "--sasl-mechanism", mech, "--sasl-user", "admin", file}
			if _, stderr, err := adrules(t, "", map[string]string{"ADRULES_SASL_PASSWORD": "s3cret"}, args...); err != nil {
				t.Fatalf("with the password: %v %s", err, stderr)
			}
			if _, _, err := adrules(t, "", map[string]string{"ADRULES_SASL_PASSWORD": "wrong"}, args...); err == nil {
				t.Fatal("a wrong password was accepted")
			}
		})
	}
}

// TestTLS: the Kafka commands connect with TLS, trusting --tls-ca.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ad-metrics"), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	file := filepath.Join(dir, "e.jsonl")
	os.WriteFile(file, []byte(`{"event_id":"e","ts":1,"account_id":"a","ad_id":"x","impressions":1,"clicks":0,"spend":0}`+"\n"), 0o644)
	if _, stderr, err := adrules(t, "", nil, "produce", "--brokers", c.ListenAddrs()[0], "--tls-ca", ca, file); err != nil || !strings.Contains(stderr, "produced 1") {
		t.Fatalf("produce over TLS: %v %s", err, stderr)
	}
}
