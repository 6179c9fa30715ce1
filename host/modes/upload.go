package modes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi"
	"github.com/concord-macp/concord/host/bus"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// DefaultMaxModuleBytes caps an uploaded module.
const DefaultMaxModuleBytes = 16 << 20

// ErrRefused wraps every reason an upload or registry change is refused.
var ErrRefused = errors.New("refused")

// Persistence is where uploads, bindings and declarations are kept: the
// records and blobs of the storage contract (host/storage).
type Persistence interface {
	storage.Records
	storage.Blobs
}

// Uploads configures run-time uploads of modes.
type Uploads struct {
	// Store keeps modules and bindings across restarts.
	Store Persistence
	// Loader compiles uploaded modules; it must sandbox them.
	Loader Loader
	// MaxModuleBytes caps a module (DefaultMaxModuleBytes when zero).
	MaxModuleBytes int
	// Now is the clock of registration times.
	Now func() time.Time
}

// EnableUploads lets the registry accept uploaded modules and declarations,
// and restores the modules, bindings and declarations stored by earlier
// runs. Call it once, after LoadBuiltins.
func (r *Registry) EnableUploads(ctx context.Context, u Uploads) error {
	if u.MaxModuleBytes <= 0 {
		u.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if u.Now == nil {
		u.Now = time.Now
	}
	r.mu.Lock()
	r.uploads = &u
	r.mu.Unlock()

	// The built-in modules are stored too, so that a later binary, whose
	// built-ins differ, can still run the sessions pinned to these.
	r.mu.RLock()
	var builtins []mode.Module
	for _, e := range r.byName {
		if e.builtin {
			builtins = append(builtins, e.mode)
		}
	}
	r.mu.RUnlock()
	for _, m := range builtins {
		b, ok := r.builtinBytes[m.Digest()]
		if !ok {
			continue
		}
		if err := u.Store.PutBlob(ctx, storage.Modules, m.Digest(), b); err != nil {
			return fmt.Errorf("modes: store built-in module %s: %w", m.Descriptor().GetMode(), err)
		}
	}
	// Other stored modules load when a session pinned to one needs it
	// (Pinned) or a binding serves it (below).
	err := u.Store.EachPrefix(ctx, storage.ModeBindings, "", func(_ string, v []byte) error {
		var b storev1.ModeBinding
		if err := proto.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("modes: decode binding: %w", err)
		}
		m, err := r.stored(ctx, b.GetModuleDigest())
		if err != nil {
			return fmt.Errorf("modes: binding of %s: %w", b.GetMode(), err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lastBound[b.GetMode()] = b.GetModuleDigest()
		if b.GetActive() {
			r.byName[b.GetMode()] = entry{mode: renamed(m, b.GetMode()), standard: b.GetPromoted(), strict: mode.Strict(b.GetMode(), false, b.GetPromoted())}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return r.restoreDeclarations(ctx, u.Store)
}

// Upload validates a module, stores it under its sha256 and makes the mode
// it describes available to new sessions at once. Refusals wrap ErrRefused
// and register nothing.
func (r *Registry) Upload(ctx context.Context, wasm []byte) (mode.Module, error) {
	r.mu.RLock()
	u := r.uploads
	r.mu.RUnlock()
	if u == nil {
		return nil, fmt.Errorf("%w: this server does not accept uploaded modes", ErrRefused)
	}
	if len(wasm) == 0 {
		return nil, fmt.Errorf("%w: the module is empty", ErrRefused)
	}
	if len(wasm) > u.MaxModuleBytes {
		return nil, fmt.Errorf("%w: the module is %d bytes, more than the limit of %d", ErrRefused, len(wasm), u.MaxModuleBytes)
	}
	m, err := u.Loader.Load(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: the module does not load as a Concord mode (ABI v1): %w", ErrRefused, err)
	}
	d := m.Descriptor()
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	if err := r.checkDescriptor(d, m.Digest()); err != nil {
		return nil, err
	}
	if err := u.Store.PutBlob(ctx, storage.Modules, m.Digest(), wasm); err != nil {
		return nil, fmt.Errorf("modes: store module: %w", err)
	}
	if err := r.bind(ctx, d.GetMode(), m, false); err != nil {
		return nil, err
	}
	return m, nil
}

// bind makes m serve name for new sessions, durably, and announces it. A
// declaration of name is filled: it is no longer listed as declared and its
// record is removed. The caller holds changeMu.
func (r *Registry) bind(ctx context.Context, name string, m mode.Module, promoted bool) error {
	b := &storev1.ModeBinding{Mode: name, ModuleDigest: m.Digest(), Promoted: promoted, Active: true,
		RegisteredAtUnixMs: r.uploads.Now().UnixMilli()}
	if err := r.putBinding(ctx, b); err != nil {
		return err
	}
	r.mu.Lock()
	r.byName[name] = entry{mode: renamed(m, name), standard: promoted, strict: mode.Strict(name, false, promoted)}
	r.byDigest[m.Digest()] = m
	r.lastBound[name] = m.Digest()
	_, filled := r.declared[name]
	delete(r.declared, name)
	r.mu.Unlock()
	r.announce()
	if filled {
		// The binding is durable, so a record left behind by a failure
		// here is dropped at the next start (restoreDeclarations).
		if err := r.uploads.Store.Delete(ctx, storage.ModeDeclarations, name); err != nil {
			return fmt.Errorf("modes: %s is served, but its filled declaration could not be removed: %w", name, err)
		}
	}
	return nil
}

func (r *Registry) putBinding(ctx context.Context, b *storev1.ModeBinding) error {
	v, err := proto.Marshal(b)
	if err != nil {
		return fmt.Errorf("modes: encode binding: %w", err)
	}
	if err := r.uploads.Store.Put(ctx, storage.ModeBindings, b.GetMode(), v); err != nil {
		return fmt.Errorf("modes: store binding of %s: %w", b.GetMode(), err)
	}
	return nil
}

// Unregister stops mode from serving new sessions, or withdraws its
// declaration. Sessions already bound to it keep their module. Built-in and
// standards-track modes stay.
func (r *Registry) Unregister(ctx context.Context, mode string) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	return r.unregister(ctx, mode)
}

// unregister is Unregister for a caller that holds changeMu.
func (r *Registry) unregister(ctx context.Context, mode string) error {
	r.mu.RLock()
	e, ok := r.byName[mode]
	_, declared := r.declared[mode]
	u := r.uploads
	r.mu.RUnlock()
	switch {
	case declared:
		return r.withdraw(ctx, mode)
	case !ok:
		return fmt.Errorf("%w: mode %s is not registered", ErrRefused, mode)
	case e.builtin || abi.IsStandard(mode) || e.standard:
		return fmt.Errorf("%w: %s is a built-in or standards-track mode and cannot be unregistered", ErrRefused, mode)
	case u == nil:
		return fmt.Errorf("%w: this server does not accept extension modes", ErrRefused)
	}
	b := &storev1.ModeBinding{Mode: mode, ModuleDigest: e.mode.Digest(), Active: false, RegisteredAtUnixMs: u.Now().UnixMilli()}
	if err := r.putBinding(ctx, b); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.byName, mode)
	r.mu.Unlock()
	r.announce()
	return nil
}

// Promote makes an extension mode standards-track (listed by ListModes,
// strict SessionStart validation), optionally under a new name outside
// macp.mode.*. It returns the name the mode is served under.
func (r *Registry) Promote(ctx context.Context, mode, newName string) (string, error) {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.mu.RLock()
	e, ok := r.byName[mode]
	u := r.uploads
	_, taken := r.byName[newName]
	_, declaredOld := r.declared[mode]
	_, declaredNew := r.declared[newName]
	r.mu.RUnlock()
	name := mode
	if newName != "" {
		name = newName
	}
	switch {
	case declaredOld:
		return "", fmt.Errorf("%w: mode %s is declared, but no module implements it; upload its module before promoting it", ErrRefused, mode)
	case !ok:
		return "", fmt.Errorf("%w: mode %s is not registered", ErrRefused, mode)
	case e.standard:
		return "", fmt.Errorf("%w: %s is already standards-track", ErrRefused, mode)
	case abi.IsStandard(name):
		return "", fmt.Errorf("%w: names under %s need the specification's approval", ErrRefused, abi.StandardPrefix)
	case newName != "" && newName != mode && (taken || declaredNew):
		return "", fmt.Errorf("%w: mode %s already exists", ErrRefused, newName)
	case newName != "" && !modeNamePattern.MatchString(newName):
		return "", fmt.Errorf("%w: %q is not a valid mode name", ErrRefused, newName)
	case u == nil || e.builtin:
		return "", fmt.Errorf("%w: built-in modes are promoted by a release, not at run time", ErrRefused)
	}
	if err := r.bind(ctx, name, e.mode, true); err != nil {
		return "", err
	}
	if name != mode {
		if err := r.unregister(ctx, mode); err != nil {
			return "", err
		}
	}
	return name, nil
}

// Changes subscribes to registry change hints.
func (r *Registry) Changes() *bus.Subscription[struct{}] { return r.changes.Subscribe("", 16) }

func (r *Registry) announce() { r.changes.Publish("", struct{}{}) }

// Limits on what an uploaded module may describe.
const (
	maxTitle        = 200
	maxDescription  = 4000
	maxMessageTypes = 64
	maxSchemaURIs   = 16
	maxShortField   = 128
)

var (
	// ext.<name>[.<name>…].v<N> or a reverse-domain name ending in .v<N>.
	modeNamePattern    = regexp.MustCompile(`^(ext(\.[a-z0-9_]+)+|[a-z0-9-]+(\.[a-z0-9_-]+)+)\.v[0-9]+$`)
	messageTypePattern = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,63}$`)
	reservedTypes      = map[string]bool{"SessionCancel": true, "SessionSuspend": true, "SessionResume": true, "Signal": true, "Progress": true}
)

// checkDescriptor validates what an uploaded module says about itself, and
// that it agrees with the mode's declaration, if there is one.
func (r *Registry) checkDescriptor(d *macpv1.ModeDescriptor, digest string) error {
	if err := checkRegistrable(d); err != nil {
		return err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.byName[d.GetMode()]; ok && (e.builtin || e.standard) {
		return fmt.Errorf("%w: %s is a built-in or standards-track mode; an upload may not shadow it", ErrRefused, d.GetMode())
	}
	if e, ok := r.byName[d.GetMode()]; ok && e.mode.Digest() == digest {
		return fmt.Errorf("%w: this module (%s) already serves %s", ErrRefused, short(digest), d.GetMode())
	}
	if declared, ok := r.declared[d.GetMode()]; ok {
		if diffs := disagreements(declared, d); len(diffs) > 0 {
			return fmt.Errorf("%w: %s is declared with a descriptor this module's does not match: %s; upload a module that matches the declaration, or withdraw it first (UnregisterExtMode)",
				ErrRefused, d.GetMode(), strings.Join(diffs, "; "))
		}
	}
	return nil
}

// checkRegistrable applies the rules every extension descriptor must meet.
func checkRegistrable(d *macpv1.ModeDescriptor) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: descriptor: %s", ErrRefused, fmt.Sprintf(format, args...))
	}
	switch name := d.GetMode(); {
	case name == "":
		return refuse("mode is empty")
	case abi.IsStandard(name):
		return refuse("%s is in the reserved macp.mode.* namespace", name)
	case len(name) > maxShortField || !modeNamePattern.MatchString(name):
		return refuse("mode %q must look like ext.<name>.v<N> or a reverse-domain name ending in .v<N>", name)
	}
	if v := d.GetModeVersion(); v == "" || len(v) > maxShortField {
		return refuse("mode_version must be 1 to %d characters", maxShortField)
	}
	if len(d.GetTitle()) > maxTitle || len(d.GetDescription()) > maxDescription ||
		len(d.GetDeterminismClass()) > maxShortField || len(d.GetParticipantModel()) > maxShortField {
		return refuse("title, description, determinism_class or participant_model too long")
	}
	types := d.GetMessageTypes()
	if len(types) == 0 || len(types) > maxMessageTypes {
		return refuse("message_types must list 1 to %d types", maxMessageTypes)
	}
	seen := map[string]bool{}
	for _, t := range types {
		switch {
		case !messageTypePattern.MatchString(t):
			return refuse("message type %q is not PascalCase of at most 64 characters", t)
		case reservedTypes[t]:
			return refuse("message type %s is reserved for the runtime", t)
		case seen[t]:
			return refuse("message type %s is listed twice", t)
		}
		seen[t] = true
	}
	for _, t := range d.GetTerminalMessageTypes() {
		if !seen[t] {
			return refuse("terminal message type %s is not among message_types", t)
		}
	}
	if len(d.GetSchemaUris()) > maxSchemaURIs {
		return refuse("at most %d schema_uris", maxSchemaURIs)
	}
	for k, v := range d.GetSchemaUris() {
		if len(k) > maxShortField || len(v) > 2048 {
			return refuse("schema_uris entry too long")
		}
	}
	return nil
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

// renamed serves m under another mode name (a promotion with a new name).
func renamed(m mode.Module, name string) mode.Module {
	if m.Descriptor().GetMode() == name {
		return m
	}
	return renamedMode{Module: m, desc: func() *macpv1.ModeDescriptor {
		d := proto.Clone(m.Descriptor()).(*macpv1.ModeDescriptor)
		d.Mode = name
		return d
	}()}
}

type renamedMode struct {
	mode.Module
	desc *macpv1.ModeDescriptor
}

func (m renamedMode) Descriptor() *macpv1.ModeDescriptor { return m.desc }

// stored returns the module with digest, loading it from the store (with
// the uploads' sandboxed loader) the first time it is asked for.
func (r *Registry) stored(ctx context.Context, digest string) (mode.Module, error) {
	r.mu.RLock()
	m, ok := r.byDigest[digest]
	u := r.uploads
	r.mu.RUnlock()
	if ok {
		return m, nil
	}
	if u == nil {
		return nil, fmt.Errorf("module %s is not loaded", digest)
	}
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	r.mu.RLock()
	m, ok = r.byDigest[digest] // loaded while this caller waited?
	r.mu.RUnlock()
	if ok {
		return m, nil
	}
	b, err := u.Store.Blob(ctx, storage.Modules, digest)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", digest, err)
	}
	m, err = u.Loader.Load(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("load stored module %s: %w", digest, err)
	}
	if m.Digest() != digest {
		return nil, fmt.Errorf("the module stored as %s has digest %s", digest, m.Digest())
	}
	r.mu.Lock()
	r.byDigest[digest] = m
	r.mu.Unlock()
	return m, nil
}
