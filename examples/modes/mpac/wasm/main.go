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
func init() { guest.Serve(mpac.Mode) }

func main() {}
