package modes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/memory"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// fakeModule stands for a loaded module: its digest is that of its bytes.
type fakeModule struct{ digest string }

func (f fakeModule) Digest() string { return f.digest }
func (f fakeModule) Descriptor() *macpv1.ModeDescriptor {
	return &macpv1.ModeDescriptor{Mode: "macp.mode.decision.v1", ModeVersion: "1.0.0"}
}
func (fakeModule) Step(context.Context, *abiv1.StepRequest) (*abiv1.StepResponse, error) {
	return &abiv1.StepResponse{}, nil
}
func (fakeModule) View(context.Context, *abiv1.ViewRequest) (*abiv1.ViewResponse, error) {
	return &abiv1.ViewResponse{}, nil
}

func digestOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// countingLoader loads any bytes as a fakeModule and counts the loads.
func countingLoader(n *atomic.Int32) Loader {
	return LoaderFunc(func(_ context.Context, b []byte) (mode.Module, error) {
		n.Add(1)
		return fakeModule{digest: digestOf(b)}, nil
	})
}

// TestBuiltinsAreStoredAndOldModulesLoadWhenPinned: the built-in modules a
// binary serves are kept in the store, so that a later binary whose
// built-ins differ still runs the sessions pinned to them; stored modules
// load when first asked for, not at start.
func TestBuiltinsAreStoredAndOldModulesLoadWhenPinned(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	var loads atomic.Int32
	first := New()
	if err := first.LoadBuiltins(ctx, countingLoader(&loads)); err != nil {
		t.Fatal(err)
	}
	if err := first.EnableUploads(ctx, Uploads{Store: st, Loader: countingLoader(&loads)}); err != nil {
		t.Fatal(err)
	}
	names, err := st.BlobNames(ctx, storage.Modules)
	if err != nil {
		t.Fatal(err)
	}
	var builtins []string
	for _, in := range first.List() {
		if in.Builtin {
			builtins = append(builtins, in.Mode.Digest())
		}
	}
	for _, d := range builtins {
		if !slices.Contains(names, d) {
			t.Fatalf("built-in %s is not stored (stored: %v)", d, names)
		}
	}

	// A later binary without those built-ins.
	loads.Store(0)
	later := New()
	if err := later.EnableUploads(ctx, Uploads{Store: st, Loader: countingLoader(&loads)}); err != nil {
		t.Fatal(err)
	}
	if n := loads.Load(); n != 0 {
		t.Fatalf("%d stored modules were loaded at start", n)
	}
	m, ok := later.Pinned(builtins[0])
	if !ok || m.Digest() != builtins[0] {
		t.Fatalf("a session pinned to an earlier built-in cannot run: %v %v", m, ok)
	}
	if _, ok := later.Pinned(builtins[0]); !ok || loads.Load() != 1 {
		t.Fatalf("the module was loaded %d times, want once", loads.Load())
	}
	if _, ok := later.Pinned("0000"); ok {
		t.Fatal("an unknown digest was served")
	}
}
