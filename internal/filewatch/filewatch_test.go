package filewatch_test

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concord-macp/concord/internal/filewatch"
)

func TestWatchReloadsOnContentChangeOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int32
	fail := atomic.Bool{}
	w := filewatch.Watch(-1, []string{path}, func() error {
		if fail.Load() {
			return errors.New("broken")
		}
		reloads.Add(1)
		return nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer w.Close()

	if changed, err := w.Check(); changed || err != nil || reloads.Load() != 0 {
		t.Fatalf("unchanged file: changed=%v err=%v reloads=%d", changed, err, reloads.Load())
	}
	// Same content, new modification time: nothing to do.
	now := time.Now().Add(time.Hour)
	_ = os.Chtimes(path, now, now)
	if changed, _ := w.Check(); changed {
		t.Fatal("a touched file counted as changed")
	}
	_ = os.WriteFile(path, []byte("two"), 0o600)
	fail.Store(true)
	if changed, err := w.Check(); changed || err == nil {
		t.Fatalf("failing reload: changed=%v err=%v", changed, err)
	}
	fail.Store(false)
	// The failed reload is retried.
	if changed, err := w.Check(); !changed || err != nil || reloads.Load() != 1 {
		t.Fatalf("retry: changed=%v err=%v reloads=%d", changed, err, reloads.Load())
	}
	if err := w.Reload(); err != nil || reloads.Load() != 2 {
		t.Fatalf("forced reload: %v, %d reloads", err, reloads.Load())
	}
	_ = os.Remove(path)
	if _, err := w.Check(); err == nil {
		t.Fatal("a missing file checked fine")
	}
}

func TestWatchPolls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(path, []byte("one"), 0o600)
	done := make(chan struct{}, 1)
	w := filewatch.Watch(10*time.Millisecond, []string{path}, func() error {
		select {
		case done <- struct{}{}:
		default:
		}
		return nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer w.Close()
	_ = os.WriteFile(path, []byte("two"), 0o600)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller never reloaded")
	}
}
