package task

import (
	"bytes"
	"testing"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// TestConformanceFixtures drives the mode with the specification's task_*
// conformance fixtures the way the host would (see internal/fixturetest),
// checking that every accepted state decodes and re-encodes to itself.
func TestConformanceFixtures(t *testing.T) {
	fixturetest.Run(t, Mode{}, "task_*.json", fixturetest.Options{AfterStep: checkRoundTrip})
}

// checkRoundTrip checks that state bytes decode and re-encode to themselves.
func checkRoundTrip(t *testing.T, b []byte) {
	t.Helper()
	s, err := decodeState(b)
	if err != nil {
		t.Fatalf("decode state: %v", err)
	}
	if again := s.encode(); !bytes.Equal(again, b) {
		t.Fatalf("state round trip changed bytes:\n%x\n%x", b, again)
	}
}
