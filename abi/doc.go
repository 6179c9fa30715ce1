// Package abi defines the contract between the Concord host and a coordination
// mode compiled to WebAssembly: the ABI version, the names of the functions a
// module exports, and the MACP error codes a mode may return.
//
// See README.md in this folder for the full contract, written for authors of
// modes in any language.
package abi

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

// MACP error registry codes a mode may return when it rejects an envelope.
const (
	CodeForbidden        = "FORBIDDEN"
	CodeInvalidEnvelope  = "INVALID_ENVELOPE"
	CodePolicyDenied     = "POLICY_DENIED"
	CodeInternalError    = "INTERNAL_ERROR"
	CodeModeNotSupported = "MODE_NOT_SUPPORTED"
)
