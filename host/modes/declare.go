package modes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Register is MACP RegisterExtMode: a descriptor without code. When the
// module last bound to the mode's name is still stored and agrees with the
// descriptor (a mode registered again after UnregisterExtMode), it serves
// the mode again at once. Otherwise the descriptor becomes a declaration:
// listed by ListExtModes and announced like any change, but sessions cannot
// start in the mode until a module whose own descriptor agrees is uploaded
// (see disagreements). Declaring the same descriptor twice is not a change.
func (r *Registry) Register(ctx context.Context, d *macpv1.ModeDescriptor) error {
	if err := checkRegistrable(d); err != nil {
		return err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	name := d.GetMode()
	r.mu.RLock()
	u := r.uploads
	_, served := r.byName[name]
	previous, declared := r.declared[name]
	last := r.byDigest[r.lastBound[name]]
	r.mu.RUnlock()
	switch {
	case u == nil:
		return fmt.Errorf("%w: this server does not accept extension modes", ErrRefused)
	case served:
		return fmt.Errorf("%w: mode %s is already registered", ErrRefused, name)
	case declared && proto.Equal(previous, d):
		return nil
	case declared:
		diffs := append(disagreements(previous, d), disagreements(d, previous)...)
		return fmt.Errorf("%w: mode %s is already declared with another descriptor (%s); withdraw it first (UnregisterExtMode)",
			ErrRefused, name, strings.Join(slices.Compact(diffs), "; "))
	case last != nil && len(disagreements(d, renamed(last, name).Descriptor())) == 0:
		return r.bind(ctx, name, last, false)
	}
	rec, err := proto.Marshal(&storev1.ModeDeclaration{ModeDescriptor: d, DeclaredAtUnixMs: u.Now().UnixMilli()})
	if err != nil {
		return fmt.Errorf("modes: encode declaration: %w", err)
	}
	if err := u.Store.Put(ctx, storage.ModeDeclarations, name, rec); err != nil {
		return fmt.Errorf("modes: store declaration of %s: %w", name, err)
	}
	r.mu.Lock()
	r.declared[name] = proto.CloneOf(d)
	r.mu.Unlock()
	r.announce()
	return nil
}

// withdraw removes the declaration of name. The caller holds changeMu.
func (r *Registry) withdraw(ctx context.Context, name string) error {
	if err := r.uploads.Store.Delete(ctx, storage.ModeDeclarations, name); err != nil {
		return fmt.Errorf("modes: remove declaration of %s: %w", name, err)
	}
	r.mu.Lock()
	delete(r.declared, name)
	r.mu.Unlock()
	r.announce()
	return nil
}

// restoreDeclarations loads the declarations stored by earlier runs, after
// the bindings. A declaration whose mode is served was filled by an upload
// that could not remove it; it is removed now.
func (r *Registry) restoreDeclarations(ctx context.Context, s Persistence) error {
	var filled []string
	err := s.EachPrefix(ctx, storage.ModeDeclarations, "", func(name string, v []byte) error {
		var rec storev1.ModeDeclaration
		if err := proto.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("modes: decode declaration of %s: %w", name, err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, served := r.byName[name]; served {
			filled = append(filled, name)
			return nil
		}
		r.declared[name] = rec.GetModeDescriptor()
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range filled {
		if err := s.Delete(ctx, storage.ModeDeclarations, name); err != nil {
			return fmt.Errorf("modes: remove filled declaration of %s: %w", name, err)
		}
	}
	return nil
}

// disagreements lists every way a module's descriptor departs from a
// declared one, empty when the module fills the declaration. Each field the
// declaration sets is a claim the module must meet: mode_version and the
// text fields equal, message_types and terminal_message_types the same sets
// (SessionStart, which every mode handles, may be listed or not), and
// schema_uris the same map. Fields the declaration leaves empty claim
// nothing.
func disagreements(declared, module *macpv1.ModeDescriptor) []string {
	var out []string
	text := func(field, want, got string) {
		if want != "" && want != got {
			out = append(out, fmt.Sprintf("%s is %q in the declaration, %q in the module", field, want, got))
		}
	}
	text("mode_version", declared.GetModeVersion(), module.GetModeVersion())
	text("title", declared.GetTitle(), module.GetTitle())
	text("description", declared.GetDescription(), module.GetDescription())
	text("determinism_class", declared.GetDeterminismClass(), module.GetDeterminismClass())
	text("participant_model", declared.GetParticipantModel(), module.GetParticipantModel())
	types := func(field string, want, got []string) {
		if len(want) == 0 {
			return
		}
		w, g := typeSet(want), typeSet(got)
		if !slices.Equal(w, g) {
			out = append(out, fmt.Sprintf("%s are [%s] in the declaration, [%s] in the module", field, strings.Join(w, " "), strings.Join(g, " ")))
		}
	}
	types("message_types", declared.GetMessageTypes(), module.GetMessageTypes())
	types("terminal_message_types", declared.GetTerminalMessageTypes(), module.GetTerminalMessageTypes())
	if want, got := declared.GetSchemaUris(), module.GetSchemaUris(); len(want) > 0 && !maps.Equal(want, got) {
		out = append(out, fmt.Sprintf("schema_uris are %v in the declaration, %v in the module", want, got))
	}
	return out
}

// typeSet returns message types sorted, without duplicates and without
// SessionStart.
func typeSet(types []string) []string {
	out := slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "SessionStart" })
	slices.Sort(out)
	return slices.Compact(out)
}
