package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// TestAuditTrailOfGovernanceActions: every upload, removal, registry
// change, push and admin call lands in the trail with actor, target and
// outcome, refusals included; it survives a restart; only admins read it.
func TestAuditTrailOfGovernanceActions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	writeTokens(t, path, tokensDoc())
	srv, _ := tokenServer(t, func(c *server.Config) { c.Memory = false; c.DataDir = dir; c.Auth.TokensFile = path })
	ctx := context.Background()
	rt := func(who string) macpv1connect.MACPRuntimeServiceClient { return srv.Client(servertest.GRPC, tok(who)) }

	up, err := srv.Admin(tok("ops")).UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: module(t, "counter")}))
	if err != nil {
		t.Fatal(err)
	}
	digest := up.Msg.GetModule().GetDigest()
	if _, err := rt("alice").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.audit.a")})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("alice registers: %v", err)
	}
	if _, err := srv.Client(servertest.GRPC, "").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.audit.anon")})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous registers: %v", err)
	}
	mustOK := func(what string, res interface{ GetOk() bool }, err error) {
		t.Helper()
		if err != nil || !res.GetOk() {
			t.Fatalf("%s: %v %v", what, res, err)
		}
	}
	reg, err := rt("policies").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.audit.a")}))
	mustOK("register", reg.Msg, err)
	dup, err := rt("policies").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.audit.a")}))
	if err != nil || dup.Msg.GetOk() {
		t.Fatalf("duplicate: %v %v", dup, err)
	}
	unreg, err := rt("policies").UnregisterPolicy(ctx, connect.NewRequest(&macpv1.UnregisterPolicyRequest{PolicyId: "policy.audit.a"}))
	mustOK("unregister", unreg.Msg, err)
	rego, err := os.ReadFile("../../examples/policies/two_person_rule.rego")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Admin(tok("ops")).PushPolicy(ctx, connect.NewRequest(&adminv1.PushPolicyRequest{Rego: string(rego), PolicyDescriptor: &macpv1.PolicyDescriptor{
		PolicyId: "policy.audit.two-person", Mode: decisionMode, Description: "two-person rule", SchemaVersion: 3, Rules: `{"approvers":["carol"],"min_approvals":2}`,
	}})); err != nil {
		t.Fatalf("push: %v", err)
	}
	sid := servertest.NewSessionID()
	wantAck(t, "start", sendAs(t, srv, "coordinator", decisionStart(sid, "alice")), "")
	if _, err := srv.Admin(tok("ops")).InspectSession(ctx, connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid})); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if _, err := srv.Admin(tok("ops")).RemoveMode(ctx, connect.NewRequest(&adminv1.RemoveModeRequest{Mode: "ext.test.counter.v1"})); err != nil {
		t.Fatalf("remove: %v", err)
	}

	want := []struct{ actor, procedure, target, code string }{
		{"ops", adminv1connect.AdminServiceRemoveModeProcedure, "ext.test.counter.v1", ""},
		{"ops", adminv1connect.AdminServiceInspectSessionProcedure, sid, ""},
		{"ops", adminv1connect.AdminServicePushPolicyProcedure, "policy.audit.two-person", ""},
		{"policies", macpv1connect.MACPRuntimeServiceUnregisterPolicyProcedure, "policy.audit.a", ""},
		{"policies", macpv1connect.MACPRuntimeServiceRegisterPolicyProcedure, "policy.audit.a", "INVALID_POLICY_DEFINITION"},
		{"policies", macpv1connect.MACPRuntimeServiceRegisterPolicyProcedure, "policy.audit.a", ""},
		{"alice", macpv1connect.MACPRuntimeServiceRegisterPolicyProcedure, "policy.audit.a", "FORBIDDEN"},
		{"ops", adminv1connect.AdminServiceUploadModeProcedure, "ext.test.counter.v1 sha256:" + digest, ""},
	}
	check := func(srv *servertest.Server) {
		t.Helper()
		var got []*adminv1.AuditRecord
		token := ""
		for {
			res, err := srv.Admin(tok("ops")).ListAuditRecords(ctx, connect.NewRequest(&adminv1.ListAuditRecordsRequest{PageSize: 3, PageToken: token}))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res.Msg.GetRecords()...)
			if token = res.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(got) != len(want) {
			for _, r := range got {
				t.Logf("%v", r)
			}
			t.Fatalf("%d records, want %d", len(got), len(want))
		}
		for i, w := range want {
			r := got[i]
			if r.GetActor() != w.actor || r.GetProcedure() != w.procedure || r.GetTarget() != w.target || r.GetErrorCode() != w.code || r.GetOk() != (w.code == "") || r.GetAtUnixMs() == 0 {
				t.Fatalf("record %d = %v, want %+v", i, r, w)
			}
			if w.code != "" && r.GetErrorMessage() == "" {
				t.Fatalf("record %d has no error message", i)
			}
		}
	}
	check(srv)
	srv.Restart()
	check(srv)
}
