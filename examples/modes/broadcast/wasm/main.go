// Command wasm is the broadcast extension mode (ext.mplp.broadcast.v1)
// as a Concord WebAssembly module. Build it as a WASI reactor and upload it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o broadcast.wasm ./examples/modes/broadcast/wasm
//	concord mode push broadcast.wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/broadcast"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(broadcast.Mode) }

func main() {}
