// Command wasm is the Handoff mode (macp.mode.handoff.v1) as a Concord
// WebAssembly module. Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o handoff.wasm ./modes-wasm/handoff/wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/handoff"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(handoff.Mode{}) }

func main() {}
