package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/concord-macp/concord/host/natsnode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/storagetest"
	"github.com/concord-macp/concord/internal/natstest"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// BenchmarkCommit measures commits of 32 sessions written concurrently,
// each waiting for its previous commit, on one node (R1) and on a
// three-node cluster (R3), side by side.
//
//	go test -run '^$' -bench Commit ./host/storage/jetstream/
func BenchmarkCommit(b *testing.B) {
	b.Run("R1", func(b *testing.B) { benchCommit(b, natstest.Single(b), 1) })
	b.Run("R3", func(b *testing.B) { benchCommit(b, natstest.Cluster(b, 3)[0], 3) })
}

func benchCommit(b *testing.B, n *natsnode.Node, replicas int) {
	s := openB(b, n, replicas)
	const sessions = 32
	var wg sync.WaitGroup
	per := b.N/sessions + 1
	b.ResetTimer()
	for i := range sessions {
		wg.Go(func() {
			id := fmt.Sprintf("bench-%02d-0123456789abcdef", i)
			for seq := uint64(1); seq <= uint64(per); seq++ {
				p, err := s.Enqueue(context.Background(), storage.Commit{Session: storagetest.Head(id, seq), Entries: []*storev1.Entry{storagetest.Entry(id, seq)}, SaveState: true})
				if err == nil {
					err = p.Wait(context.Background())
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
