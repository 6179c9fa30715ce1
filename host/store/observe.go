package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Hooks let a caller time and trace the store's writes without the store
// depending on a metrics or tracing library. Each hook runs on the path of
// a write and must be fast; nil hooks cost nothing.
type Hooks struct {
	// Commit is called as a Commit is queued, with the caller's context;
	// the function it returns, when not nil, is called once that commit is
	// durable or has failed, on the committer's goroutine.
	Commit func(ctx context.Context) (done func(err error))
	// Group is called after each synced transaction with what it carried.
	Group func(GroupStats)
}

// GroupStats describe one synced transaction of the committer.
type GroupStats struct {
	// Commits and Entries count the Commits and log entries it carried.
	Commits, Entries int
	// Bytes is the rough encoded size of its keys and values.
	Bytes int
	// Duration is how long the transaction's commit (and fsync) took.
	Duration time.Duration
	// Err is why the transaction failed; nil when it is durable.
	Err error
}

// Size reports the bytes the database takes on disk: its LSM (the tables,
// and the write-ahead logs of the memtables not yet flushed into tables)
// and its value log (both zero in memory). It reads the directory, since
// Badger's own counters are process-global and switched off here, and
// counts allocated blocks, since Badger preallocates its value log as a
// large sparse file.
func (s *Store) Size() (lsm, vlog int64, err error) {
	if s.dir == "" {
		return 0, 0, nil
	}
	files, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("store: size: %w", err)
	}
	for _, f := range files {
		info, err := f.Info()
		if err != nil {
			continue // removed by a compaction meanwhile
		}
		switch filepath.Ext(f.Name()) {
		case ".sst", ".mem":
			lsm += onDisk(info)
		case ".vlog":
			vlog += onDisk(info)
		}
	}
	return lsm, vlog, nil
}

// onDisk is the space a file takes: its allocated blocks where the system
// reports them, its length otherwise.
func onDisk(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
