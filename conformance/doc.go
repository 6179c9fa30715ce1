// Package conformance runs the MACP specification's conformance fixtures
// (shared/macp-spec/conformance) against a real Concord server over gRPC.
// It holds only tests; see conformance_test.go.
package conformance
