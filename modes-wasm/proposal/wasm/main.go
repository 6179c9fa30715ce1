// Command wasm is the Proposal mode (macp.mode.proposal.v1) as a Concord
// WebAssembly module. Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o proposal.wasm ./modes-wasm/proposal/wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/proposal"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(proposal.Mode{}) }

func main() {}
