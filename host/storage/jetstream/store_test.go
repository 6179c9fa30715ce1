package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/natsnode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/jetstream"
	"github.com/concord-macp/concord/host/storage/storagetest"
	"github.com/concord-macp/concord/internal/natstest"
)

func openB(b *testing.B, n *natsnode.Node, replicas int) *jetstream.Store {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := jetstream.Open(ctx, jetstream.Options{Conn: natstest.Connect(b, n, "bench"), Prefix: "bench", Writer: "bench", Replicas: replicas, Logger: natstest.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func open(t *testing.T, n *natsnode.Node, prefix, writer string, replicas int) *jetstream.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

// harness opens every store of one run on the same streams (each test
// keeps to data of its own), through handles on nodes a and b.
func harness(a, b *natsnode.Node, replicas int) storagetest.Harness {
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano()%1_000_000_000)
	return storagetest.Harness{
		Open:   func(t *testing.T) storage.Store { return open(t, a, prefix, "writer-a", replicas) },
		Second: func(t *testing.T, _ storage.Store) storage.Store { return open(t, b, prefix, "writer-b", replicas) },
	}
}

// TestContract runs the storage contract against one JetStream node; the
// second handle of the fencing tests is a second connection, as another
// Concord node would hold.
func TestContract(t *testing.T) {
	node := natstest.Single(t)
	storagetest.Run(t, harness(node, node, 1))
}

// TestContractReplicated runs it against a three-node cluster, R3, with the
// two handles on different nodes.
func TestContractReplicated(t *testing.T) {
	nodes := natstest.Cluster(t, 3)
	storagetest.Run(t, harness(nodes[0], nodes[2], 3))
}
