// Package wasm runs coordination modes compiled to WebAssembly, with wazero.
//
// An Engine owns one wazero runtime. Load compiles a module once, names it by
// the sha256 of its bytes, checks that it speaks the Concord ABI (see
// abi/README.md) and keeps its ModeDescriptor. A Module keeps a small pool of
// warm instances; Step and View borrow one instance for one call, so the
// mode's state lives in the host and travels in and out on every call.
//
// Containment: every instance runs under a memory cap; outputs above a size
// limit are refused; with Options.Sandbox each call has a deadline after
// which wazero closes the instance (this costs a few microseconds per call,
// so trusted built-in modes may run without it). An instance that trapped,
// timed out, exited or misbehaved is closed and never returns to the pool;
// the error wraps one of the package's sentinel errors.
//
// The only host functions a module may import are those of WASI preview 1
// (wasi_snapshot_preview1), which a Go wasip1 reactor needs to start. They
// are wazero's deterministic defaults (a fixed random source, no files, no
// environment, no arguments, no network, sleeps that return at once), except
// for the clocks: both are stopped at 2022-01-01T00:00:00Z, because Go's
// garbage collector cannot finish its cycles under wazero's default fake
// clock (see stoppedClock). A guest that waits for time to pass therefore
// waits for ever: in a sandboxed engine the call hits its deadline. The first couple of kilobytes a guest writes
// to stderr during a call are kept only to explain a trap. Modules are WASI
// reactors: "_initialize" runs once per instance when exported; "_start" is
// never called.
package wasm
