package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/adrules/adrules/internal/kafkatest"
	"github.com/adrules/adrules/streams"
)

type runningNode struct {
	n      *nodeRun
	cancel context.CancelFunc
	done   chan error
}

func startRunNode(t *testing.T, nc nodeConfig) *runningNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningNode{cancel: cancel, done: make(chan error, 1)}
	started := make(chan *nodeRun, 1)
	go func() { r.done <- runNode(ctx, nc, io.Discard, nil, func(n *nodeRun) { started <- n }) }()
	select {
	case r.n = <-started:
	case err := <-r.done:
		t.Fatalf("node %s: %v", nc.nodeID, err)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runningNode) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("node: %v", err)
	}
	r.cancel = nil
}

// eventually waits for cond, failing the test after 30 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// testNodeConfig is a node's configuration for tests: the test's group,
// the default rules file and rule set, its own data directory, an HTTP
// port of its own.
func testNodeConfig(addrs []string, topics streams.Topics, id, dir string) nodeConfig {
	var nc nodeConfig
	nc.kafka.register(newFlagSet(), strings.Join(addrs, ","))
	nc.kafka.topics = topics
	nc.group, nc.nodeID, nc.dataDir, nc.httpAddr = kafkatest.Group(topics), id, dir, "127.0.0.1:0"
	nc.rulesFile, nc.ruleset, nc.partitions, nc.createTopics = "../../examples/rules.yaml", "default", 4, true
	// Stage 2 judges the last proposals once every source is idle: soon.
	nc.idleAfter = time.Second
	nc.keys = kafkatest.TestKeys()
	return nc
}
