package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/adrules/adrules/rules"
	"github.com/adrules/adrules/streams"
	"github.com/adrules/adrules/versions"
	"gocloud.dev/blob"
)

// Options configure a node. The zero value of each field takes the default
// its doc states; Connection (or Cluster), NodeID, DataDir and a trust
// decision (Keys) are required.
type Options struct {
	// Cluster is the node's connection to Kafka, owned by the caller (the
	// node never closes it). When nil, the node dials Connection and closes
	// that Cluster when it stops.
	Cluster *streams.Cluster
	// Connection: brokers, security, topics and extra client options, when
	// Cluster is nil.
	Connection streams.Connection

	// Group is the consumer group; default "adrules".
	Group string
	// NodeID is unique in the group and stable across restarts (its
	// transactional id is Group-NodeID). Required.
	NodeID string
	// DataDir holds the node's Pebble state (DataDir/state) and the
	// shadow's (DataDir/shadow/vN). Required.
	DataDir string
	// HTTPAddr is where the HTTP server listens (healthz, readyz, the admin
	// API, Metrics); default "127.0.0.1:8080". ":0" picks a port (Node.Addr).
	HTTPAddr string
	// Ruleset is the rule set's name on the config topic; default "default".
	Ruleset string
	// Bootstrap returns the rule set whose document the node publishes as
	// the first version when none was ever published (the --rules file,
	// layered and compiled); it is called only then. Nil: a node that finds
	// nothing published refuses to start.
	Bootstrap func() (*rules.RuleSet, error)
	// BootstrapName names the bootstrap document in errors and logs (the
	// --rules file).
	BootstrapName string
	// Partitions of the topics the node creates; default 4.
	Partitions int
	// CreateTopics creates the missing topics at start.
	CreateTopics bool
	// SessionTimeout and IdleAfter are streams.Options'; 0 takes theirs.
	SessionTimeout, IdleAfter time.Duration

	// Snapshots is the URL of the blob store of the partitions' snapshots
	// (snapshot.Open: "file:///var/lib/adrules/snapshots", "mem://", or a
	// cloud store whose driver the program links in); SnapshotBucket, when
	// set, is used instead (the caller closes it). Snapshots are named
	// under the node's Group. Default none: no snapshot is written or
	// restored (docs/operations.md, Snapshots).
	Snapshots      string
	SnapshotBucket *blob.Bucket
	// SnapshotEvery is how many input records of a partition lie between
	// two of its snapshots; default DefaultSnapshotEvery (when a store is
	// set).
	SnapshotEvery int64
	// SnapshotKeep is how many snapshots of each partition are kept;
	// default snapshot.DefaultKeep.
	SnapshotKeep int

	// Keys: whose versions the node runs and what it signs what it
	// publishes with (its first version, PUT /api/config, promotions).
	Keys versions.Keys
	// AdminToken allows the admin API's writes (Authorization: Bearer);
	// empty: writes are refused.
	AdminToken string
	// HTTP bounds the HTTP server; the zero value is DefaultHTTPLimits().
	HTTP HTTPLimits
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// Started, when set, is called once the HTTP server listens, before the
	// node joins its group (its /readyz says 503 until it owns partitions),
	// from Start's goroutine.
	Started func(*Node)
	// Env is the node's environment, to warn about rule parameters it sets
	// (a node takes them from the config topic only).
	Env map[string]string

	// Logger; default discards.
	Logger *slog.Logger
	// Observer is told what the live pipeline and the node do; default
	// none.
	Observer Observer
	// ShadowObserver is told of the shadow pipeline's batches and version;
	// default none.
	ShadowObserver Observer

	// Clock drives the wall-clock loops (heartbeats, judging rounds,
	// retries, timestamps of heartbeats and claims); default the wall clock.
	Clock Clock
	// HeartbeatEvery is how often the node says which version it runs;
	// default DefaultHeartbeatEvery.
	HeartbeatEvery time.Duration
	// ShadowJudgeEvery is how often the node judges the shadow; default 15s.
	ShadowJudgeEvery time.Duration
	// ShadowRetry is how long a failed shadow pipeline waits before it
	// starts again; default 5s.
	ShadowRetry time.Duration
	// StopTimeout bounds the shutdown once the engine stopped (the shadow's
	// batch, the heartbeat's tombstone, leaving the group); past it, Wait
	// returns anyway: what was left is fenced or aborted by the next
	// session, as after a crash. Default 30s.
	StopTimeout time.Duration
}

// DefaultHeartbeatEvery is how often a node says which version it runs,
// unless Options.HeartbeatEvery says otherwise: what `adrules config
// status` expects.
const DefaultHeartbeatEvery = 2 * time.Second

// HTTPLimits bound the node's HTTP server (docs/operations.md, Limits):
// how long a client may take to send a request and read its answer, how
// long an idle connection stays, how large the headers may be, and how
// many requests without the admin token are served at once.
type HTTPLimits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
	// Unauthenticated is how many requests without a valid admin token
	// (probes aside) are served at once; more are answered 503 at once.
	Unauthenticated int
}

// DefaultHTTPLimits: a rules document of 1 MiB (the body limit) at 35
// KB/s is read within the read timeout.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{ReadHeader: 5 * time.Second, Read: 30 * time.Second, Write: time.Minute, Idle: time.Minute,
		MaxHeaderBytes: 16 << 10, Unauthenticated: 64}
}

// server returns the HTTP server of h with limits l.
func (l HTTPLimits) server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read, WriteTimeout: l.Write,
		IdleTimeout: l.Idle, MaxHeaderBytes: l.MaxHeaderBytes}
}

// withDefaults returns o with its defaults filled in.
func (o Options) withDefaults() Options {
	if o.Group == "" {
		o.Group = "adrules"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:8080"
	}
	if o.Ruleset == "" {
		o.Ruleset = "default"
	}
	if o.Partitions == 0 {
		o.Partitions = 4
	}
	if o.HTTP == (HTTPLimits{}) {
		o.HTTP = DefaultHTTPLimits()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.ShadowObserver == nil {
		o.ShadowObserver = NopObserver{}
	}
	if o.Clock == nil {
		o.Clock = WallClock()
	}
	if o.HeartbeatEvery == 0 {
		o.HeartbeatEvery = DefaultHeartbeatEvery
	}
	if o.ShadowJudgeEvery == 0 {
		o.ShadowJudgeEvery = 15 * time.Second
	}
	if o.ShadowRetry == 0 {
		o.ShadowRetry = 5 * time.Second
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	return o
}

// validate rejects options a node cannot run with.
func (o Options) validate() error {
	if err := o.Keys.Validate(); err != nil {
		return err
	}
	switch {
	case o.NodeID == "":
		return errors.New("node: no node id")
	case o.DataDir == "":
		return errors.New("node: no data directory")
	case o.Cluster == nil && len(o.Connection.Brokers) == 0:
		return streams.ErrNoBrokers
	case o.HTTPAddr == "":
		return fmt.Errorf("node: no HTTP address")
	case o.SnapshotEvery < 0 || o.SnapshotKeep < 0:
		return fmt.Errorf("node: negative snapshot interval (%d) or count (%d)", o.SnapshotEvery, o.SnapshotKeep)
	}
	return nil
}
