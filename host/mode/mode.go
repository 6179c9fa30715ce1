// Package mode is the host's contract for coordination modes: a Module is a
// loaded mode module (host/wasm builds them), a Catalog says which module
// serves a mode name and finds modules by digest. The kernel runs sessions
// through these interfaces and the mode registry (host/modes) implements
// them, so neither depends on the other.
package mode

import (
	"context"

	"github.com/concord-macp/concord/abi"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Module is a loaded mode module: a pure function from (state, envelope,
// session) to (verdict, new state), plus a JSON view of its state.
type Module interface {
	// Digest is the sha256 (hex) of the module's bytes.
	Digest() string
	Descriptor() *macpv1.ModeDescriptor
	Step(ctx context.Context, req *abiv1.StepRequest) (*abiv1.StepResponse, error)
	View(ctx context.Context, req *abiv1.ViewRequest) (*abiv1.ViewResponse, error)
}

// Catalog tells the kernel which module serves a mode.
type Catalog interface {
	// Lookup returns the module new sessions of mode bind to, and whether
	// SessionStart is validated strictly for it (see Strict). A mode no
	// module serves is a MODE_NOT_SUPPORTED error (package macperr) whose
	// message says why.
	Lookup(mode string) (m Module, strict bool, err error)
	// Pinned returns the module with the given digest, for sessions that
	// bound it earlier.
	Pinned(digest string) (Module, bool)
}

// Strict reports whether SessionStart is validated strictly for a mode:
// standards-track names, modes built into the runtime and promoted modes.
// Other extension modes get the lenient checks that keep the runtime safe.
func Strict(name string, builtin, promoted bool) bool {
	return builtin || promoted || abi.IsStandard(name)
}

// IsTerminal reports whether messageType ends a session of a mode with
// descriptor d (its terminal_message_types).
func IsTerminal(d *macpv1.ModeDescriptor, messageType string) bool {
	for _, t := range d.GetTerminalMessageTypes() {
		if t == messageType {
			return true
		}
	}
	return false
}
