// Command wasm is the swarm extension mode (ext.mplp.swarm.v1)
// as a Concord WebAssembly module. Build it as a WASI reactor and upload it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o swarm.wasm ./examples/modes/swarm/wasm
//	concord mode push swarm.wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/swarm"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(swarm.Mode) }

func main() {}
