// Command wasm is the MPAC intent mode (ext.mpac.intent.v1)
// as a Concord WebAssembly module. Build it as a WASI reactor and upload it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o mpac_intent.wasm ./examples/modes/mpac/wasm
//	concord mode push mpac_intent.wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/mpac"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
//
// The garbage collector keeps its defaults on purpose. A step allocates
// about one new state (some hundred bytes), so the guest collects every few
// thousand steps, for about 1% of its time. Measured through the host's
// engine (BenchmarkMPACCycleWasm), a larger heap made a cycle 15-30% slower,
// not faster: debug.SetGCPercent(400) or GC off (-1), each with
// debug.SetMemoryLimit(24 MiB) to stay under the 32 MiB instance cap, spread
// the allocations over 16-24 MiB of fresh linear memory instead of
// reusing a warm 4 MiB, and left every pooled instance that much larger. A
// smaller heap (GOGC 25 or 50) gained nothing either.
func init() { guest.Serve(mpac.Mode{}) }

func main() {}
