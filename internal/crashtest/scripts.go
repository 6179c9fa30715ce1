package crashtest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	quorumv1 "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	taskv1 "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// action is what a step does: send an envelope, or call a lifecycle RPC.
type action int

const (
	sendEnvelope action = iota
	suspend
	resume
	cancel
)

// runtimeType is the message type of the record the runtime writes for a
// lifecycle RPC.
func (a action) runtimeType() string {
	switch a {
	case suspend:
		return "SessionSuspend"
	case resume:
		return "SessionResume"
	case cancel:
		return "SessionCancel"
	}
	return ""
}

// step is one thing an agent does in a session.
type step struct {
	who string
	act action
	env *macpv1.Envelope // for sendEnvelope
}

// script is one session from its start to its end.
type script struct {
	kind      string
	sid       string
	initiator string
	steps     []step
	final     macpv1.SessionState
}

// identities of worker w's agents.
func identities(w int) (coordinator, alice, bob string) {
	return fmt.Sprintf("coordinator-%d", w), fmt.Sprintf("alice-%d", w), fmt.Sprintf("bob-%d", w)
}

type scriptBuilder struct {
	mode string
	sid  string
	s    *script
}

func newScript(kind, mode, initiator string) *scriptBuilder {
	sid := servertest.NewSessionID()
	return &scriptBuilder{mode: mode, sid: sid, s: &script{kind: kind, sid: sid, initiator: initiator,
		final: macpv1.SessionState_SESSION_STATE_RESOLVED}}
}

func (b *scriptBuilder) send(who, typ, id string, p proto.Message) *scriptBuilder {
	env := servertest.Envelope(b.mode, typ, id, b.sid, p)
	b.s.steps = append(b.s.steps, step{who: who, act: sendEnvelope, env: env})
	return b
}

func (b *scriptBuilder) raw(who, typ, id, payload string) *scriptBuilder {
	env := servertest.Envelope(b.mode, typ, id, b.sid, nil)
	env.Payload = []byte(payload)
	b.s.steps = append(b.s.steps, step{who: who, act: sendEnvelope, env: env})
	return b
}

func (b *scriptBuilder) control(who string, a action) *scriptBuilder {
	b.s.steps = append(b.s.steps, step{who: who, act: a})
	if a == cancel {
		b.s.final = macpv1.SessionState_SESSION_STATE_CANCELLED
	}
	return b
}

func start(participants []string, policy string) *macpv1.SessionStartPayload {
	return &macpv1.SessionStartPayload{
		Intent: "crash test", Participants: participants, ModeVersion: "1.0.0",
		ConfigurationVersion: "crash-1", PolicyVersion: policy, TtlMs: 3_600_000,
	}
}

func commitment(action string, positive bool) *macpv1.CommitmentPayload {
	return &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "crash-test", Reason: "the script says so",
		ModeVersion: "1.0.0", ConfigurationVersion: "crash-1", OutcomePositive: positive,
	}
}

// sessionKinds lists the scripts a worker cycles through; uploaded is the
// mode name of an uploaded module ("" until one is), policy a pushed
// policy id ("" until one is).
func nextScript(rng *rand.Rand, w, n int, uploaded, pushedPolicy string) *script {
	coordinator, alice, bob := identities(w)
	pair := []string{alice, bob}
	// Proposals of a few KB, some larger, so that groups vary in size.
	rationale := strings.Repeat("because ", 16+rng.IntN(512))
	decision := func(kind, policy string) *scriptBuilder {
		return newScript(kind, "macp.mode.decision.v1", coordinator).
			send(coordinator, "SessionStart", "m0", start(pair, policy)).
			send(alice, "Proposal", "p1", &decisionv1.ProposalPayload{ProposalId: "p1", Option: fmt.Sprintf("option %d", n), Rationale: rationale})
	}
	finishDecision := func(b *scriptBuilder) *script {
		return b.send(bob, "Evaluation", "e1", &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.9, Reason: "fine"}).
			send(alice, "Vote", "v1", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}).
			send(bob, "Vote", "v2", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}).
			send(coordinator, "Commitment", "c1", commitment("decision.selected", true)).s
	}
	kinds := []string{"decision", "task", "quorum", "suspended", "cancelled"}
	if uploaded != "" {
		kinds = append(kinds, "uploaded")
	}
	if pushedPolicy != "" {
		kinds = append(kinds, "policy")
	}
	switch kinds[(n+w)%len(kinds)] {
	case "task":
		return newScript("task", "macp.mode.task.v1", coordinator).
			send(coordinator, "SessionStart", "m0", start([]string{coordinator, alice}, "")).
			send(coordinator, "TaskRequest", "t1", &taskv1.TaskRequestPayload{TaskId: "t1", Title: "build", Instructions: rationale, RequestedAssignee: alice}).
			send(alice, "TaskAccept", "t2", &taskv1.TaskAcceptPayload{TaskId: "t1", Assignee: alice, Reason: "ready"}).
			send(alice, "TaskUpdate", "t3", &taskv1.TaskUpdatePayload{TaskId: "t1", Status: "working", Progress: 0.5, Message: "half"}).
			send(alice, "TaskComplete", "t4", &taskv1.TaskCompletePayload{TaskId: "t1", Assignee: alice, Summary: "done"}).
			send(coordinator, "Commitment", "c1", commitment("task.completed", true)).s
	case "quorum":
		return newScript("quorum", "macp.mode.quorum.v1", coordinator).
			send(coordinator, "SessionStart", "m0", start(pair, "")).
			send(coordinator, "ApprovalRequest", "q1", &quorumv1.ApprovalRequestPayload{RequestId: "r1", Action: "deploy", Summary: rationale, RequiredApprovals: 2}).
			send(alice, "Approve", "q2", &quorumv1.ApprovePayload{RequestId: "r1", Reason: "lgtm"}).
			send(bob, "Approve", "q3", &quorumv1.ApprovePayload{RequestId: "r1", Reason: "ship it"}).
			send(coordinator, "Commitment", "c1", commitment("quorum.approved", true)).s
	case "suspended":
		return finishDecision(decision("suspended", "").control(coordinator, suspend).control(coordinator, resume))
	case "cancelled":
		return decision("cancelled", "").control(coordinator, cancel).s
	case "uploaded":
		return newScript("uploaded", uploaded, coordinator).
			send(coordinator, "SessionStart", "m0", start(pair, "")).
			raw(coordinator, "Announce", "b1", `{"announcement_id":"a1","content":"freeze"}`).
			raw(alice, "Acknowledge", "b2", `{"announcement_id":"a1","note":"ok"}`).
			raw(bob, "Acknowledge", "b3", `{"announcement_id":"a1"}`).
			send(coordinator, "Commitment", "c1", commitment("ext.completed", true)).s
	case "policy":
		return finishDecision(decision("policy", pushedPolicy))
	}
	return finishDecision(decision("decision", ""))
}
