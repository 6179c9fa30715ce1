// Command wasm is the Quorum mode (macp.mode.quorum.v1) as a Concord
// WebAssembly module. Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o quorum.wasm ./modes-wasm/quorum/wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/quorum"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(quorum.Mode{}) }

func main() {}
