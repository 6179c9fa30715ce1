package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"
)

// runWriters spreads b.N commits over writers goroutines; writer w makes its
// commits, numbered from 1, through commit(w, seq).
func runWriters(b *testing.B, writers int, commit func(w int, seq uint64) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
				if err := commit(w, seq); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkCommit measures durable Commits on disk: one entry with a
// ~300-byte envelope and a snapshot per Commit, each writer its own session.
func BenchmarkCommit(b *testing.B) {
	for _, bc := range []struct {
		name     string
		writers  int
		maxGroup int
	}{
		{"writers=1", 1, 0},
		{"writers=32", 32, 0},
		{"writers=32/ungrouped", 32, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(context.Background(), Options{
				Dir: b.TempDir(), Logger: testLogger(b), MaxGroupCommits: bc.maxGroup,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if n := proto.Size(entry("writer-00", 1).GetEnvelope()); n < 280 || n > 320 {
				b.Fatalf("envelope is %d bytes, want about 300", n)
			}
			ctx := context.Background()
			runWriters(b, bc.writers, func(w int, seq uint64) error {
				id := fmt.Sprintf("writer-%02d", w)
				return s.commitFull(ctx, open(id, seq), entry(id, seq))
			})
			st := s.Stats()
			b.ReportMetric(float64(st.Commits)/float64(st.Groups), "commits/fsync")
		})
	}
}

// BenchmarkBadgerTxn is the baseline without the committer: every commit is
// its own synced Badger transaction holding the same two records, so any
// grouping is Badger's own.
func BenchmarkBadgerTxn(b *testing.B) {
	for _, writers := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db, err := badger.Open(badger.DefaultOptions(b.TempDir()).
				WithSyncWrites(true).WithLogger(badgerLogger{testLogger(b)}).WithMetricsEnabled(false))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runWriters(b, writers, func(w int, seq uint64) error {
				id := fmt.Sprintf("writer-%02d", w)
				ev, err := proto.Marshal(entry(id, seq))
				if err != nil {
					return err
				}
				sv, err := proto.Marshal(open(id, seq))
				if err != nil {
					return err
				}
				return db.Update(func(txn *badger.Txn) error {
					if err := txn.Set(entryKey(id, seq), ev); err != nil {
						return err
					}
					return txn.Set(sessionKey(id), sv)
				})
			})
		})
	}
}

// BenchmarkGuardAdmit measures what the full-disk guard adds to each
// write: one admission and its release, with a real statfs every 100 ms.
// Compare with BenchmarkCommit's time per commit.
func BenchmarkGuardAdmit(b *testing.B) {
	g := newGuard(b.TempDir(), Statfs, geometryFor(1<<40), 0, testLogger(b))
	b.ReportAllocs()
	for b.Loop() {
		if err := g.admit(4096); err != nil {
			b.Fatal(err)
		}
		g.landed(4096)
	}
}
