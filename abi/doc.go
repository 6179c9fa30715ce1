// Package abi defines the contract between the Concord host and a coordination
// mode compiled to WebAssembly: the ABI version, the names of the functions a
// module exports, and the namespace of the standards-track modes. The error
// codes a mode returns are those of package macperr.
//
// See README.md in this folder for the full contract, written for authors of
// modes in any language.
package abi

import "strings"

// Version is the ABI version this host speaks. A module declares the version
// it implements through the ExportVersion function.
const Version = 1

// Names of the functions a mode module exports.
const (
	// ExportVersion returns the ABI version as an i32: () -> i32.
	ExportVersion = "concord_abi_version"
	// ExportAlloc returns a guest buffer of at least n bytes into which the
	// host writes the next input: (n i32) -> (ptr i32). The buffer is valid
	// until the next call into the instance.
	ExportAlloc = "concord_alloc"
	// ExportDescribe returns the module's macp.v1.ModeDescriptor as packed
	// (ptr<<32 | len): () -> i64.
	ExportDescribe = "concord_describe"
	// ExportStep applies one concord.abi.v1.StepRequest held at (ptr, len)
	// and returns a concord.abi.v1.StepResponse as packed (ptr<<32 | len):
	// (ptr i32, len i32) -> i64.
	ExportStep = "concord_step"
	// ExportView renders state from a concord.abi.v1.ViewRequest at (ptr, len)
	// and returns a concord.abi.v1.ViewResponse as packed (ptr<<32 | len):
	// (ptr i32, len i32) -> i64.
	ExportView = "concord_view"
)

// StandardPrefix is the namespace of the specification's standards-track
// modes ("macp.mode.decision.v1", …). Modes in it are validated strictly at
// SessionStart; no uploaded mode may take a name in it.
const StandardPrefix = "macp.mode."

// IsStandard reports whether mode is in the standards-track namespace.
func IsStandard(mode string) bool { return strings.HasPrefix(mode, StandardPrefix) }
