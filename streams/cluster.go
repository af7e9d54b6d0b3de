package streams

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security is how clients encrypt and authenticate: TLS (with an optional
// CA and client certificate) and SASL.
type Security struct {
	// TLS connects with TLS; a CA or a client certificate implies it.
	TLS bool
	// TLSCA is a PEM file of the CA to trust (default: the system's).
	TLSCA string
	// TLSCert and TLSKey are a PEM client certificate and its key, for
	// mTLS; they go together.
	TLSCert, TLSKey string
	// SASLMechanism is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (any case) or
	// empty for none.
	SASLMechanism          string
	SASLUser, SASLPassword string
}

// ClientOpts returns the franz-go options of s: a TLS dialer, a SASL
// mechanism. Files are read when it is called.
func (s Security) ClientOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.TLS || s.TLSCA != "" || s.TLSCert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.TLSCA != "" {
			pem, err := os.ReadFile(s.TLSCA)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s: no certificate found", s.TLSCA)
			}
			cfg.RootCAs = pool
		}
		if (s.TLSCert == "") != (s.TLSKey == "") {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		if s.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("--sasl-mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	return opts, nil
}

// Connection says how to reach a cluster and what its topics are called.
type Connection struct {
	// Brokers to bootstrap from.
	Brokers []string
	// Security of every client.
	Security Security
	// Topics; the zero value is DefaultTopics().
	Topics Topics
	// ClientOpts are added to every client after the security options (a
	// dialer, a logger; tests add kfake's settings).
	ClientOpts []kgo.Opt
}

// ParseBrokers splits a comma-separated broker list, dropping blanks.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Cluster owns the one long-lived client through which a command or a node
// talks to a cluster: metadata, admin requests, produce. What needs a client
// of its own (a group member, a consumer of given partitions) gets it from
// NewClient, with the same brokers and security. A Cluster is safe for
// concurrent use; Close closes the shared client.
type Cluster struct {
	conn Connection
	opts []kgo.Opt // seed brokers, security, conn.ClientOpts
	cl   *kgo.Client
	adm  *kadm.Client
}

// ErrNoBrokers is returned by Open for a Connection without brokers.
var ErrNoBrokers = errors.New("no brokers: set --brokers")

// Open builds the shared client of conn. It does not wait for the brokers:
// Ping does, and Dial does both.
func Open(conn Connection) (*Cluster, error) {
	if len(conn.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	if conn.Topics == (Topics{}) {
		conn.Topics = DefaultTopics()
	}
	sec, err := conn.Security.ClientOpts()
	if err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(conn.Brokers...)}, sec...)
	opts = append(opts, conn.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &Cluster{conn: conn, opts: slices.Clip(opts), cl: cl, adm: kadm.NewClient(cl)}, nil
}

// dialTimeout bounds Dial's first contact with the brokers.
const dialTimeout = 30 * time.Second

// Dial opens conn and checks within 30 seconds that the brokers answer and
// accept the credentials, so that a wrong address or password fails at
// once instead of retrying forever.
func Dial(ctx context.Context, conn Connection) (*Cluster, error) {
	c, err := Open(conn)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Ping checks that the brokers answer and accept the credentials.
func (c *Cluster) Ping(ctx context.Context) error {
	if err := c.cl.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach the brokers: %w", err)
	}
	return nil
}

// Client is the shared client. Its owner is the Cluster: do not close it,
// and do not give it consume or group options (use NewClient).
func (c *Cluster) Client() *kgo.Client { return c.cl }

// Admin is an admin client over the shared client.
func (c *Cluster) Admin() *kadm.Client { return c.adm }

// Topics are the topic names of the connection.
func (c *Cluster) Topics() Topics { return c.conn.Topics }

// Brokers are the seed brokers.
func (c *Cluster) Brokers() []string { return slices.Clone(c.conn.Brokers) }

// Opts are the options every client of the cluster starts with: seed
// brokers, security and the connection's ClientOpts (for a Node's
// Options.ClientOpts, say).
func (c *Cluster) Opts() []kgo.Opt { return c.opts }

// NewClient returns a client of its own for the same cluster, with opts
// after the cluster's: a group member, a consumer of given partitions. The
// caller closes it.
func (c *Cluster) NewClient(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(slices.Clip(c.opts), opts...)...)
}

// Close closes the shared client.
func (c *Cluster) Close() { c.cl.Close() }

// ReadAll reads every record of topic that exists when it is called, in
// partition and offset order.
func (c *Cluster) ReadAll(ctx context.Context, topic string) ([]*kgo.Record, error) {
	starts, err := c.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = o.Err
			return
		}
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if lerr != nil {
		return nil, lerr
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := c.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	byPart := map[int32][]*kgo.Record{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset < end {
				byPart[r.Partition] = append(byPart[r.Partition], r)
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
			}
		})
	}
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out, nil
}
