// Command wasm is the round-robin extension mode (ext.mplp.round_robin.v1)
// as a Concord WebAssembly module. Build it as a WASI reactor and upload it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o round_robin.wasm ./examples/modes/roundrobin/wasm
//	concord mode push round_robin.wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/roundrobin"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(roundrobin.Mode) }

func main() {}
