package modes

import (
	"context"
	"fmt"
	"maps"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Sync brings the registry up to date with its store, for a registry whose
// store other processes change too (the nodes of a cluster): modules it has
// not loaded yet are loaded, bindings and declarations are applied as
// stored, and a change is announced. Built-in modes are never touched.
func (r *Registry) Sync(ctx context.Context) error {
	r.mu.RLock()
	u := r.uploads
	r.mu.RUnlock()
	if u == nil {
		return nil
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	names, err := u.Store.BlobNames(ctx, storage.Modules)
	if err != nil {
		return fmt.Errorf("modes: sync: list modules: %w", err)
	}
	for _, digest := range names {
		r.mu.RLock()
		_, loaded := r.byDigest[digest]
		r.mu.RUnlock()
		if loaded {
			continue
		}
		b, err := u.Store.Blob(ctx, storage.Modules, digest)
		if err != nil {
			return fmt.Errorf("modes: sync: read module %s: %w", digest, err)
		}
		m, err := u.Loader.Load(ctx, b)
		if err != nil {
			return fmt.Errorf("modes: sync: load module %s: %w", digest, err)
		}
		r.mu.Lock()
		r.byDigest[m.Digest()] = m
		r.mu.Unlock()
	}
	var bindings []*storev1.ModeBinding
	if err := u.Store.EachPrefix(ctx, storage.ModeBindings, "", func(_ string, v []byte) error {
		b := &storev1.ModeBinding{}
		if err := proto.Unmarshal(v, b); err != nil {
			return fmt.Errorf("modes: sync: decode binding: %w", err)
		}
		bindings = append(bindings, b)
		return nil
	}); err != nil {
		return err
	}
	declared := map[string]*macpv1.ModeDescriptor{}
	if err := u.Store.EachPrefix(ctx, storage.ModeDeclarations, "", func(name string, v []byte) error {
		var rec storev1.ModeDeclaration
		if err := proto.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("modes: sync: decode declaration of %s: %w", name, err)
		}
		declared[name] = rec.GetModeDescriptor()
		return nil
	}); err != nil {
		return err
	}

	r.mu.Lock()
	before := r.servedLocked()
	for _, b := range bindings {
		name := b.GetMode()
		if e, ok := r.byName[name]; ok && e.builtin {
			continue
		}
		r.lastBound[name] = b.GetModuleDigest()
		m, ok := r.byDigest[b.GetModuleDigest()]
		switch {
		case b.GetActive() && ok:
			r.byName[name] = entry{mode: renamed(m, name), standard: b.GetPromoted(), strict: mode.Strict(name, false, b.GetPromoted())}
		case !b.GetActive():
			delete(r.byName, name)
		}
	}
	for name := range r.declared {
		if _, ok := declared[name]; !ok {
			delete(r.declared, name)
		}
	}
	for name, d := range declared {
		if _, served := r.byName[name]; !served {
			r.declared[name] = d
		}
	}
	changed := !maps.Equal(before, r.servedLocked())
	r.mu.Unlock()
	if changed {
		r.announce()
	}
	return nil
}

// servedLocked summarises what the registry serves: each name's module
// digest ("" for a declaration). The caller holds mu.
func (r *Registry) servedLocked() map[string]string {
	out := make(map[string]string, len(r.byName)+len(r.declared))
	for name, e := range r.byName {
		out[name] = e.mode.Digest()
		if e.standard {
			out[name] += "+standard"
		}
	}
	for name := range r.declared {
		out[name] = ""
	}
	return out
}
