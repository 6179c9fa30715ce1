// Package multiround implements the experimental MACP multi-round
// convergence mode (ext.multi_round.v1) as a pure, deterministic guest.Mode.
// The mode has no RFC; its rules come from the reference runtime as recorded
// in the spec digest (§6.6).
//
// Declared participants Contribute values; each participant's latest value
// counts. A session-wide round counter goes up whenever a Contribute changes
// its sender's value (a first contribution is a change, resubmitting the same
// value is not). The session has converged when every declared participant
// has contributed and all latest values are equal; after that no
// Contribute is accepted. The initiator (coordinator), who need not be a
// participant, then binds the result with a Commitment. There are no policy
// rules of this mode; the host applies none to its Commitments.
//
// Contribute payloads are macp.modes.multi_round.v1.ContributePayload{value}
// or, from legacy clients, the UTF-8 JSON object {"value": "..."}.
//
// Phases (State.Phase): Contributing, Converged, Committed.
package multiround

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// Identity of the mode.
const (
	ModeName    = "ext.multi_round.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	typeSessionStart = "SessionStart"
	typeContribute   = "Contribute"
	typeCommitment   = "Commitment"
)

// Mode is the multi-round mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		Title:                "Multi-Round Convergence Mode",
		Description:          "Declared participants revise their values over rounds until all agree; the coordinator then commits the converged value.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "peer",
		MessageTypes:         []string{typeSessionStart, typeContribute, typeCommitment},
		TerminalMessageTypes: []string{typeCommitment},
		SchemaURIs: map[string]string{
			"protobuf": "proto/macp/modes/multi_round/v1/multi_round.proto",
		},
	}
}

// Step decides on one envelope.
func start(*guest.Session) guest.Result { return guest.Accept((&State{}).Marshal()) }

func committed(s *State) bool { return s.Commitment != nil }

func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	s, res, ok := guest.Begin(req, start, Unmarshal, committed)
	if !ok {
		return res
	}
	switch env.MessageType {
	case typeContribute:
		return s.onContribute(req)
	case typeCommitment:
		return s.onCommitment(req)
	}
	if env.Sender != req.Session.Initiator && !req.Session.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s is not a member of the session", env.Sender)
	}
	return guest.Reject(macperr.InvalidEnvelope, "unknown message type %q", env.MessageType)
}

func (s *State) onContribute(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if !req.Session.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s is not a declared participant and may not contribute", env.Sender)
	}
	value, err := DecodeContribute(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "Contribute payload: %v", err)
	}
	if s.Converged {
		return guest.Reject(macperr.InvalidEnvelope, "the session already converged on %q", s.ConvergedValue())
	}
	s.contribute(env.Sender, value)
	s.Converged = converged(s, req.Session.Participants)
	return guest.Accept(s.Marshal())
}

// contribute records value as sender's latest and counts a round when it
// changes the sender's previous value.
func (s *State) contribute(sender, value string) {
	for i := range s.Contributions {
		c := &s.Contributions[i]
		if c.Participant == sender {
			if c.Value != value {
				c.Value = value
				s.Round++
			}
			return
		}
	}
	s.Contributions = append(s.Contributions, Contribution{Participant: sender, Value: value})
	s.Round++
}

// converged reports whether every declared participant contributed and all
// latest values are equal. With no participants nothing can converge.
func converged(s *State, participants []string) bool {
	if len(participants) == 0 {
		return false
	}
	first, ok := s.value(participants[0])
	if !ok {
		return false
	}
	for _, p := range participants[1:] {
		if v, ok := s.value(p); !ok || v != first {
			return false
		}
	}
	return true
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.Sender != req.Session.Initiator {
		return guest.Reject(macperr.Forbidden, "only the initiator %s may commit a multi-round session", req.Session.Initiator)
	}
	c, err := guest.DecodeCommitment(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "Commitment payload: %v", err)
	}
	if !s.Converged {
		return guest.Reject(macperr.InvalidEnvelope, "the participants have not converged")
	}
	s.Commitment = &Commitment{
		CommitmentID:    c.CommitmentID,
		Action:          c.Action,
		OutcomePositive: c.OutcomePositive,
		Sender:          env.Sender,
	}
	return guest.Accept(s.Marshal())
}

var errEmptyValue = errors.New("value is empty")

// DecodeContribute returns the value of a Contribute payload. A payload that
// starts with '{' is read as the legacy JSON object {"value": "..."};
// anything else must first be a strict ContributePayload (only field 1, the
// whole buffer, valid UTF-8), and failing that is tried as JSON once more
// (JSON with leading white space). A canonical ContributePayload starts with
// the tag byte 0x0A, never with '{', so it is never misread as JSON. Empty
// payloads and empty values are refused.
func DecodeContribute(b []byte) (string, error) {
	if len(b) == 0 {
		return "", errors.New("empty payload")
	}
	var v string
	var err error
	if b[0] == '{' {
		v, err = decodeJSON(b)
	} else if v, err = decodeProto(b); err != nil {
		var jerr error
		if v, jerr = decodeJSON(b); jerr != nil {
			return "", fmt.Errorf("neither a ContributePayload (%v) nor a JSON object with a string value (%v)", err, jerr)
		}
		err = nil
	}
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", errEmptyValue
	}
	return v, nil
}

// decodeProto decodes a ContributePayload strictly.
func decodeProto(b []byte) (string, error) {
	var v string
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, raw []byte, _ uint64) error {
		if num != 1 || typ != protowire.BytesType {
			return fmt.Errorf("unexpected field %d (wire type %d)", num, typ)
		}
		if !utf8.Valid(raw) {
			return errors.New("value is not valid UTF-8")
		}
		v = string(raw)
		return nil
	})
	return v, err
}

// decodeJSON decodes the legacy {"value": "..."} object. The key is matched
// exactly; other keys are ignored.
func decodeJSON(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errors.New("not valid UTF-8")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return "", err
	}
	raw, ok := obj["value"]
	if !ok {
		return "", errors.New(`no "value" key`)
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", errors.New(`"value" is not a string`)
	}
	return v, nil
}
