// Command wasm is the experimental multi-round mode (ext.multi_round.v1) as
// a Concord WebAssembly module. Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o multiround.wasm ./modes-wasm/multiround/wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/multiround"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(multiround.Mode{}) }

func main() {}
