// Command wasm is the Decision mode (macp.mode.decision.v1) as a Concord
// WebAssembly module. Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o decision.wasm ./modes-wasm/decision/wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/decision"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(decision.Mode{}) }

func main() {}
