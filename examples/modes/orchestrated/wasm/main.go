// Command wasm is the orchestrated extension mode (ext.mplp.orchestrated.v1)
// as a Concord WebAssembly module. Build it as a WASI reactor and upload it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o orchestrated.wasm ./examples/modes/orchestrated/wasm
//	concord mode push orchestrated.wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/orchestrated"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(orchestrated.Mode) }

func main() {}
