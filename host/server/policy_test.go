package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func majority(id string) *macpv1.PolicyDescriptor {
	return &macpv1.PolicyDescriptor{PolicyId: id, Mode: decisionMode, Description: "majority of decisive votes",
		SchemaVersion: 3, Rules: `{"voting":{"algorithm":"majority","threshold":0.5}}`}
}

// TestPolicyRegistryAndGovernance registers a policy, binds a session to
// it, shows it deciding commitments, and checks that registrations and the
// binding survive a restart and an unregistration.
func TestPolicyRegistryAndGovernance(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op := srv.Client(servertest.GRPC, "operator")
	watch, err := op.WatchPolicies(ctx, connect.NewRequest(&macpv1.WatchPoliciesRequest{}))
	if err != nil || !watch.Receive() {
		t.Fatalf("watch: %v %v", err, watch.Err())
	}
	initial := len(watch.Msg().GetDescriptors())

	res, err := op.RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.team.majority")}))
	if err != nil || !res.Msg.GetOk() {
		t.Fatalf("register: %v %v", res, err)
	}
	if !watch.Receive() || len(watch.Msg().GetDescriptors()) != initial+1 {
		t.Fatalf("WatchPolicies after register: %v", watch.Err())
	}
	// Refusals: each a clear INVALID_POLICY_DEFINITION, nothing registered.
	for name, d := range map[string]*macpv1.PolicyDescriptor{
		"duplicate id":        majority("policy.team.majority"),
		"rules not JSON":      {PolicyId: "policy.bad.json", Mode: decisionMode, Description: "x", SchemaVersion: 3, Rules: "{"},
		"unknown rule key":    {PolicyId: "policy.bad.key", Mode: decisionMode, Description: "x", SchemaVersion: 3, Rules: `{"voting":{"algo":"majority"}}`},
		"schema_version 4":    {PolicyId: "policy.bad.version", Mode: decisionMode, Description: "x", SchemaVersion: 4, Rules: `{}`},
		"policy.default":      {PolicyId: "policy.default", Mode: "*", Description: "x", SchemaVersion: 1, Rules: `{}`},
		"weighted no weights": {PolicyId: "policy.bad.weights", Mode: decisionMode, Description: "x", SchemaVersion: 3, Rules: `{"voting":{"algorithm":"weighted"}}`},
	} {
		res, err := op.RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: d}))
		if err != nil || res.Msg.GetOk() || !strings.HasPrefix(res.Msg.GetError(), "INVALID_POLICY_DEFINITION") {
			t.Errorf("%s: %v %v, want ok=false INVALID_POLICY_DEFINITION", name, res, err)
		}
	}
	list, _ := op.ListPolicies(ctx, connect.NewRequest(&macpv1.ListPoliciesRequest{Mode: decisionMode}))
	if len(list.Msg.GetDescriptors()) != initial+1 {
		t.Fatalf("ListPolicies has %d, want %d", len(list.Msg.GetDescriptors()), initial+1)
	}
	if _, err := op.GetPolicy(ctx, connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: "policy.nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetPolicy unknown: %v", err)
	}

	// A session bound to it: an empty tally denies, a passing vote allows.
	sid := servertest.NewSessionID()
	st := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, startWith(func(p *macpv1.SessionStartPayload) { p.PolicyVersion = "policy.team.majority" }))
	if ack := srv.Send(t, "coordinator", st); !ack.GetOk() {
		t.Fatal(ack)
	}
	srv.Send(t, "alice", servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "go"}))
	c := commitment(true)
	c.PolicyVersion = "policy.team.majority"
	ack := srv.Send(t, "coordinator", servertest.Envelope(decisionMode, "Commitment", "m2", sid, c))
	if ack.GetError().GetCode() != "POLICY_DENIED" || !strings.Contains(string(ack.GetError().GetDetails()), `"reasons"`) {
		t.Fatalf("commitment on an empty tally: %v", ack)
	}

	// Unregister and restart: the session keeps its bound copy.
	un, _ := op.UnregisterPolicy(ctx, connect.NewRequest(&macpv1.UnregisterPolicyRequest{PolicyId: "policy.team.majority"}))
	if !un.Msg.GetOk() {
		t.Fatalf("unregister: %v", un.Msg)
	}
	un, _ = op.UnregisterPolicy(ctx, connect.NewRequest(&macpv1.UnregisterPolicyRequest{PolicyId: "policy.default"}))
	if un.Msg.GetOk() {
		t.Fatal("policy.default was unregistered")
	}
	cancel()
	srv.Restart()
	ctx = context.Background()
	srv.Send(t, "alice", servertest.Envelope(decisionMode, "Vote", "m3", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}))
	if ack := srv.Send(t, "coordinator", servertest.Envelope(decisionMode, "Commitment", "m4", sid, c)); !ack.GetOk() {
		t.Fatalf("commitment after the vote, restart and unregistration: %v", ack)
	}
	if ack := srv.Send(t, "coordinator", servertest.Envelope(decisionMode, "SessionStart", "m0", servertest.NewSessionID(),
		startWith(func(p *macpv1.SessionStartPayload) { p.PolicyVersion = "policy.team.majority" }))); ack.GetError().GetCode() != "UNKNOWN_POLICY_VERSION" {
		t.Fatalf("start with an unregistered policy: %v", ack)
	}
	// Registrations survive a restart too.
	op = srv.Client(servertest.GRPC, "operator")
	if res, _ := op.RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.team.other")})); !res.Msg.GetOk() {
		t.Fatal(res.Msg)
	}
	srv.Restart()
	if _, err := srv.Client(servertest.GRPC, "operator").GetPolicy(ctx, connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: "policy.team.other"})); err != nil {
		t.Fatalf("policy lost across restart: %v", err)
	}
	expectExactReplay(t, srv, "coordinator", sid, 4)

	// The audit: the denial (from the audit trail) and the allow (from the
	// log), both naming the bound policy by content digest.
	gov := inspect(t, srv, sid).GetGovernance()
	if len(gov) != 2 || gov[0].GetAllow() || len(gov[0].GetReasons()) == 0 || gov[0].GetMessageId() != "m2" ||
		!gov[1].GetAllow() || gov[1].GetMessageId() != "m4" || gov[0].GetPolicyDigest() != gov[1].GetPolicyDigest() ||
		gov[0].GetPolicyId() != "policy.team.majority" {
		t.Fatalf("governance audit = %v", gov)
	}
}
