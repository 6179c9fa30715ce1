// Package decision implements the MACP Decision mode (macp.mode.decision.v1,
// mode version 1.0.0, RFC-MACP-0007) as a pure function over bytes, for the
// Concord guest SDK (abi/guest).
//
// Declared participants table proposals, evaluate them, object to them and
// vote on them; the session ends with one Commitment. The mode enforces who
// may send what and every transcript rule of the mode. The host has already
// checked the envelope, the session's lifecycle and the Commitment's
// authority and common payload fields, and it applies the bound policy
// (tally, veto, quorum) after the mode has accepted a Commitment.
//
// The package uses only protowire, never the full protobuf runtime, so that
// the WebAssembly module built from ./wasm stays small.
package decision

import (
	"errors"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// Identity of the mode.
const (
	ModeName    = "macp.mode.decision.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgProposal     = "Proposal"
	MsgEvaluation   = "Evaluation"
	MsgObjection    = "Objection"
	MsgVote         = "Vote"
	MsgCommitment   = "Commitment"
)

// Mode is the Decision mode. Its zero value is ready to use and it holds no
// state: everything lives in the state bytes.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:        ModeName,
		ModeVersion: ModeVersion,
		Title:       "Decision Mode",
		Description: "Declared participants submit proposals, evaluations, objections and votes; " +
			"the session ends with one authoritative Commitment.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "declared",
		MessageTypes:         []string{MsgSessionStart, MsgProposal, MsgEvaluation, MsgObjection, MsgVote, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs: map[string]string{
			"protobuf": "proto/macp/modes/decision/v1/decision.proto",
		},
	}
}

// Step decides on one envelope; see the package documentation.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	switch env.MessageType {
	case MsgSessionStart:
		if len(req.State) != 0 {
			return guest.Reject(macperr.InvalidEnvelope, "the session has already started")
		}
		return guest.Accept(initialState())
	case MsgProposal, MsgEvaluation, MsgObjection, MsgVote:
		// Authorization comes before structure: an outsider's malformed
		// message is FORBIDDEN, not INVALID_ENVELOPE.
		if !req.Session.IsParticipant(env.Sender) {
			return guest.Reject(macperr.Forbidden, "%s may only be sent by a declared participant; %q is not one", env.MessageType, env.Sender)
		}
	case MsgCommitment:
	default:
		return guest.Reject(macperr.InvalidEnvelope, "message type %q is not part of %s", env.MessageType, ModeName)
	}

	state := req.State
	if len(state) == 0 {
		state = initialState()
	}
	switch env.MessageType {
	case MsgProposal:
		return stepProposal(state, env)
	case MsgEvaluation:
		return stepEvaluation(state, env)
	case MsgObjection:
		return stepObjection(state, env)
	case MsgVote:
		return stepVote(state, env)
	default:
		return stepCommitment(state, env)
	}
}

var errMalformedRecord = errors.New("malformed record")

// scratchSize is the capacity of the buffer a step builds its new record in;
// a buffer of constant size stays on the stack.
const scratchSize = 256

// history is what a step needs to know about the accepted history.
type history struct {
	layout    layout
	proposals bool // at least one Proposal was accepted
	votes     bool // at least one Vote was cast
	committed bool
	// found: a proposal with the step's target id exists.
	found bool
	// voted: the step's voter already voted on the target proposal.
	voted bool
}

// scan reads what a step needs from state: the framing, and only the
// groups its rules look at — the proposals when it names a target, the
// votes for a ballot (kind fieldVote). Evaluations and objections are never
// read, so a step's cost does not grow with them.
func scan(state []byte, kind protowire.Number, target, voter string) (history, error) {
	l, err := readLayout(state)
	if err != nil {
		return history{}, err
	}
	h := history{layout: l, proposals: l[fieldProposal].present, votes: l[fieldVote].present, committed: l[fieldCommitment].present}
	if sp := l[fieldProposal]; target != "" && sp.present {
		err := eachRecord(state[sp.content:sp.end], func(rec []byte) error {
			id, _, ok := recordKey(rec)
			if !ok {
				return errMalformedRecord
			}
			h.found = h.found || string(id) == target
			return nil
		})
		if err != nil {
			return h, err
		}
	}
	if sp := l[fieldVote]; kind == fieldVote && sp.present {
		err := eachRecord(state[sp.content:sp.end], func(rec []byte) error {
			id, sender, ok := recordKey(rec)
			if !ok {
				return errMalformedRecord
			}
			h.voted = h.voted || (string(id) == target && string(sender) == voter)
			return nil
		})
		if err != nil {
			return h, err
		}
	}
	return h, nil
}

// begin scans the history and applies the rules every step shares: a
// committed session accepts nothing more, and after the first Vote only Votes
// and the Commitment are accepted (rule 6). ok is false when res is a
// rejection.
func begin(state []byte, env *guest.Envelope, kind protowire.Number, target, voter string) (h history, res guest.Result, ok bool) {
	h, err := scan(state, kind, target, voter)
	switch {
	case err != nil:
		return h, guest.Reject(macperr.InternalError, "%v", err), false
	case h.committed:
		return h, guest.Reject(macperr.InvalidEnvelope, "the decision is already committed"), false
	case h.votes && kind != fieldVote && kind != fieldCommitment:
		return h, guest.Reject(macperr.InvalidEnvelope, "%s is not accepted after the first Vote", env.MessageType), false
	}
	return h, guest.Result{}, true
}

func invalid(format string, args ...any) guest.Result {
	return guest.Reject(macperr.InvalidEnvelope, format, args...)
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

func stepProposal(state []byte, env *guest.Envelope) guest.Result {
	p, err := decodeProposal(env.Payload, true)
	if err != nil {
		return invalid("malformed ProposalPayload: %v", err)
	}
	p.Sender = env.Sender
	h, res, ok := begin(state, env, fieldProposal, p.ProposalID, "")
	switch {
	case !ok:
		return res
	case blank(p.ProposalID):
		return invalid("proposal_id must not be empty")
	case blank(p.Option):
		return invalid("option must not be empty")
	case h.found:
		return invalid("proposal_id %q is already taken", p.ProposalID)
	}
	rec := p.appendTo(make([]byte, 0, scratchSize))
	return guest.Accept(insertRecord(state, h.layout, fieldProposal, rec))
}

func stepEvaluation(state []byte, env *guest.Envelope) guest.Result {
	e, err := decodeEvaluation(env.Payload, true)
	if err != nil {
		return invalid("malformed EvaluationPayload: %v", err)
	}
	e.Sender = env.Sender
	h, res, ok := begin(state, env, fieldEvaluation, e.ProposalID, "")
	switch {
	case !ok:
		return res
	case !h.found:
		return invalid("unknown proposal_id %q", e.ProposalID)
	case !validRecommendation(e.Recommendation):
		return invalid("recommendation %q is not one of APPROVE, REVIEW, BLOCK, REJECT", e.Recommendation)
	case !(e.Confidence >= 0 && e.Confidence <= 1): // also rejects NaN
		return invalid("confidence %v is outside [0, 1]", e.Confidence)
	}
	rec := e.appendTo(make([]byte, 0, scratchSize))
	return guest.Accept(insertRecord(state, h.layout, fieldEvaluation, rec))
}

func stepObjection(state []byte, env *guest.Envelope) guest.Result {
	o, err := decodeObjection(env.Payload, true)
	if err != nil {
		return invalid("malformed ObjectionPayload: %v", err)
	}
	o.Sender = env.Sender
	if o.Severity == "" {
		o.Severity = "medium"
	}
	h, res, ok := begin(state, env, fieldObjection, o.ProposalID, "")
	switch {
	case !ok:
		return res
	case !h.found:
		return invalid("unknown proposal_id %q", o.ProposalID)
	case !validSeverity(o.Severity):
		return invalid("severity %q is not one of low, medium, high, critical", o.Severity)
	}
	rec := o.appendTo(make([]byte, 0, scratchSize))
	return guest.Accept(insertRecord(state, h.layout, fieldObjection, rec))
}

func stepVote(state []byte, env *guest.Envelope) guest.Result {
	v, err := decodeVote(env.Payload, true)
	if err != nil {
		return invalid("malformed VotePayload: %v", err)
	}
	v.Voter = env.Sender
	h, res, ok := begin(state, env, fieldVote, v.ProposalID, v.Voter)
	switch {
	case !ok:
		return res
	case !h.found:
		return invalid("unknown proposal_id %q", v.ProposalID)
	case !validVote(v.Vote):
		return invalid("vote %q is not one of APPROVE, REJECT, ABSTAIN", v.Vote)
	case h.voted:
		return invalid("%q already voted on proposal %q; the first vote stands", v.Voter, v.ProposalID)
	}
	rec := v.appendTo(make([]byte, 0, scratchSize))
	return guest.Accept(insertRecord(state, h.layout, fieldVote, rec))
}

func stepCommitment(state []byte, env *guest.Envelope) guest.Result {
	p, err := guest.DecodeCommitment(env.Payload)
	if err != nil {
		return invalid("malformed CommitmentPayload: %v", err)
	}
	h, res, ok := begin(state, env, fieldCommitment, "", "")
	switch {
	case !ok:
		return res
	case !h.proposals:
		return invalid("a Commitment needs at least one accepted Proposal")
	}
	c := Commitment{
		CommitmentID:    p.CommitmentID,
		Action:          p.Action,
		OutcomePositive: p.OutcomePositive,
		Sender:          env.Sender,
	}
	rec := appendCommitment(make([]byte, 0, scratchSize), &c)
	return guest.Accept(insertRecord(state, h.layout, fieldCommitment, rec))
}

// Enumerations are compared case-sensitively: recommendation and vote are
// UPPER_CASE, severity is lower case.

func validRecommendation(s string) bool {
	return s == "APPROVE" || s == "REVIEW" || s == "BLOCK" || s == "REJECT"
}

func validSeverity(s string) bool {
	return s == "low" || s == "medium" || s == "high" || s == "critical"
}

func validVote(s string) bool {
	return s == "APPROVE" || s == "REJECT" || s == "ABSTAIN"
}
