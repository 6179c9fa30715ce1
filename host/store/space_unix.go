//go:build unix

package store

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Statfs measures the filesystem holding dir with statfs(2).
func Statfs(dir string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return Space{Free: uint64(st.Bavail) * bs, Total: uint64(st.Blocks) * bs}, nil
}

// allocated is the disk space file occupies: its allocated blocks, not its
// length, since Badger's files are sparse.
func allocated(file string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", file, err)
	}
	return uint64(st.Blocks) * 512, nil
}
