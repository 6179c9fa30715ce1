package memory_test

import (
	"testing"

	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/memory"
	"github.com/concord-macp/concord/host/storage/storagetest"
)

func TestContract(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(*testing.T) storage.Store { return memory.New() },
	})
}
