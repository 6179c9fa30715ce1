// Command hostile is a misbehaving test mode for host/wasm. Each message type
// triggers one failure the host must contain: Panic (recovered by the SDK),
// Trap (an out-of-bounds store), Exit (proc_exit), Loop (never returns), Bomb
// (allocates without bound), Sleep (waits for a clock that never moves) and
// Big (returns a state of the payload's
// big-endian length). Garbage allocates the payload's big-endian number of
// bytes in 1 KiB pieces and drops them, as a busy mode does. Ok accepts and
// returns the state unchanged.
package main

import (
	"encoding/binary"
	"os"
	"time"
	"unsafe"

	"github.com/concord-macp/concord/abi/guest"
)

func init() { guest.Serve(hostile{}) }

func main() {}

type hostile struct{}

// sink keeps the Bomb's allocations reachable.
var sink [][]byte

// piece holds the latest Garbage allocation, so the allocations are not
// optimized away.
var piece []byte

// spin is read by Loop so that the loop has a body the compiler keeps.
var spin uint64

func (hostile) Describe() guest.Descriptor {
	return guest.Descriptor{Mode: "test.hostile.v1", ModeVersion: "1.0.0"}
}

func (hostile) Step(req *guest.StepRequest) guest.Result {
	switch req.Envelope.MessageType {
	case "Panic":
		panic("hostile: deliberate panic")
	case "Trap":
		// Far beyond any memory the cap allows: the store traps.
		*(*byte)(unsafe.Add(unsafe.Pointer(&spin), 0xf0000000)) = 1
	case "Exit":
		os.Exit(3)
	case "Loop":
		for {
			spin++
		}
	case "Sleep":
		time.Sleep(time.Millisecond)
	case "Bomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "Garbage":
		for range binary.BigEndian.Uint64(req.Envelope.Payload) / 1024 {
			piece = make([]byte, 1024)
		}
	case "Big":
		return guest.Accept(make([]byte, binary.BigEndian.Uint64(req.Envelope.Payload)))
	}
	return guest.Accept(req.State)
}

func (hostile) View(state []byte, _ *guest.Session) ([]byte, error) {
	return []byte(`{}`), nil
}
