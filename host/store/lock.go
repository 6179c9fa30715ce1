package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrLocked reports a store directory another process has open.
var ErrLocked = errors.New("the store is in use by another process")

// lockFileName is the store's own lock, beside Badger's files. Badger locks
// its directory too, but reports a held lock only as text; taking ours
// first lets Open answer with ErrLocked.
const lockFileName = "concord.lock"

// lockDir creates dir if needed and takes an exclusive advisory lock on its
// lock file. The lock lasts until the returned file is closed (or the
// process ends, however it ends).
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create %q: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open the lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, dir)
		}
		return nil, fmt.Errorf("lock %q: %w", dir, err)
	}
	return f, nil
}
