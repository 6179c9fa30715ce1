package proposal

import (
	"testing"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// FuzzStepAfterHistory runs Step natively on one fuzzed envelope after a
// prefix of the happy-path fixture; see fixturetest.FuzzStep for the
// properties it checks. Run with:
//
//	go test -run '^$' -fuzz FuzzStepAfterHistory ./modes-wasm/proposal/
func FuzzStepAfterHistory(f *testing.F) {
	fixturetest.FuzzStep(f, Mode{}, "proposal_happy_path.json")
}
