// Command wasm is the Task mode (macp.mode.task.v1) as a Concord WebAssembly
// module. Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o task.wasm ./modes-wasm/task/wasm
package main

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/task"
)

// A reactor runs package init functions but never main, so the mode is
// registered here.
func init() { guest.Serve(task.Mode{}) }

func main() {}
