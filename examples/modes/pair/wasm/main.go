// Command wasm is the pair extension mode (ext.mplp.pair.v1)
// as a Concord WebAssembly module. Build it as a WASI reactor and upload it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o pair.wasm ./examples/modes/pair/wasm
//	concord mode push pair.wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/pair"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(pair.Mode) }

func main() {}
