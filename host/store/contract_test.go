package store

import (
	"context"
	"testing"

	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/storagetest"
)

// TestContract runs the storage contract tests against Badger, on disk.
func TestContract(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(t *testing.T) storage.Store {
			s, err := Open(context.Background(), Options{Dir: t.TempDir(), Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	})
}
