package task

import (
	"testing"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// FuzzStepAfterHistory runs Step natively on one fuzzed envelope after a
// prefix of the happy-path fixture; see fixturetest.FuzzStep for the
// properties it checks. Run with:
//
//	go test -run '^$' -fuzz FuzzStepAfterHistory ./modes-wasm/task/
func FuzzStepAfterHistory(f *testing.F) {
	fixturetest.FuzzStep(f, Mode{}, "task_happy_path.json")
}
