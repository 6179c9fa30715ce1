// Package cmthash computes and checks the MACP commitment hash of
// RFC-MACP-0013 (label "macp-commitment-hash/1"): the value a later
// Commitment puts in supersedes.commitment_hash to name the commitment it
// replaces.
//
// # Algorithm
//
// A macpv1.CommitmentPayload is projected onto a JSON object with snake_case
// keys:
//
//   - the seven strings commitment_id, action, authority_scope, reason,
//     mode_version, policy_version and configuration_version, always present
//     ("" when unset, never null);
//   - outcome_positive, always present as a boolean, false included (proto3
//     JSON would drop a false value; this projection never does);
//   - supersedes, absent when the field is unset and otherwise an object with
//     both commitment_hash and session_id present, even when both are "".
//     An unset and an empty supersedes therefore hash differently.
//
// The object is serialized in the RFC 8785 (JCS) canonical form: members
// sorted by key (action, authority_scope, commitment_id,
// configuration_version, mode_version, outcome_positive, policy_version,
// reason, supersedes; inside supersedes commitment_hash, session_id), no
// whitespace, and strings escaped minimally: \" and \\, the short forms \b \t
// \n \f \r, \u00xx with lowercase hex for the other code points below U+0020,
// and every other character as raw UTF-8 — '/', DEL, '<', '>', '&', U+2028,
// U+2029 and characters outside the Basic Multilingual Plane included.
// Canonical returns these bytes.
//
// The preimage is the ASCII label, a colon, then the canonical bytes
// ("macp-commitment-hash/1:{...}"); Preimage returns it. The hash is
// "sha256:" followed by the 64 lowercase hex digits of the SHA-256 of the
// preimage; Hash returns it and Verify compares it with a claimed value.
//
// The serializer is written by hand on purpose. encoding/json escapes '<',
// '>', '&', U+2028 and U+2029 and orders struct fields by declaration, so its
// output is not canonical and would hash differently from other runtimes.
//
// # Frozen field set
//
// Label /1 covers CommitmentPayload fields 1 to 9 and CommitmentRef fields 1
// and 2, nothing else. A payload that carries any other field — which the Go
// protobuf runtime keeps as unknown fields, at the top level or inside
// supersedes — has no /1 hash: Canonical, Preimage and Hash return an error
// wrapping ErrCannotVerify rather than silently hashing the known part, and
// Verify reports such a payload as unverifiable, never as a mismatch. The
// package tests pin the generated descriptors to exactly these fields, so a
// regenerated type with a new field fails the tests until this package is
// updated.
//
// Hashing does not depend on the payload being well formed for any mode:
// empty strings, an empty supersedes and any outcome hash fine. Only a nil
// payload and a string that is not valid UTF-8 (which the protobuf decoder
// never produces, as proto3 strings are validated on decode) have no
// canonical form; they give ErrInvalidPayload, which also wraps
// ErrCannotVerify.
package cmthash
