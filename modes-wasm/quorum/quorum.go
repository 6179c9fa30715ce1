// Package quorum implements the MACP Quorum mode (macp.mode.quorum.v1,
// RFC-MACP-0011) as a pure, deterministic guest.Mode.
//
// The declared participants are the electorate; the initiator (coordinator)
// sends the one ApprovalRequest and votes only if it is also listed. Every
// participant casts at most one ballot across Approve, Reject and Abstain.
// A Commitment is eligible once the approvals reach the required number
// (positive) or can no longer reach it (negative), and its outcome_positive
// must match that branch.
//
// The required number is the request's required_approvals unless the bound
// policy has a threshold rule, which replaces it: n_of_m requires value
// approvals, percentage requires ceil(value × N / 100) computed in integers,
// N being the declared participants at SessionStart. A stored legacy
// "weighted" rule falls back to required_approvals. The rule is read once at
// SessionStart and kept in the state. abstention.* rules do not change the
// outcome, so the mode does not read them.
//
// Checks done by the host before Step (envelope, session, Commitment
// authority and common payload checks) are not repeated here.
//
// Phases (State.Phase): Pending (no request), Voting (request open, no
// outcome eligible), ThresholdReached (positive eligible),
// ThresholdUnreachable (negative eligible), Committed.
package quorum

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// Identity of the mode.
const (
	ModeName    = "macp.mode.quorum.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	typeSessionStart    = "SessionStart"
	typeApprovalRequest = "ApprovalRequest"
	typeApprove         = "Approve"
	typeReject          = "Reject"
	typeAbstain         = "Abstain"
	typeCommitment      = "Commitment"
)

// Mode is the Quorum mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:             ModeName,
		ModeVersion:      ModeVersion,
		Title:            "Quorum Mode",
		Description:      "One approval request; declared participants approve, reject or abstain once each until the threshold is met or unreachable.",
		DeterminismClass: "semantic-deterministic",
		ParticipantModel: "quorum",
		MessageTypes: []string{
			typeSessionStart, typeApprovalRequest, typeApprove, typeReject, typeAbstain, typeCommitment,
		},
		TerminalMessageTypes: []string{typeCommitment},
		SchemaURIs: map[string]string{
			"protobuf": "proto/macp/modes/quorum/v1/quorum.proto",
		},
	}
}

// Step decides on one envelope.
func committed(s *State) bool { return s.Commitment != nil }

func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	s, res, ok := guest.Begin(req, start, Unmarshal, committed)
	if !ok {
		return res
	}
	switch env.MessageType {
	case typeApprovalRequest:
		return s.onRequest(req)
	case typeApprove:
		return s.onBallot(req, Approve)
	case typeReject:
		return s.onBallot(req, Reject)
	case typeAbstain:
		return s.onBallot(req, Abstain)
	case typeCommitment:
		return s.onCommitment(req)
	}
	if env.Sender != req.Session.Initiator && !req.Session.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s is not a member of the session", env.Sender)
	}
	return guest.Reject(macperr.InvalidEnvelope, "unknown message type %q", env.MessageType)
}

// start reads the policy's threshold rule and returns the initial state.
func start(sess *guest.Session) guest.Result {
	s := &State{Electorate: uint64(len(sess.Participants))}
	t, err := readThreshold(sess.PolicyRules, s.Electorate)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "quorum: bound policy rules: %v", err)
	}
	s.Threshold = t
	return guest.Accept(s.Marshal())
}

// readThreshold returns the policy's threshold rule (nil when absent) with
// the approvals it requires for an electorate of n.
func readThreshold(text string, n uint64) (*Threshold, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	var rules struct {
		Threshold *struct {
			Type  *string      `json:"type"`
			Value *json.Number `json:"value"`
		} `json:"threshold"`
	}
	if err := json.Unmarshal([]byte(text), &rules); err != nil {
		return nil, err
	}
	r := rules.Threshold
	if r == nil {
		return nil, nil
	}
	t := &Threshold{Type: "n_of_m"}
	if r.Type != nil {
		t.Type = *r.Type
	}
	if r.Value != nil {
		v, err := nonNegativeInt(*r.Value)
		if err != nil {
			return nil, fmt.Errorf("threshold.value: %w", err)
		}
		t.Value = v
	}
	switch t.Type {
	case "n_of_m":
		t.Required = t.Value
	case "percentage":
		if t.Value > 100 {
			return nil, fmt.Errorf("threshold.value %d is above 100 percent", t.Value)
		}
		t.Required = (t.Value*n + 99) / 100
	case "weighted":
		// Removed from the rule schema; stored legacy descriptors fall back
		// to required_approvals.
		return t, nil
	default:
		return nil, fmt.Errorf("unknown threshold.type %q", t.Type)
	}
	// A missing or zero value (legacy schemas allowed 0) sets no threshold.
	t.Applies = t.Value > 0
	if !t.Applies {
		t.Required = 0
	}
	return t, nil
}

// nonNegativeInt parses a JSON number that must be a non-negative integer
// (JSON Schema counts 5.0 as an integer).
func nonNegativeInt(n json.Number) (uint64, error) {
	if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if v < 0 {
			return 0, fmt.Errorf("%s is negative", n)
		}
		return uint64(v), nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("%s is not a non-negative integer", n)
	}
	return uint64(f), nil
}

func (s *State) onRequest(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.Sender != req.Session.Initiator {
		return guest.Reject(macperr.Forbidden, "only the coordinator %s may send the ApprovalRequest", req.Session.Initiator)
	}
	p, err := decodeRequest(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "ApprovalRequest payload: %v", err)
	}
	switch {
	case s.Request != nil:
		return guest.Reject(macperr.InvalidEnvelope, "the session already has approval request %q", s.Request.RequestID)
	case p.RequestID == "":
		return guest.Reject(macperr.InvalidEnvelope, "request_id is empty")
	case p.RequiredApprovals == 0:
		return guest.Reject(macperr.InvalidEnvelope, "required_approvals must be greater than zero")
	case uint64(p.RequiredApprovals) > s.Electorate:
		return guest.Reject(macperr.InvalidEnvelope, "required_approvals %d exceeds the %d declared participants", p.RequiredApprovals, s.Electorate)
	}
	p.RequestedBy = env.Sender
	s.Request = &p
	return guest.Accept(s.Marshal())
}

func (s *State) onBallot(req *guest.StepRequest, c Choice) guest.Result {
	env := &req.Envelope
	if !req.Session.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s is not a declared participant and may not vote", env.Sender)
	}
	requestID, reason, err := decodeBallot(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "%s payload: %v", env.MessageType, err)
	}
	switch {
	case s.Request == nil:
		return guest.Reject(macperr.InvalidEnvelope, "no approval request yet")
	case requestID != s.Request.RequestID:
		return guest.Reject(macperr.InvalidEnvelope, "request_id %q does not match the approval request %q", requestID, s.Request.RequestID)
	}
	if b := s.ballot(env.Sender); b != nil {
		return guest.Reject(macperr.InvalidEnvelope, "%s already cast %s; one ballot per voter", env.Sender, b.Choice)
	}
	s.Ballots = append(s.Ballots, Ballot{Voter: env.Sender, Choice: c, Reason: reason})
	return guest.Accept(s.Marshal())
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	c, err := guest.DecodeCommitment(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "Commitment payload: %v", err)
	}
	if s.Request == nil {
		return guest.Reject(macperr.InvalidEnvelope, "no approval request yet")
	}
	approvals, required := s.Count(Approve), s.Required()
	switch s.Eligible() {
	case EligibleNone:
		return guest.Reject(macperr.InvalidEnvelope, "not eligible: %d of %d required approvals, %d voters left", approvals, required, s.Remaining())
	case EligiblePositive:
		if !c.OutcomePositive {
			return guest.Reject(macperr.InvalidEnvelope, "the threshold is reached (%d of %d); only a positive commitment is eligible", approvals, required)
		}
	case EligibleNegative:
		if c.OutcomePositive {
			return guest.Reject(macperr.InvalidEnvelope, "the threshold is unreachable (%d of %d, %d voters left); only a negative commitment is eligible", approvals, required, s.Remaining())
		}
	}
	s.Commitment = &Commitment{
		CommitmentID:    c.CommitmentID,
		Action:          c.Action,
		OutcomePositive: c.OutcomePositive,
		Sender:          env.Sender,
	}
	return guest.Accept(s.Marshal())
}

// decodeRequest decodes macp.modes.quorum.v1.ApprovalRequestPayload.
func decodeRequest(b []byte) (r Request, err error) {
	err = guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case typ == protowire.BytesType && num >= 1 && num <= 3:
			if !utf8.Valid(v) {
				return fmt.Errorf("field %d is not valid UTF-8", num)
			}
			switch num {
			case 1:
				r.RequestID = string(v)
			case 2:
				r.Action = string(v)
			case 3:
				r.Summary = string(v)
			}
		case typ == protowire.BytesType && num == 4:
			r.Details = append([]byte(nil), v...)
		case typ == protowire.VarintType && num == 5:
			r.RequiredApprovals = uint32(n) // proto3 uint32 keeps the low 32 bits
		}
		return nil
	})
	return r, err
}

// decodeBallot decodes ApprovePayload, RejectPayload or AbstainPayload, which
// share the fields request_id = 1 and reason = 2.
func decodeBallot(b []byte) (requestID, reason string, err error) {
	err = guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			return nil
		}
		if !utf8.Valid(v) {
			return fmt.Errorf("field %d is not valid UTF-8", num)
		}
		if num == 1 {
			requestID = string(v)
		} else {
			reason = string(v)
		}
		return nil
	})
	return requestID, reason, err
}
