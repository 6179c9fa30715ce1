package store

import (
	"context"
	"errors"
	"sync"
	"testing"
)

type ctxKey struct{}

func TestHooksSeeEveryCommitAndGroup(t *testing.T) {
	var (
		mu      sync.Mutex
		started []string
		ended   []error
		groups  []GroupStats
	)
	s, err := Open(context.Background(), Options{InMemory: true, Logger: testLogger(t), Hooks: Hooks{
		Commit: func(ctx context.Context) func(error) {
			mu.Lock()
			started = append(started, ctx.Value(ctxKey{}).(string))
			mu.Unlock()
			return func(err error) {
				mu.Lock()
				ended = append(ended, err)
				mu.Unlock()
			}
		},
		Group: func(g GroupStats) {
			mu.Lock()
			groups = append(groups, g)
			mu.Unlock()
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx := context.WithValue(context.Background(), ctxKey{}, "caller")
	if err := s.commitFull(ctx, open("a", 3), entries("a", 1, 3)...); err != nil {
		t.Fatal(err)
	}
	if err := s.commitFull(ctx, open("b", 1), entries("b", 1, 1)...); err != nil {
		t.Fatal(err)
	}
	// Out of sequence: the commit fails and its hook hears why.
	err = s.commitFull(ctx, open("a", 5), entries("a", 5, 5)...)
	if !errors.Is(err, ErrSequence) {
		t.Fatalf("out-of-sequence commit: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 3 || started[0] != "caller" {
		t.Fatalf("Commit hook saw %v", started)
	}
	if len(ended) != 3 || ended[0] != nil || ended[1] != nil || !errors.Is(ended[2], ErrSequence) {
		t.Fatalf("commit outcomes %v", ended)
	}
	var commits, entryCount int
	for _, g := range groups {
		if g.Err != nil || g.Bytes <= 0 || g.Duration <= 0 {
			t.Fatalf("group %+v", g)
		}
		commits += g.Commits
		entryCount += g.Entries
	}
	if commits != 2 || entryCount != 4 {
		t.Fatalf("groups carried %d commits and %d entries, want 2 and 4: %+v", commits, entryCount, groups)
	}
}

func TestSizeOnDisk(t *testing.T) {
	s := openDisk(t, t.TempDir())
	defer func() { _ = s.Close() }()
	if err := s.commitFull(context.Background(), open("a", 2), entries("a", 1, 2)...); err != nil {
		t.Fatal(err)
	}
	lsm, vlog, err := s.Size()
	// The entries are in the memtable's write-ahead log until a flush.
	if err != nil || lsm <= 0 || vlog <= 0 {
		t.Fatalf("Size() = %d, %d, %v; want the write-ahead log and a value log on disk", lsm, vlog, err)
	}
}

func TestSizeInMemory(t *testing.T) {
	lsm, vlog, err := openMem(t).Size()
	if err != nil || lsm != 0 || vlog != 0 {
		t.Fatalf("Size() in memory = %d, %d, %v", lsm, vlog, err)
	}
}
