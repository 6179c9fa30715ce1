// Command counter is a well-behaved test mode for host/wasm. Its state is
// the count as 8 big-endian bytes. SessionStart sets it to 0, Add adds the
// payload's 8 big-endian bytes (participants only, never below zero), and
// Echo replaces the state with a rendering of everything the host sent, so
// tests can check that each request field arrives intact.
package main

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

func init() { guest.Serve(counter{}) }

func main() {}

type counter struct{}

func (counter) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 "test.counter.v1",
		ModeVersion:          "1.0.0",
		Title:                "Counter",
		Description:          "adds numbers; a test mode",
		DeterminismClass:     "structural-only",
		ParticipantModel:     "declared",
		MessageTypes:         []string{"SessionStart", "Add", "Echo"},
		TerminalMessageTypes: []string{},
		SchemaURIs:           map[string]string{"Add": "test://add", "Echo": "test://echo"},
	}
}

func (counter) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	switch env.MessageType {
	case "SessionStart":
		if len(req.State) != 0 {
			return guest.Reject(macperr.InvalidEnvelope, "session already started")
		}
		return guest.Accept(encode(0))
	case "Add":
		if !req.Session.IsParticipant(env.Sender) {
			return guest.Reject(macperr.Forbidden, "%s is not a participant", env.Sender)
		}
		n, ok := decode(req.State)
		if !ok || len(env.Payload) != 8 {
			return guest.Reject(macperr.InvalidEnvelope, "bad state or payload")
		}
		sum := n + int64(binary.BigEndian.Uint64(env.Payload))
		if sum < 0 {
			return guest.Reject(macperr.Forbidden, "count would drop below zero")
		}
		return guest.Accept(encode(sum))
	case "Echo":
		s := &req.Session
		return guest.Accept(fmt.Appendf(nil, "%q|%q|%q|%q|%q|%q|%d|%x|%x|%q|%q|%q|%q|%q|%q|%q|%d|%q|%d|%d",
			env.MACPVersion, env.Mode, env.MessageType, env.MessageID, env.SessionID, env.Sender,
			env.TimestampUnixMs, env.Payload, req.State,
			s.SessionID, s.Mode, s.ModeVersion, s.ConfigurationVersion, s.PolicyVersion, s.Initiator,
			strings.Join(s.Participants, ","), s.StartedAtUnixMs, s.PolicyRules, s.PolicySchemaVersion,
			req.NowUnixMs))
	}
	return guest.Reject(macperr.InvalidEnvelope, "unknown message type %q", env.MessageType)
}

func (counter) View(state []byte, s *guest.Session) ([]byte, error) {
	n, ok := decode(state)
	if !ok {
		return nil, fmt.Errorf("state is %d bytes, want 8", len(state))
	}
	return fmt.Appendf(nil, `{"count":%d,"session":%q}`, n, s.SessionID), nil
}

func encode(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

func decode(b []byte) (int64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}
