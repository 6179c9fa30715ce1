package guest

import (
	"fmt"

	"github.com/concord-macp/concord/macperr"
)

// Envelope is the MACP envelope offered to the mode. Sender is the
// authenticated identity, never a value the client chose.
type Envelope struct {
	MACPVersion     string
	Mode            string
	MessageType     string
	MessageID       string
	SessionID       string
	Sender          string
	TimestampUnixMs int64
	Payload         []byte
}

// Session is the bound context of the session, fixed at SessionStart.
type Session struct {
	SessionID            string
	Mode                 string
	ModeVersion          string
	ConfigurationVersion string
	// PolicyVersion is the resolved policy id ("policy.default" if none).
	PolicyVersion string
	// Initiator is the authenticated sender of the SessionStart.
	Initiator string
	// Participants are the declared participants in SessionStart order.
	Participants    []string
	StartedAtUnixMs int64
	// PolicyRules is the JSON object text of the bound policy's rules.
	PolicyRules         string
	PolicySchemaVersion uint32
}

// IsParticipant reports whether id is a declared participant.
func (s *Session) IsParticipant(id string) bool {
	for _, p := range s.Participants {
		if p == id {
			return true
		}
	}
	return false
}

// IsMember reports whether id is the initiator or a declared participant.
func (s *Session) IsMember(id string) bool {
	return id == s.Initiator || s.IsParticipant(id)
}

// StepRequest is one envelope offered to the mode with the state that the
// previous accepted step produced (empty for SessionStart).
type StepRequest struct {
	State     []byte
	Envelope  Envelope
	Session   Session
	NowUnixMs int64
	// RuntimeWritten is true when the runtime wrote the envelope itself
	// because a Timer the mode set came due; false for agents' envelopes.
	RuntimeWritten bool
	// SessionClockMs is how long the session has been open since its TTL
	// anchor, in milliseconds, not counting suspensions. Timers run on it.
	SessionClockMs int64
}

// Timer asks the runtime to write an envelope into the session by itself
// once the session clock reaches DueSessionClockMs. The runtime then offers
// it to the mode with RuntimeWritten set, before anything that arrives
// later; if the mode accepts it, it enters the log as a runtime record.
//
// MessageID must start with a prefix reserved for the runtime
// ("implicit-accept:" or "runtime:"); agents can never send such ids.
type Timer struct {
	DueSessionClockMs int64
	MessageType       string
	MessageID         string
	// Sender is the participant on whose behalf the runtime writes.
	Sender  string
	Payload []byte
}

// Result is the mode's verdict on one envelope.
type Result struct {
	Accepted bool
	// Code is a MACP error registry code when the envelope is rejected.
	Code    macperr.Code
	Message string
	// State is the new mode state when the envelope is accepted.
	State []byte
	// Timers are all the timers the session should have pending after an
	// accepted step. They replace the previous step's: a mode that keeps a
	// timer returns it again on every step until it is due or withdrawn.
	Timers []Timer
}

// Accept accepts the envelope and records state as the new mode state.
func Accept(state []byte) Result { return Result{Accepted: true, State: state} }

// Reject rejects the envelope with a MACP error code and a message.
func Reject(code macperr.Code, format string, args ...any) Result {
	return Result{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Descriptor describes a mode; it mirrors macp.v1.ModeDescriptor.
type Descriptor struct {
	Mode                 string
	ModeVersion          string
	Title                string
	Description          string
	DeterminismClass     string
	ParticipantModel     string
	MessageTypes         []string
	TerminalMessageTypes []string
	SchemaURIs           map[string]string
}

// Mode is a coordination mode: a pure, deterministic function from
// (state, envelope, session) to (verdict, new state). It must not keep
// anything between calls outside the state bytes it returns.
type Mode interface {
	// Describe returns the mode's descriptor.
	Describe() Descriptor
	// Step decides on one envelope. For SessionStart, req.State is empty
	// and the mode returns its initial state.
	Step(req *StepRequest) Result
	// View renders state as a JSON object for tools and people.
	View(state []byte, session *Session) ([]byte, error)
}
