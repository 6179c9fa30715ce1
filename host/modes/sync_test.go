package modes

import (
	"context"
	"testing"

	"github.com/concord-macp/concord/host/storage/memory"
)

// TestSync: two registries over one store (two nodes of a cluster) agree
// on declarations once each syncs, and a sync announces only a change.
func TestSync(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	a, b := New(), New()
	for _, r := range []*Registry{a, b} {
		if err := r.EnableUploads(ctx, Uploads{Store: st, Loader: refuseLoads(t)}); err != nil {
			t.Fatal(err)
		}
	}
	changes := b.Changes()
	defer changes.Close()
	if err := a.Register(ctx, counterDescriptor()); err != nil {
		t.Fatal(err)
	}
	if len(b.Extensions()) != 0 {
		t.Fatal("b lists the declaration before it synced")
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ext := b.Extensions(); len(ext) != 1 || ext[0].GetMode() != counterDescriptor().GetMode() {
		t.Fatalf("b after sync: %v", ext)
	}
	select {
	case <-changes.C:
	default:
		t.Fatal("the synced declaration was not announced")
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes.C:
		t.Fatal("a sync without a change was announced")
	default:
	}
	if err := a.Unregister(ctx, counterDescriptor().GetMode()); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ext := b.Extensions(); len(ext) != 0 {
		t.Fatalf("b still lists a withdrawn declaration: %v", ext)
	}
}
