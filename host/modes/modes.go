// Package modes is the registry of coordination modes a Concord server can
// run: which module serves each mode name for new sessions, every module
// ever loaded by its digest, so that sessions keep the module they bound,
// and the modes declared by a descriptor alone, waiting for a module.
package modes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/concord-macp/concord/abi"
	"github.com/concord-macp/concord/host/bus"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/modes-wasm/builtin"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Loader compiles module bytes into a runnable mode (host/wasm.Engine).
type Loader interface {
	Load(ctx context.Context, wasm []byte) (mode.Module, error)
}

// Registry maps mode names to modules. It is safe for concurrent use.
type Registry struct {
	// changeMu serialises changes (register, upload, unregister, promote),
	// store writes included, so that the checks a change makes still hold
	// when it is applied. Readers take only mu.
	changeMu sync.Mutex
	mu       sync.RWMutex
	byName   map[string]entry
	byDigest map[string]mode.Module
	// declared holds descriptors registered without a module, by mode name;
	// a name is never both declared and in byName.
	declared map[string]*macpv1.ModeDescriptor
	// lastBound is the digest of the module last bound to each uploaded
	// mode name, still there after the mode is unregistered.
	lastBound map[string]string
	uploads   *Uploads // nil until EnableUploads
	// loadMu serialises loading stored modules (see stored).
	loadMu sync.Mutex
	// builtinBytes holds the bytes of the built-in modules by digest, to
	// store them once uploads are enabled.
	builtinBytes map[string][]byte
	changes      *bus.Hub[struct{}]
}

type entry struct {
	mode mode.Module
	// standard modes are listed by ListModes; the others by ListExtModes.
	standard bool
	// strict modes get the full SessionStart validation.
	strict  bool
	builtin bool
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		byName: map[string]entry{}, byDigest: map[string]mode.Module{},
		declared: map[string]*macpv1.ModeDescriptor{}, lastBound: map[string]string{},
		changes: bus.New[struct{}](),
	}
}

// LoadBuiltins loads every module embedded in the binary and registers the
// mode each one describes.
func (r *Registry) LoadBuiltins(ctx context.Context, l Loader) error {
	names, err := builtin.Names()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("modes: the binary holds no built-in mode modules; build it with `make`")
	}
	// Decoding and validating a module costs CPU even when its machine
	// code is cached: load them side by side.
	loaded := make([]mode.Module, len(names))
	raw := make([][]byte, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := builtin.Module(name)
			if err != nil {
				errs[i] = err
				return
			}
			raw[i] = b
			if loaded[i], err = l.Load(ctx, b); err != nil {
				errs[i] = fmt.Errorf("modes: load built-in %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, m := range loaded {
		r.add(m, true)
		r.mu.Lock()
		if r.builtinBytes == nil {
			r.builtinBytes = map[string][]byte{}
		}
		r.builtinBytes[m.Digest()] = raw[i]
		r.mu.Unlock()
	}
	return nil
}

// add registers m as the module new sessions of its mode bind to.
func (r *Registry) add(m mode.Module, isBuiltin bool) {
	name := m.Descriptor().GetMode()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byName[name] = entry{
		mode:     m,
		standard: abi.IsStandard(name),
		strict:   mode.Strict(name, isBuiltin, false),
		builtin:  isBuiltin,
	}
	r.byDigest[m.Digest()] = m
}

// Lookup implements kernel.Catalog.
func (r *Registry) Lookup(name string) (mode.Module, bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	if !ok {
		if d, declared := r.declared[name]; declared {
			return nil, false, macperr.New(macperr.ModeNotSupported,
				"mode %s is declared, but no module implements it: upload the Wasm module for %s %s (concord mode push FILE.wasm) before starting sessions",
				name, name, d.GetModeVersion())
		}
		return nil, false, macperr.New(macperr.ModeNotSupported, "mode %.128q is not registered", name)
	}
	return e.mode, e.strict, nil
}

// Pinned implements kernel.Catalog.
// A module stored by an earlier run (an upload, or a built-in of an
// earlier binary) is loaded from the store the first time it is asked for.
func (r *Registry) Pinned(digest string) (mode.Module, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), pinnedLoadTimeout)
	defer cancel()
	m, err := r.stored(ctx, digest)
	return m, err == nil
}

// pinnedLoadTimeout bounds loading a stored module for a pinned session.
const pinnedLoadTimeout = time.Minute

// Standard returns the descriptors of standards-track modes, sorted by name.
func (r *Registry) Standard() []*macpv1.ModeDescriptor { return r.list(true) }

// Extensions returns the descriptors of extension modes, served or only
// declared, sorted by name.
func (r *Registry) Extensions() []*macpv1.ModeDescriptor { return r.list(false) }

// Names returns the name of every mode sessions can start in, sorted.
// Declared modes without a module are not among them.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r *Registry) list(standard bool) []*macpv1.ModeDescriptor {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*macpv1.ModeDescriptor
	for _, e := range r.byName {
		if e.standard == standard {
			out = append(out, e.mode.Descriptor())
		}
	}
	if !standard {
		for _, d := range r.declared {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetMode() < out[j].GetMode() })
	return out
}

// LoaderFunc adapts a function to the Loader interface.
type LoaderFunc func(ctx context.Context, wasm []byte) (mode.Module, error)

// Load calls f.
func (f LoaderFunc) Load(ctx context.Context, wasm []byte) (mode.Module, error) { return f(ctx, wasm) }

// Info describes a mode the registry serves or that is declared.
type Info struct {
	// Name is the mode name new sessions use.
	Name string
	// Descriptor is the module's descriptor, or the declared one.
	Descriptor *macpv1.ModeDescriptor
	// Mode is the module serving new sessions; nil when Declared.
	Mode     mode.Module
	Builtin  bool
	Standard bool
	// Declared marks a mode registered by its descriptor alone, which no
	// module implements yet.
	Declared bool
}

// List returns every mode that serves new sessions and every declared mode,
// sorted by name.
func (r *Registry) List() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.byName)+len(r.declared))
	for name, e := range r.byName {
		out = append(out, Info{Name: name, Descriptor: e.mode.Descriptor(), Mode: e.mode, Builtin: e.builtin, Standard: e.standard})
	}
	for name, d := range r.declared {
		out = append(out, Info{Name: name, Descriptor: d, Declared: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
