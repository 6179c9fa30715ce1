// Package guest is the Go SDK for writing a Concord coordination mode that
// runs as a WebAssembly module.
//
// Most modes are a Machine: a state struct and payload structs whose codecs
// guestgen writes from their struct tags, and a table of message types with
// who may send them in which phase (see ExampleMachine and abi/README.md,
// "Your first mode"). A mode that needs more implements the Mode interface
// itself and uses the pieces: Begin (the step prologue), Commit and
// CommitmentRecord, Object (a strict JSON object decoder), FieldReader and
// the Append functions (protobuf wire), ReadRules, the AppendJSON functions.
//
// A mode registers itself from the init function of its main package:
//
//	package main
//
//	import "github.com/concord-macp/concord/abi/guest"
//
//	func init() { guest.Serve(counter{}) }
//
//	func main() {}
//
// and is built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o mode.wasm .
//
// Importing this package links in the ABI exports described in abi/README.md
// (concord_abi_version, concord_alloc, concord_describe, concord_step,
// concord_view). Their wire codec is written with protowire alone, so a
// guest does not link the reflection-based protobuf runtime and stays small.
// Panics in Step and View are recovered and reported as INTERNAL_ERROR, so
// ordinary bad input never traps the instance.
//
// On platforms other than wasip1 the package only provides the types, the
// helpers and a Serve that records the mode, so mode packages build, vet and
// test natively.
package guest
