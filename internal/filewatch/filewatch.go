// Package filewatch notices when files change by polling their content:
// every interval it hashes the files and, when the digest differs from the
// last one loaded, calls the owner's reload function. Polling content (not
// modification times or inotify events) sees every way a file is replaced:
// in place, by rename, or by the symlink swap Kubernetes uses for mounted
// secrets.
package filewatch

import (
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Watcher polls a set of files and calls reload when their content changes.
type Watcher struct {
	paths    []string
	reload   func() error
	log      *slog.Logger
	mu       sync.Mutex
	digest   [sha256.Size]byte
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// Watch starts polling paths every interval; reload runs whenever their
// combined content differs from what the last successful reload saw. The
// files' current content counts as loaded when Watch is called. A reload
// that fails is retried at the next poll and logged once per failing
// streak. interval <= 0 polls never (Check still works).
func Watch(interval time.Duration, paths []string, reload func() error, log *slog.Logger) *Watcher {
	w := &Watcher{paths: paths, reload: reload, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	w.digest, _ = w.sum()
	if interval <= 0 {
		close(w.done)
		return w
	}
	go w.loop(interval)
	return w
}

func (w *Watcher) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		_, err := w.Check()
		if err != nil && !failing {
			w.log.Error("changed file not reloaded; what was loaded before stays in use", "files", w.paths, "err", err)
		}
		failing = err != nil
	}
}

// Check reloads now if the files changed since the last reload, and
// reports whether it did.
func (w *Watcher) Check() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.sum()
	if err != nil {
		return false, err
	}
	if d == w.digest {
		return false, nil
	}
	if err := w.reload(); err != nil {
		return false, err
	}
	w.digest = d
	return true, nil
}

// Reload reloads now, changed or not (for instance on SIGHUP).
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The digest is taken before the reload reads the files: a change in
	// between is seen again by the next poll.
	d, err := w.sum()
	if err != nil {
		return err
	}
	if err := w.reload(); err != nil {
		return err
	}
	w.digest = d
	return nil
}

func (w *Watcher) sum() ([sha256.Size]byte, error) {
	h := sha256.New()
	for _, p := range w.paths {
		f, err := os.Open(p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		h.Write([]byte{0})
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d, nil
}

// Close stops polling and waits for a reload in progress.
func (w *Watcher) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}
