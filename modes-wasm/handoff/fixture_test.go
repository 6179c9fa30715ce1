package handoff

import (
	"testing"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// TestFixtures drives the mode with the specification's handoff_* conformance
// fixtures the way the host would (see internal/fixturetest).
func TestFixtures(t *testing.T) {
	fixturetest.Run(t, Mode{}, "handoff_*.json", fixturetest.Options{})
}
