// Package conformance runs the MACP specification's conformance fixtures
// (shared/macp-spec/conformance) against a real Concord server over gRPC,
// and asserts the specification's parity contract (vendored in parity/).
// It holds only tests; see conformance_test.go and parity_test.go.
package conformance
