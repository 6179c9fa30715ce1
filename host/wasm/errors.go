package wasm

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of them (and,
// for timeouts and cancellation, the context error as well).
var (
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("wasm: engine closed")
	// ErrCompile means the bytes are not a valid WebAssembly module.
	ErrCompile = errors.New("wasm: cannot compile module")
	// ErrABI means the module does not follow the Concord ABI: a missing or
	// mistyped export, a foreign import, a wrong ABI version, an output
	// outside its memory or one that does not decode.
	ErrABI = errors.New("wasm: module violates the Concord ABI")
	// ErrInstantiate means a new instance could not be started.
	ErrInstantiate = errors.New("wasm: cannot instantiate module")
	// ErrTrap means the guest trapped or exited during a call.
	ErrTrap = errors.New("wasm: guest trapped")
	// ErrMemoryLimit means the guest trapped because it ran out of memory
	// under the cap; it wraps ErrTrap.
	ErrMemoryLimit = fmt.Errorf("%w: memory limit exceeded", ErrTrap)
	// ErrTimeout means a sandboxed call ran past its deadline and the
	// instance was closed.
	ErrTimeout = errors.New("wasm: guest exceeded its time limit")
	// ErrOutputTooLarge means the guest returned more bytes than
	// Options.MaxOutputBytes allows.
	ErrOutputTooLarge = errors.New("wasm: guest output too large")
	// ErrView means the mode reported that it could not render its state.
	ErrView = errors.New("wasm: mode failed to render its state")
)
