package policies_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const decisionMode = "macp.mode.decision.v1"

// The descriptors documented in README.md.
var (
	twoPerson = &macpv1.PolicyDescriptor{
		PolicyId:      "policy.example.two-person",
		Mode:          decisionMode,
		Description:   "two-person rule: two distinct approvals on one proposal, one from a designated approver",
		SchemaVersion: 3,
		Rules:         `{"approvers":["carol"],"min_approvals":2}`,
	}
	weightedVeto = &macpv1.PolicyDescriptor{
		PolicyId:      "policy.example.weighted-veto",
		Mode:          decisionMode,
		Description:   "weighted vote with a veto holder",
		SchemaVersion: 3,
		Rules:         `{"weights":{"alice":3,"bob":1,"carol":1},"threshold":0.6,"veto_holder":"carol"}`,
	}
	businessHours = &macpv1.PolicyDescriptor{
		PolicyId:      "policy.example.business-hours",
		Mode:          decisionMode,
		Description:   "commitments only during business hours (UTC)",
		SchemaVersion: 3,
		Rules:         `{"business_hours":{"start_hour":9,"end_hour":17,"weekdays":["Monday","Tuesday","Wednesday","Thursday","Friday"]}}`,
	}
)

func readRego(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func push(t *testing.T, srv *servertest.Server, d *macpv1.PolicyDescriptor, rego string) (*macpv1.PolicyDescriptor, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := srv.Admin("operator").PushPolicy(ctx, connect.NewRequest(&adminv1.PushPolicyRequest{
		PolicyDescriptor: proto.Clone(d).(*macpv1.PolicyDescriptor), Rego: rego,
	}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetPolicyDescriptor(), nil
}

func mustPush(t *testing.T, srv *servertest.Server, d *macpv1.PolicyDescriptor, file string) {
	t.Helper()
	stored, err := push(t, srv, d, readRego(t, file))
	if err != nil {
		t.Fatalf("push %s: %v", file, err)
	}
	if !strings.Contains(stored.GetRules(), `"concord.rego":"sha256:`) {
		t.Fatalf("stored rules %s do not name the source digest", stored.GetRules())
	}
}

// session drives one Decision session; every envelope is stamped with now.
type session struct {
	t   *testing.T
	srv *servertest.Server
	id  string
	n   int
	now func() time.Time
}

func startSession(t *testing.T, srv *servertest.Server, policyID string, now func() time.Time) *session {
	t.Helper()
	s := &session{t: t, srv: srv, id: servertest.NewSessionID(), now: now}
	ack := s.send("coordinator", "SessionStart", &macpv1.SessionStartPayload{
		Intent: "choose a release", Participants: []string{"alice", "bob", "carol"},
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", PolicyVersion: policyID, TtlMs: 3_600_000,
	})
	if !ack.GetOk() {
		t.Fatalf("SessionStart under %s: %v", policyID, ack)
	}
	return s
}

func (s *session) send(sender, typ string, payload proto.Message) *macpv1.Ack {
	s.t.Helper()
	s.n++
	env := servertest.Envelope(decisionMode, typ, fmt.Sprintf("m%d", s.n), s.id, payload)
	if s.now != nil {
		env.TimestampUnixMs = s.now().UnixMilli()
	}
	return s.srv.Send(s.t, sender, env)
}

func (s *session) ok(sender, typ string, payload proto.Message) {
	s.t.Helper()
	if ack := s.send(sender, typ, payload); !ack.GetOk() {
		s.t.Fatalf("%s %s: %v", sender, typ, ack)
	}
}

func (s *session) propose(sender, pid string) {
	s.t.Helper()
	s.ok(sender, "Proposal", &decisionv1.ProposalPayload{ProposalId: pid, Option: "ship " + pid})
}

func (s *session) vote(voter, pid, vote string) {
	s.t.Helper()
	s.ok(voter, "Vote", &decisionv1.VotePayload{ProposalId: pid, Vote: vote})
}

func (s *session) commit(policyID string, positive bool) *macpv1.Ack {
	s.t.Helper()
	action := "decision.selected"
	if !positive {
		action = "decision.rejected"
	}
	return s.send("coordinator", "Commitment", &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "team", Reason: "the vote",
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", PolicyVersion: policyID, OutcomePositive: positive,
	})
}

func wantDenied(t *testing.T, ack *macpv1.Ack, reason string) {
	t.Helper()
	if ack.GetOk() || ack.GetError().GetCode() != "POLICY_DENIED" {
		t.Fatalf("ack %v, want POLICY_DENIED", ack)
	}
	if !strings.Contains(ack.GetError().GetMessage(), reason) {
		t.Fatalf("POLICY_DENIED message %q does not contain %q", ack.GetError().GetMessage(), reason)
	}
	if ack.GetSessionState() == macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("a denied commitment resolved the session: %v", ack)
	}
}

func wantResolved(t *testing.T, ack *macpv1.Ack) {
	t.Helper()
	if !ack.GetOk() || ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("ack %v, want ok in RESOLVED", ack)
	}
}

func TestTwoPersonRule(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	mustPush(t, srv, twoPerson, "two_person_rule.rego")
	id := twoPerson.PolicyId

	// Two approvals, neither from the designated approver: denied.
	s := startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.propose("bob", "p2")
	s.vote("alice", "p1", "APPROVE")
	s.vote("bob", "p1", "APPROVE")
	wantDenied(t, s.commit(id, true), "p1 has 2 approval(s) from alice, bob, none of them a designated approver")

	// The approver's approval of another proposal does not combine with them.
	s.vote("carol", "p2", "APPROVE")
	wantDenied(t, s.commit(id, true), "at least one of them a designated approver (carol)")

	// The approver joins p1: two distinct approvals, one an approver.
	s.vote("carol", "p1", "APPROVE")
	wantResolved(t, s.commit(id, true))

	// The approver alone is not two persons.
	s = startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.vote("carol", "p1", "APPROVE")
	wantDenied(t, s.commit(id, true), "at least 2 distinct participants")
	s.vote("alice", "p1", "APPROVE")
	wantResolved(t, s.commit(id, true))
}

func TestWeightedVeto(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	mustPush(t, srv, weightedVeto, "weighted_veto.rego")
	id := weightedVeto.PolicyId

	// alice (3) approves, bob (1) rejects: 3/4 >= 0.6 passes.
	s := startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.vote("alice", "p1", "APPROVE")
	s.vote("bob", "p1", "REJECT")
	wantResolved(t, s.commit(id, true))

	// Below the threshold: bob (1) approves, alice (3) rejects.
	s = startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.vote("bob", "p1", "APPROVE")
	s.vote("alice", "p1", "REJECT")
	wantDenied(t, s.commit(id, true), "p1: approve weight 1 of decisive weight 4")
	// A decline after a failed vote is allowed.
	wantResolved(t, s.commit(id, false))

	// The veto holder's REJECT outweighs a passing weight.
	s = startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.vote("alice", "p1", "APPROVE")
	s.vote("bob", "p1", "APPROVE")
	s.vote("carol", "p1", "REJECT")
	wantDenied(t, s.commit(id, true), "veto: carol voted REJECT on p1, and carol holds the veto")

	// So does the veto holder's critical objection.
	s = startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.ok("carol", "Objection", &decisionv1.ObjectionPayload{ProposalId: "p1", Reason: "unsafe", Severity: "critical"})
	s.vote("alice", "p1", "APPROVE")
	wantDenied(t, s.commit(id, true), "carol raised a critical objection to p1")
	// A passed vote without a veto may not be declined.
	s = startSession(t, srv, id, nil)
	s.propose("alice", "p1")
	s.vote("alice", "p1", "APPROVE")
	wantDenied(t, s.commit(id, false), "a negative commitment would override it")
	wantResolved(t, s.commit(id, true))
}

func TestBusinessHours(t *testing.T) {
	clk := servertest.NewClock(time.Date(2026, 3, 7, 10, 30, 0, 0, time.UTC)) // a Saturday
	srv := servertest.Start(t, server.Config{Memory: true, Now: clk.Now, SweepInterval: -1})
	mustPush(t, srv, businessHours, "business_hours.rego")
	id := businessHours.PolicyId

	// Saturday: denied whatever the vote.
	s := startSession(t, srv, id, clk.Now)
	s.propose("alice", "p1")
	s.vote("alice", "p1", "APPROVE")
	wantDenied(t, s.commit(id, true),
		"business hours: commitments are accepted only on Monday, Tuesday, Wednesday, Thursday, Friday, 09:00-17:00 UTC; it is Saturday 10:30 UTC")

	// Monday before nine: denied; at 09:05 the same session commits.
	clk.Set(time.Date(2026, 3, 2, 8, 55, 0, 0, time.UTC))
	s = startSession(t, srv, id, clk.Now)
	s.propose("alice", "p1")
	s.vote("bob", "p1", "APPROVE")
	wantDenied(t, s.commit(id, true), "it is Monday 08:55 UTC")
	clk.Set(time.Date(2026, 3, 2, 9, 5, 0, 0, time.UTC))
	wantResolved(t, s.commit(id, true))

	// Closing time is exclusive, for a decline too.
	clk.Set(time.Date(2026, 3, 2, 17, 0, 0, 0, time.UTC))
	s = startSession(t, srv, id, clk.Now)
	s.propose("alice", "p1")
	wantDenied(t, s.commit(id, false), "it is Monday 17:00 UTC")
}

// TestBrokenCopiesAreRefused pushes each policy with a failing test_ rule
// appended: the upload fails and nothing is registered, after which the
// intact file registers under the same id.
func TestBrokenCopiesAreRefused(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	ctx := context.Background()
	op := srv.Client(servertest.GRPC, "operator")
	list := func() []string {
		t.Helper()
		res, err := op.ListPolicies(ctx, connect.NewRequest(&macpv1.ListPoliciesRequest{Mode: decisionMode}))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range res.Msg.GetDescriptors() {
			ids = append(ids, d.GetPolicyId())
		}
		return ids
	}
	const broken = "\n# deliberately broken\ntest_deliberately_broken if {\n\tcount(govern.reasons) < 0\n}\n"
	for _, tc := range []struct {
		d    *macpv1.PolicyDescriptor
		file string
	}{
		{twoPerson, "two_person_rule.rego"},
		{weightedVeto, "weighted_veto.rego"},
		{businessHours, "business_hours.rego"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			before := list()
			_, err := push(t, srv, tc.d, readRego(t, tc.file)+broken)
			if err == nil {
				t.Fatal("the broken copy was accepted")
			}
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "test_deliberately_broken") {
				t.Fatalf("refusal %v (code %v), want InvalidArgument naming test_deliberately_broken", err, connect.CodeOf(err))
			}
			t.Log(err)
			if got := list(); strings.Join(got, ",") != strings.Join(before, ",") {
				t.Fatalf("policies after the refused push %v, want %v", got, before)
			}
			if _, err := op.GetPolicy(ctx, connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: tc.d.PolicyId})); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("GetPolicy %s after the refused push: %v, want NotFound", tc.d.PolicyId, err)
			}
			mustPush(t, srv, tc.d, tc.file)
		})
	}
}
