package streams_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/adrules/adrules/streams"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFetchErrors: which errors of a poll stop a node. A lost membership,
// a rebalance, a coordinator moving or a connection lost (a broker that
// restarted) never do: the client rejoins or retries. What no rejoin
// mends (authorization, another process with the node's id) does.
func TestFetchErrors(t *testing.T) {
	group := func(err error) error { return &kgo.ErrGroupSession{Err: err} }
	for _, c := range []struct {
		err  error
		stop bool
	}{
		{group(kerr.UnknownMemberID), false},
		{group(kerr.IllegalGeneration), false},
		{group(kerr.RebalanceInProgress), false},
		{group(kerr.NotCoordinator), false},
		{group(kerr.CoordinatorNotAvailable), false},
		{group(kerr.CoordinatorLoadInProgress), false},
		{group(kerr.FencedMemberEpoch), false},
		{group(&net.OpError{Op: "dial", Err: errors.New("connection refused")}), false},
		{group(io.EOF), false},
		{kerr.NotLeaderForPartition, false},
		{kerr.UnknownTopicOrPartition, false},
		{fmt.Errorf("fetch: %w", kerr.UnknownMemberID), false},
		{group(kerr.FencedInstanceID), true},
		{group(kerr.GroupAuthorizationFailed), true},
		{kerr.TopicAuthorizationFailed, true},
		{group(kerr.InvalidSessionTimeout), true},
	} {
		if got := streams.StopsNode(c.err); got != c.stop {
			t.Errorf("%v: stops the node %v, want %v", c.err, got, c.stop)
		}
	}
}
