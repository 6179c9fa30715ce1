package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/natsnode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/jetstream"
	"github.com/concord-macp/concord/host/storage/storagetest"
	"github.com/concord-macp/concord/internal/natstest"
)

func open(t *testing.T, n *natsnode.Node, prefix, writer string, replicas int) *jetstream.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := jetstream.Open(ctx, jetstream.Options{
		Conn: natstest.Connect(t, n, writer), Prefix: prefix, Writer: writer, Replicas: replicas, Logger: natstest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestContract runs the storage contract against one JetStream node; the
// second handle of the fencing tests is a second connection, as another
// Concord node would hold.
func TestContract(t *testing.T) {
	node := natstest.Single(t)
	prefixes := map[storage.Store]string{}
	n := 0
	storagetest.Run(t, storagetest.Harness{
		Open: func(t *testing.T) storage.Store {
			n++
			prefix := "t" + string(rune('a'+n%26)) + time.Now().Format("150405")
			s := open(t, node, prefix, "writer-a", 1)
			prefixes[s] = prefix
			return s
		},
		Second: func(t *testing.T, s storage.Store) storage.Store {
			return open(t, node, prefixes[s], "writer-b", 1)
		},
	})
}

// TestContractReplicated runs it against a three-node cluster, R3, with the
// two handles on different nodes.
func TestContractReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	nodes := natstest.Cluster(t, 3)
	prefixes := map[storage.Store]string{}
	n := 0
	storagetest.Run(t, storagetest.Harness{
		Open: func(t *testing.T) storage.Store {
			n++
			prefix := "r" + string(rune('a'+n%26)) + time.Now().Format("150405")
			s := open(t, nodes[0], prefix, "writer-a", 3)
			prefixes[s] = prefix
			return s
		},
		Second: func(t *testing.T, s storage.Store) storage.Store {
			return open(t, nodes[2], prefixes[s], "writer-b", 3)
		},
	})
}
