package loadgen

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	handoffv1 "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	proposalv1 "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	quorumv1 "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	taskv1 "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The built-in modes.
const (
	ModeDecision   = "macp.mode.decision.v1"
	ModeProposal   = "macp.mode.proposal.v1"
	ModeTask       = "macp.mode.task.v1"
	ModeHandoff    = "macp.mode.handoff.v1"
	ModeQuorum     = "macp.mode.quorum.v1"
	ModeMultiRound = "ext.multi_round.v1"
)

// BuiltinModes lists every built-in mode in the order per-mode runs them.
var BuiltinModes = []string{ModeDecision, ModeProposal, ModeTask, ModeHandoff, ModeQuorum, ModeMultiRound}

// Who plays a step of a session script.
type role int

const (
	initiator role = iota // starts and commits the session; also a participant
	peer                  // a second participant, where a mode needs one
)

// step is one message of a session script.
type step struct {
	by      role
	typ     string
	payload proto.Message
}

// Script is a complete session of one mode, from SessionStart to an
// accepted Commitment, that one agent (and, for handoff, a peer identity)
// can run any number of times.
type Script struct {
	Mode string
	// NeedsPeer is set when the session needs a second identity.
	NeedsPeer bool
	action    string
	steps     []step
}

// Sends is the number of Sends of one session, SessionStart and
// Commitment included.
func (s Script) Sends() int { return len(s.steps) + 2 }

// ScriptFor returns the session script of a built-in mode.
func ScriptFor(mode string) (Script, error) {
	s := Script{Mode: mode}
	switch mode {
	case ModeDecision:
		s.action = "decision.selected"
		s.steps = []step{
			{initiator, "Proposal", &decisionv1.ProposalPayload{ProposalId: "p1", Option: "deploy", Rationale: "ready"}},
			{initiator, "Evaluation", &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.9, Reason: "checked"}},
			{initiator, "Vote", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE", Reason: "good"}},
		}
	case ModeProposal:
		s.action = "proposal.accepted"
		s.steps = []step{
			{initiator, "Proposal", &proposalv1.ProposalPayload{ProposalId: "p1", Title: "offer", Summary: "terms"}},
			{initiator, "Accept", &proposalv1.AcceptPayload{ProposalId: "p1"}},
		}
	case ModeTask:
		s.action = "task.completed"
		s.steps = []step{
			{initiator, "TaskRequest", &taskv1.TaskRequestPayload{TaskId: "t1", Title: "build", Instructions: "do it"}},
			{initiator, "TaskAccept", &taskv1.TaskAcceptPayload{TaskId: "t1"}},
			{initiator, "TaskComplete", &taskv1.TaskCompletePayload{TaskId: "t1", Summary: "done"}},
		}
	case ModeHandoff:
		s.action = "handoff.accepted"
		s.NeedsPeer = true
		s.steps = []step{
			{initiator, "HandoffOffer", &handoffv1.HandoffOfferPayload{HandoffId: "h1", Scope: "support", Reason: "escalate"}},
			{peer, "HandoffAccept", &handoffv1.HandoffAcceptPayload{HandoffId: "h1", Reason: "ready"}},
		}
	case ModeQuorum:
		s.action = "quorum.approved"
		s.steps = []step{
			{initiator, "ApprovalRequest", &quorumv1.ApprovalRequestPayload{RequestId: "r1", Action: "deploy", Summary: "deploy v2", RequiredApprovals: 1}},
			{initiator, "Approve", &quorumv1.ApprovePayload{RequestId: "r1", Reason: "lgtm"}},
		}
	case ModeMultiRound:
		s.action = "multi_round.converged"
		s.steps = []step{
			{initiator, "Contribute", &multiroundv1.ContributePayload{Value: "option_a"}},
		}
	default:
		return Script{}, fmt.Errorf("no session script for mode %q (built-in modes: %v)", mode, BuiltinModes)
	}
	return s, nil
}

// envelopes returns the session's envelopes, each with the identity that
// sends it, for a session sid between self and, where needed, other.
func (s Script) envelopes(sid, self, other string) (names []string, envs []*macpv1.Envelope) {
	participants := []string{self}
	if s.NeedsPeer {
		participants = append(participants, other)
	}
	names = append(names, self)
	envs = append(envs, envelope(s.Mode, "SessionStart", "m0", sid, self, &macpv1.SessionStartPayload{
		Intent: "bench", Participants: participants, ModeVersion: "1.0.0",
		ConfigurationVersion: "bench", TtlMs: 600_000,
	}))
	for i, st := range s.steps {
		who := self
		if st.by == peer {
			who = other
		}
		payload := personalise(st.payload, self, other)
		names = append(names, who)
		envs = append(envs, envelope(s.Mode, st.typ, fmt.Sprintf("m%d", i+1), sid, who, payload))
	}
	names = append(names, self)
	envs = append(envs, envelope(s.Mode, "Commitment", fmt.Sprintf("m%d", len(s.steps)+1), sid, self, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: s.action, AuthorityScope: "bench", Reason: "bench session complete",
		ModeVersion: "1.0.0", ConfigurationVersion: "bench", OutcomePositive: true,
	}))
	return names, envs
}

// personalise fills the identities a payload names: the task's assignee,
// the handoff's target.
func personalise(p proto.Message, self, other string) proto.Message {
	switch m := p.(type) {
	case *taskv1.TaskRequestPayload:
		m = proto.CloneOf(m)
		m.RequestedAssignee = self
		return m
	case *taskv1.TaskAcceptPayload:
		m = proto.CloneOf(m)
		m.Assignee = self
		return m
	case *taskv1.TaskCompletePayload:
		m = proto.CloneOf(m)
		m.Assignee = self
		return m
	case *handoffv1.HandoffOfferPayload:
		m = proto.CloneOf(m)
		m.TargetParticipant = other
		return m
	case *handoffv1.HandoffAcceptPayload:
		m = proto.CloneOf(m)
		m.AcceptedBy = other
		return m
	}
	return p
}

// Scripts returns the scripts of modes, refusing those that need a second
// identity when every agent shares one.
func Scripts(modes []string, t Target) ([]Script, error) {
	var out []Script
	for _, m := range modes {
		s, err := ScriptFor(m)
		if err != nil {
			return nil, err
		}
		if s.NeedsPeer && t.SharedIdentity() {
			return nil, fmt.Errorf("mode %s needs two identities, and with --token every agent acts as one (leave it out with --modes, or use dev authentication)", m)
		}
		out = append(out, s)
	}
	return out, nil
}

// ModesWithoutPeer returns modes less those whose session needs a second
// identity.
func ModesWithoutPeer(modes []string) []string {
	return slices.DeleteFunc(slices.Clone(modes), func(m string) bool {
		s, err := ScriptFor(m)
		return err == nil && s.NeedsPeer
	})
}
