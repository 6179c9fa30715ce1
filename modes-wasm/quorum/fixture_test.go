package quorum

import (
	"testing"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// TestFixtures drives the mode with the specification's quorum_* conformance
// fixtures the way the host would (see internal/fixturetest).
func TestFixtures(t *testing.T) {
	fixturetest.Run(t, Mode{}, "quorum_*.json", fixturetest.Options{})
}
