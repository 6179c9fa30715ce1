package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestOpenAfterInterruptedLogCreation: a kill while Badger creates a value
// log or a write-ahead log leaves an empty file, which Badger alone cannot
// open; the store removes it and opens with everything committed.
func TestOpenAfterInterruptedLogCreation(t *testing.T) {
	dir := t.TempDir()
	s := openDisk(t, dir)
	commitRange(t, s, "s", 1, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"000099.vlog", "00099.mem"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Badger by itself refuses the directory.
	if db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil)); err == nil {
		_ = db.Close()
		t.Fatal("badger opened a directory with empty log files; the workaround may be unnecessary now")
	} else if !strings.Contains(err.Error(), "Create a new file") {
		t.Fatalf("badger: %v, want its complaint about an empty file", err)
	}
	s, err := Open(context.Background(), Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open after an interrupted log creation: %v", err)
	}
	defer s.Close()
	checkLog(t, s, "s", 3)
}
