// Package handoff implements the MACP Handoff mode (macp.mode.handoff.v1,
// RFC-MACP-0010) as a pure, deterministic guest.Mode.
//
// The session's initiator is the current responsibility owner and must be a
// declared participant. The owner offers the responsibility to one declared
// participant at a time (HandoffOffer), may attach context to an offer
// (HandoffContext, also after it was answered), and the offer's target
// answers with HandoffAccept or HandoffDecline. After a decline the owner may
// make a new offer; after an accept no further offer is possible. A
// Commitment becomes eligible once some offer was accepted or declined.
//
// # Implicit accept
//
// The bound policy's acceptance.implicit_accept_timeout_ms is read once at
// SessionStart and kept in the state, and every offer records the session
// clock at which it was accepted (StepRequest.SessionClockMs: open time
// since the TTL anchor, suspensions excluded). While an offer is pending and
// the timeout is set, every accepted step returns a guest.Timer due at that
// clock plus the timeout, asking the runtime for the synthetic HandoffAccept:
// implicit=true, sender and accepted_by = the offer's target, message_id =
// "implicit-accept:" + handoff_id. Once the offer is answered the timer is no
// longer returned, which withdraws it.
//
// The runtime offers the synthetic accept with StepRequest.RuntimeWritten
// set. The mode checks implicit=true, a non-zero policy timeout, the
// message_id above, and the usual target and still-Offered rules, so a late
// synthetic accept that loses a race to a real answer is refused. A
// client-sent HandoffAccept with implicit=true is INVALID_ENVELOPE.
//
// Checks done by the host before Step (envelope, session, Commitment
// authority and common payload checks) are not repeated here.
package handoff

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// Identity of the mode.
const (
	ModeName    = "macp.mode.handoff.v1"
	ModeVersion = "1.0.0"
)

// ImplicitAcceptIDPrefix prefixes the message_id of the runtime's synthetic
// HandoffAccept; the handoff_id follows it.
const ImplicitAcceptIDPrefix = "implicit-accept:"

// Message types of the mode.
const (
	typeSessionStart   = "SessionStart"
	typeHandoffOffer   = "HandoffOffer"
	typeHandoffContext = "HandoffContext"
	typeHandoffAccept  = "HandoffAccept"
	typeHandoffDecline = "HandoffDecline"
	typeCommitment     = "Commitment"
)

// Mode is the Handoff mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor { return Descriptor() }

// Descriptor returns the descriptor of the Handoff mode.
func Descriptor() guest.Descriptor {
	return guest.Descriptor{
		Mode:             ModeName,
		ModeVersion:      ModeVersion,
		Title:            "Handoff Mode",
		Description:      "Transfer scoped responsibility from the current owner to one named participant, who accepts or declines.",
		DeterminismClass: "context-frozen",
		ParticipantModel: "delegated",
		MessageTypes: []string{
			typeSessionStart, typeHandoffOffer, typeHandoffContext,
			typeHandoffAccept, typeHandoffDecline, typeCommitment,
		},
		TerminalMessageTypes: []string{typeCommitment},
		SchemaURIs: map[string]string{
			"protobuf": "proto/macp/modes/handoff/v1/handoff.proto",
		},
	}
}

// Step decides on one envelope sent by a client.
func (Mode) Step(req *guest.StepRequest) guest.Result { return step(req, req.RuntimeWritten) }

func committed(s *State) bool { return s.Commitment != nil }

func step(req *guest.StepRequest, runtimeWritten bool) guest.Result {
	env := &req.Envelope
	s, res, ok := guest.Begin(req, start, Unmarshal, committed)
	if !ok {
		return res
	}
	if runtimeWritten && env.MessageType != typeHandoffAccept {
		return guest.Reject(macperr.InvalidEnvelope, "the runtime writes no %s in this mode", env.MessageType)
	}
	switch env.MessageType {
	case typeHandoffOffer:
		return s.onOffer(req)
	case typeHandoffContext:
		return s.onContext(req)
	case typeHandoffAccept:
		return s.onAnswer(req, Accepted, runtimeWritten)
	case typeHandoffDecline:
		return s.onAnswer(req, Declined, false)
	case typeCommitment:
		return s.onCommitment(req)
	}
	if env.Sender != req.Session.Initiator && !req.Session.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s is not a member of the session", env.Sender)
	}
	return guest.Reject(macperr.InvalidEnvelope, "unknown message type %q", env.MessageType)
}

// start validates the mode's SessionStart rules and returns the initial state.
func start(sess *guest.Session) guest.Result {
	if !sess.IsParticipant(sess.Initiator) {
		return guest.Reject(macperr.InvalidEnvelope, "handoff: the initiator %s must be a declared participant", sess.Initiator)
	}
	timeout, err := readRules(sess.PolicyRules)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "handoff: bound policy rules: %v", err)
	}
	s := &State{ImplicitAcceptTimeoutMs: timeout}
	return s.accept()
}

// readRules returns acceptance.implicit_accept_timeout_ms from the policy's
// rules (0 when absent). Other keys are not this mode's business.
func readRules(text string) (int64, error) {
	if strings.TrimSpace(text) == "" {
		return 0, nil
	}
	var rules struct {
		Acceptance *struct {
			ImplicitAcceptTimeoutMs *json.Number `json:"implicit_accept_timeout_ms"`
		} `json:"acceptance"`
	}
	if err := json.Unmarshal([]byte(text), &rules); err != nil {
		return 0, err
	}
	if rules.Acceptance == nil || rules.Acceptance.ImplicitAcceptTimeoutMs == nil {
		return 0, nil
	}
	v, err := nonNegativeInt(*rules.Acceptance.ImplicitAcceptTimeoutMs)
	if err != nil {
		return 0, fmt.Errorf("acceptance.implicit_accept_timeout_ms: %w", err)
	}
	return v, nil
}

// nonNegativeInt parses a JSON number that must be a non-negative integer
// (JSON Schema counts 5.0 as an integer).
func nonNegativeInt(n json.Number) (int64, error) {
	if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if v < 0 {
			return 0, fmt.Errorf("%s is negative", n)
		}
		return v, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("%s is not a non-negative integer", n)
	}
	return int64(f), nil
}

func (s *State) onOffer(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.Sender != req.Session.Initiator {
		return guest.Reject(macperr.Forbidden, "only the current owner %s may offer a handoff", req.Session.Initiator)
	}
	p, err := decodeOffer(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "HandoffOffer payload: %v", err)
	}
	switch {
	case p.HandoffID == "":
		return guest.Reject(macperr.InvalidEnvelope, "handoff_id is empty")
	case s.offer(p.HandoffID) != nil:
		return guest.Reject(macperr.InvalidEnvelope, "handoff_id %q was already used", p.HandoffID)
	case p.TargetParticipant == "":
		return guest.Reject(macperr.InvalidEnvelope, "target_participant is empty")
	case !req.Session.IsParticipant(p.TargetParticipant):
		return guest.Reject(macperr.InvalidEnvelope, "target_participant %s is not a declared participant", p.TargetParticipant)
	case p.TargetParticipant == env.Sender:
		return guest.Reject(macperr.InvalidEnvelope, "the owner cannot hand off to itself")
	}
	if a := s.accepted(); a != nil {
		return guest.Reject(macperr.InvalidEnvelope, "handoff %q was already accepted; no further offers", a.HandoffID)
	}
	if o := s.pending(); o != nil {
		return guest.Reject(macperr.InvalidEnvelope, "handoff %q is still pending", o.HandoffID)
	}
	s.Offers = append(s.Offers, Offer{
		HandoffID:         p.HandoffID,
		TargetParticipant: p.TargetParticipant,
		Scope:             p.Scope,
		Reason:            p.Reason,
		OfferedBy:         env.Sender,
		OfferedAtUnixMs:   req.NowUnixMs,
		OfferedAtClockMs:  req.SessionClockMs,
		Disposition:       Offered,
	})
	return s.accept()
}

func (s *State) onContext(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	// Only the owner authors offers, so only the owner may add context.
	if env.Sender != req.Session.Initiator {
		return guest.Reject(macperr.Forbidden, "only the current owner %s may send handoff context", req.Session.Initiator)
	}
	p, err := decodeContext(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "HandoffContext payload: %v", err)
	}
	o := s.offer(p.HandoffID)
	if o == nil {
		return guest.Reject(macperr.InvalidEnvelope, "no handoff offer %q", p.HandoffID)
	}
	if o.OfferedBy != env.Sender {
		return guest.Reject(macperr.Forbidden, "handoff %q was offered by %s", o.HandoffID, o.OfferedBy)
	}
	// Context after the answer is accepted as supplementary documentation.
	s.Contexts = append(s.Contexts, Context{
		HandoffID:   p.HandoffID,
		ContentType: p.ContentType,
		Context:     p.Context,
		Sender:      env.Sender,
	})
	return s.accept()
}

// onAnswer handles HandoffAccept (to = Accepted) and HandoffDecline
// (to = Declined).
func (s *State) onAnswer(req *guest.StepRequest, to Disposition, runtimeWritten bool) guest.Result {
	env := &req.Envelope
	// The owner is never a target (an offer's target differs from its
	// author), so only other declared participants can ever answer.
	if env.Sender == req.Session.Initiator || !req.Session.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s may not send %s", env.Sender, env.MessageType)
	}
	p, err := decodeAnswer(env.Payload, to == Accepted)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "%s payload: %v", env.MessageType, err)
	}
	o := s.offer(p.HandoffID)
	if o == nil {
		return guest.Reject(macperr.InvalidEnvelope, "no handoff offer %q", p.HandoffID)
	}
	if env.Sender != o.TargetParticipant {
		return guest.Reject(macperr.Forbidden, "only the target %s may answer handoff %q", o.TargetParticipant, o.HandoffID)
	}
	if p.By != "" && p.By != env.Sender {
		return guest.Reject(macperr.InvalidEnvelope, "%s names %s, not the sender", env.MessageType, p.By)
	}
	switch {
	case p.Implicit && !runtimeWritten:
		return guest.Reject(macperr.InvalidEnvelope, "implicit=true is reserved for the runtime's synthetic accept")
	case runtimeWritten && !p.Implicit:
		return guest.Reject(macperr.InvalidEnvelope, "a runtime-written HandoffAccept must set implicit=true")
	case runtimeWritten && s.ImplicitAcceptTimeoutMs <= 0:
		return guest.Reject(macperr.InvalidEnvelope, "the bound policy has no implicit accept")
	case runtimeWritten && env.MessageID != ImplicitAcceptIDPrefix+o.HandoffID:
		return guest.Reject(macperr.InvalidEnvelope, "implicit accept message_id must be %q", ImplicitAcceptIDPrefix+o.HandoffID)
	}
	if o.Disposition != Offered {
		return guest.Reject(macperr.InvalidEnvelope, "handoff %q was already %s", o.HandoffID, strings.ToLower(o.Disposition.String()))
	}
	o.Disposition = to
	o.RespondedBy = env.Sender
	o.ResponseReason = p.Reason
	o.Implicit = p.Implicit
	return s.accept()
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	c, err := guest.DecodeCommitment(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "Commitment payload: %v", err)
	}
	if !s.answered() {
		return guest.Reject(macperr.InvalidEnvelope, "no handoff offer was accepted or declined yet")
	}
	s.Commitment = &Commitment{
		CommitmentID:    c.CommitmentID,
		Action:          c.Action,
		OutcomePositive: c.OutcomePositive,
		Sender:          env.Sender,
	}
	return s.accept()
}

// accept accepts the step with s as the new state and the timers s needs.
func (s *State) accept() guest.Result {
	res := guest.Accept(s.Marshal())
	if t, ok := s.implicitAcceptTimer(); ok {
		res.Timers = []guest.Timer{t}
	}
	return res
}

// implicitAcceptTimer returns the timer of the pending offer's synthetic
// accept, if the policy asks for one and an offer is pending.
func (s *State) implicitAcceptTimer() (guest.Timer, bool) {
	o := s.pending()
	if o == nil || s.ImplicitAcceptTimeoutMs <= 0 || s.Commitment != nil {
		return guest.Timer{}, false
	}
	var p []byte
	p = guest.AppendString(p, 1, o.HandoffID)
	p = guest.AppendString(p, 2, o.TargetParticipant)
	p = guest.AppendVarint(p, 4, 1) // implicit
	return guest.Timer{
		DueSessionClockMs: o.OfferedAtClockMs + s.ImplicitAcceptTimeoutMs,
		MessageType:       typeHandoffAccept,
		MessageID:         ImplicitAcceptIDPrefix + o.HandoffID,
		Sender:            o.TargetParticipant,
		Payload:           p,
	}, true
}
