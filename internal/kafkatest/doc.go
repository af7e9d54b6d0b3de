// Package kafkatest holds what the module's Kafka tests (streams, node,
// replay, cmd, internal/bench) share: a cluster (in-process kfake, or
// $KAFKA_BROKERS), producing JSON lines keyed by a field, reading a topic
// as a read_committed consumer, waiting for a group to catch up, and
// comparing outputs across partitionings. And two fixtures that the node's
// tests and the commands' both need: a cluster holding a live rule set, its
// shadow and both sides' decisions (NewShadowCluster), and the forged
// version records a node must refuse (Forge).
//
// # No sleeps
//
// Every wait is for a condition, bounded by a deadline that fails the test.
//
// # A shared cluster
//
// With $KAFKA_BROKERS, tests run side by side on one cluster, and every
// name a test gives carries a prefix of its own: its topics (Brokers), its
// consumer groups and transactional ids (Group, Name). A test that needs a
// broker of its own (to restart it) skips when Shared.
//
// # What it never does
//
// It is imported by tests only (internal/lint checks): no command, node or
// library package depends on it.
package kafkatest
