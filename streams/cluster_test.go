package streams_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterReadAll: a Cluster's shared client produces, and ReadAll reads
// back every record that exists, in partition and offset order, with a
// client of its own; the shared one stays usable after.
func TestClusterReadAll(t *testing.T) {
	brokers, topics := kafkatest.Brokers(t)
	topic := kafkatest.Name(topics, "cluster-read-all")
	ctx := context.Background()
	c, err := streams.Dial(ctx, streams.Connection{Brokers: brokers, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Admin().CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadAll(ctx, topic); err != nil || len(got) != 0 {
		t.Fatalf("empty topic: %d records, %v", len(got), err)
	}
	for i := range 30 {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}
		if err := c.Client().ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.ReadAll(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	next := map[int32]int64{}
	last := int32(-1)
	for _, r := range got {
		if r.Partition < last || r.Offset != next[r.Partition] {
			t.Fatalf("%d@%d after partition %d, offset %d: not in partition and offset order", r.Partition, r.Offset, last, next[r.Partition])
		}
		last, next[r.Partition] = r.Partition, r.Offset+1
		seen[string(r.Value)] = true
	}
	if len(got) != 30 || len(seen) != 30 {
		t.Fatalf("%d records, %d distinct, want 30", len(got), len(seen))
	}
	if c.Topics() != topics {
		t.Fatalf("topics %+v, want %+v", c.Topics(), topics)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClusterRefuses: a connection that cannot work fails when it is made,
// with a reason, not on first use: no brokers, an unknown SASL mechanism, a
// certificate without its key, a CA file that holds none, and brokers that
// do not answer (within Dial's deadline, here the context's).
func TestClusterRefuses(t *testing.T) {
	ca := t.TempDir() + "/ca.pem"
	if err := writeFile(ca, "not a certificate"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn streams.Connection
		want string
	}{
		{streams.Connection{}, "no brokers"},
		{streams.Connection{Brokers: []string{"x:1"}, Security: streams.Security{SASLMechanism: "GSSAPI"}}, `--sasl-mechanism "GSSAPI"`},
		{streams.Connection{Brokers: []string{"x:1"}, Security: streams.Security{TLSCert: "c.pem"}}, "--tls-cert and --tls-key go together"},
		{streams.Connection{Brokers: []string{"x:1"}, Security: streams.Security{TLSCA: ca}}, "no certificate found"},
	} {
		if _, err := streams.Open(tc.conn); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want %q", tc.conn, err, tc.want)
		}
	}
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := streams.Dial(ctx, streams.Connection{Brokers: []string{addr}}); err == nil || !strings.Contains(err.Error(), "cannot reach the brokers") {
		t.Fatalf("Dial of a closed port = %v, want cannot reach the brokers", err)
	}
}

func TestParseBrokers(t *testing.T) {
	got := streams.ParseBrokers(" a:1, ,b:2,")
	if len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Fatalf("ParseBrokers = %q", got)
	}
	if got := streams.ParseBrokers(""); got != nil {
		t.Fatalf("ParseBrokers(\"\") = %q, want none", got)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
