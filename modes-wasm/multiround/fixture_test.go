package multiround

import (
	"testing"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// TestFixtures drives the mode with the specification's multi_round_* conformance
// fixtures the way the host would (see internal/fixturetest).
func TestFixtures(t *testing.T) {
	fixturetest.Run(t, Mode{}, "multi_round_*.json", fixturetest.Options{HostOwns: func(code string) bool { return code == "POLICY_DENIED" }})
}
