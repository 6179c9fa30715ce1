package proposal

import (
	"fmt"
	"strings"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// ModeName is the mode identifier.
const ModeName = "macp.mode.proposal.v1"

// ModeVersion is the semantic version of the mode this package implements.
const ModeVersion = "1.0.0"

// Message types of the mode.
const (
	typeSessionStart    = "SessionStart"
	typeProposal        = "Proposal"
	typeCounterProposal = "CounterProposal"
	typeAccept          = "Accept"
	typeReject          = "Reject"
	typeWithdraw        = "Withdraw"
	typeCommitment      = "Commitment"
)

// Mode is the Proposal mode. The zero value is ready to use and holds no
// data: everything lives in the state bytes.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:        ModeName,
		ModeVersion: ModeVersion,
		Title:       "Proposal Mode",
		Description: "Bounded negotiation: participants propose, counter-propose, accept, reject and " +
			"withdraw offers; a Commitment binds an agreed proposal or a terminal rejection.",
		DeterminismClass: "semantic-deterministic",
		ParticipantModel: "peer",
		MessageTypes: []string{typeSessionStart, typeProposal, typeCounterProposal, typeAccept,
			typeReject, typeWithdraw, typeCommitment},
		TerminalMessageTypes: []string{typeCommitment},
		SchemaURIs: map[string]string{
			"protobuf": "proto/macp/modes/proposal/v1/proposal.proto",
		},
	}
}

// Step decides on one envelope.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	sess := &req.Session
	var handle func(*state, *guest.Envelope) *rejection
	switch env.MessageType {
	case typeSessionStart:
		if len(req.State) != 0 {
			return guest.Reject(macperr.InvalidEnvelope, "session already started")
		}
		return start(sess)
	case typeProposal:
		handle = onProposal
	case typeCounterProposal:
		handle = onCounterProposal
	case typeAccept:
		handle = onAccept
	case typeReject:
		handle = onReject
	case typeWithdraw:
		handle = onWithdraw
	case typeCommitment:
	default:
		return guest.Reject(macperr.InvalidEnvelope, "message type %q is not part of %s", env.MessageType, ModeName)
	}
	s, res, ok := guest.Begin(req, start, decodeState, func(s *state) bool { return s.Phase == phaseCommitted })
	if !ok {
		return res
	}
	if handle == nil {
		return commit(s, env, sess)
	}
	// Authorization comes before structure: an outsider's malformed message
	// is FORBIDDEN.
	if !sess.IsParticipant(env.Sender) {
		return guest.Reject(macperr.Forbidden, "%s may only be sent by a declared participant; %q is not one",
			env.MessageType, env.Sender)
	}
	if r := handle(s, env); r != nil {
		return guest.Reject(r.code, "%s", r.msg)
	}
	s.refreshPhase(sess)
	return guest.Accept(s.encode())
}

// rejection is a handler's refusal of an envelope.
type rejection struct {
	code macperr.Code
	msg  string
}

func reject(code macperr.Code, format string, args ...any) *rejection {
	return &rejection{code: code, msg: fmt.Sprintf(format, args...)}
}

func start(sess *guest.Session) guest.Result {
	s := &state{Phase: phaseNegotiating}
	if err := parseRules(sess.PolicyRules, s); err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "%v", err)
	}
	return guest.Accept(s.encode())
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

func onProposal(s *state, env *guest.Envelope) *rejection {
	p, err := decodeProposal(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "ProposalPayload: %v", err)
	}
	if r := checkNewID(s, p.ProposalID); r != nil {
		return r
	}
	s.Proposals = append(s.Proposals, proposalRecord{
		ID: p.ProposalID, Proposer: env.Sender, Title: p.Title, Summary: p.Summary, Tags: p.Tags,
	})
	return nil
}

func onCounterProposal(s *state, env *guest.Envelope) *rejection {
	p, err := decodeCounterProposal(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "CounterProposalPayload: %v", err)
	}
	if r := checkNewID(s, p.ProposalID); r != nil {
		return r
	}
	if blank(p.Supersedes) {
		return reject(macperr.InvalidEnvelope, "supersedes_proposal_id is empty")
	}
	if s.proposal(p.Supersedes) == nil {
		return reject(macperr.InvalidEnvelope, "supersedes_proposal_id %q names no proposal", p.Supersedes)
	}
	if s.MaxRounds > 0 && s.counterProposals() >= s.MaxRounds {
		return reject(macperr.InvalidEnvelope,
			"counter_proposal.max_rounds (%d) reached", s.MaxRounds)
	}
	s.Proposals = append(s.Proposals, proposalRecord{
		ID: p.ProposalID, Proposer: env.Sender, Supersedes: p.Supersedes, Title: p.Title, Summary: p.Summary,
	})
	return nil
}

// checkNewID checks that id may name a new proposal.
func checkNewID(s *state, id string) *rejection {
	if blank(id) {
		return reject(macperr.InvalidEnvelope, "proposal_id is empty")
	}
	if s.proposal(id) != nil {
		return reject(macperr.InvalidEnvelope, "proposal_id %q already used", id)
	}
	return nil
}

// checkLive checks that id names a live proposal.
func checkLive(s *state, id string) *rejection {
	p := s.proposal(id)
	if p == nil {
		return reject(macperr.InvalidEnvelope, "unknown proposal %q", id)
	}
	if p.Withdrawn {
		return reject(macperr.InvalidEnvelope, "proposal %q was withdrawn", id)
	}
	return nil
}

func onAccept(s *state, env *guest.Envelope) *rejection {
	p, err := decodeAccept(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "AcceptPayload: %v", err)
	}
	if r := checkLive(s, p.ProposalID); r != nil {
		return r
	}
	s.setAccept(env.Sender, p.ProposalID)
	return nil
}

func onReject(s *state, env *guest.Envelope) *rejection {
	p, err := decodeReject(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "RejectPayload: %v", err)
	}
	if r := checkLive(s, p.ProposalID); r != nil {
		return r
	}
	s.Rejections = append(s.Rejections, rejectionRecord{
		ProposalID: p.ProposalID,
		Sender:     env.Sender,
		Terminal:   p.Terminal || s.TerminalOnAnyReject,
		Reason:     p.Reason,
	})
	return nil
}

func onWithdraw(s *state, env *guest.Envelope) *rejection {
	p, err := decodeWithdraw(env.Payload)
	if err != nil {
		return reject(macperr.InvalidEnvelope, "WithdrawPayload: %v", err)
	}
	rec := s.proposal(p.ProposalID)
	if rec == nil {
		return reject(macperr.InvalidEnvelope, "unknown proposal %q", p.ProposalID)
	}
	if rec.Proposer != env.Sender {
		return reject(macperr.Forbidden, "only %s, the author of %q, may withdraw it", rec.Proposer, rec.ID)
	}
	if rec.Withdrawn {
		return reject(macperr.InvalidEnvelope, "proposal %q already withdrawn", rec.ID)
	}
	rec.Withdrawn = true
	s.clearAcceptsOf(rec.ID)
	return nil
}

// commit applies the mode's eligibility rules to a Commitment whose
// authority and common fields the host has already checked.
func commit(s *state, env *guest.Envelope, sess *guest.Session) guest.Result {
	c, err := guest.DecodeCommitment(env.Payload)
	if err != nil {
		return guest.Reject(macperr.InvalidEnvelope, "CommitmentPayload: %v", err)
	}
	if s.Phase != phaseConverged && s.Phase != phaseTerminalRejected {
		return guest.Reject(macperr.InvalidEnvelope,
			"commitment needs phase Converged or TerminalRejected, phase is %s", s.Phase)
	}
	if c.OutcomePositive {
		if s.convergedProposal(sess) == "" {
			return guest.Reject(macperr.InvalidEnvelope,
				"outcome_positive=true needs a converged proposal; the session stands terminally rejected")
		}
	} else if !s.standingTerminalRejection() {
		return guest.Reject(macperr.InvalidEnvelope,
			"outcome_positive=false needs a standing terminal rejection; the session has converged")
	}
	s.Phase = phaseCommitted
	return guest.Accept(s.encode())
}
