// Command extmode is an extension mode for the upload tests. Its mode name,
// version and behaviour are set at build time (-ldflags -X), so that one
// source gives several distinct modules: a well-behaved counter, a second
// version of it, modules with bad descriptors, and a hostile one whose
// message types misbehave on purpose.
package main

import (
	"encoding/binary"
	"unsafe"

	"github.com/concord-macp/concord/abi/guest"
)

// Set with -ldflags "-X main.modeName=… -X main.step=…".
var (
	modeName = "ext.test.counter.v1"
	version  = "1.0.0"
	// step is how much a Tick adds: two builds with different steps are two
	// versions of the mode with observably different state.
	step = "1"
)

func init() { guest.Serve(mode{}) }

func main() {}

type mode struct{}

var (
	sink [][]byte
	spin uint64
)

func (mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode: modeName, ModeVersion: version, Title: "test counter",
		MessageTypes:         []string{"Tick", "Panic", "Trap", "Loop", "Bomb", "Big", "Commitment"},
		TerminalMessageTypes: []string{"Commitment"},
	}
}

func (mode) Step(req *guest.StepRequest) guest.Result {
	n := uint64(0)
	if len(req.State) == 8 {
		n = binary.BigEndian.Uint64(req.State)
	}
	switch req.Envelope.MessageType {
	case "SessionStart":
		return guest.Accept(binary.BigEndian.AppendUint64(nil, 0))
	case "Tick":
		if !req.Session.IsParticipant(req.Envelope.Sender) {
			return guest.Reject("FORBIDDEN", "%s is not a participant", req.Envelope.Sender)
		}
		inc := uint64(1)
		if step == "2" {
			inc = 2
		}
		return guest.Accept(binary.BigEndian.AppendUint64(nil, n+inc))
	case "Commitment":
		if n == 0 {
			return guest.Reject("INVALID_ENVELOPE", "no tick yet")
		}
		return guest.Accept(req.State)
	case "Panic":
		panic("deliberate")
	case "Trap":
		*(*byte)(unsafe.Add(unsafe.Pointer(&spin), 0xf0000000)) = 1
	case "Loop":
		for {
			spin++
		}
	case "Bomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "Big":
		return guest.Accept(make([]byte, 64<<20))
	}
	return guest.Reject("INVALID_ENVELOPE", "unknown message type %s", req.Envelope.MessageType)
}

func (mode) View(state []byte, _ *guest.Session) ([]byte, error) {
	n := uint64(0)
	if len(state) == 8 {
		n = binary.BigEndian.Uint64(state)
	}
	return []byte(`{"count":` + itoa(n) + `}`), nil
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
