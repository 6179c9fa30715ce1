package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

const decisionMode = "macp.mode.decision.v1"

func start() *macpv1.SessionStartPayload {
	return &macpv1.SessionStartPayload{
		Intent: "choose", Participants: []string{"alice", "bob"},
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", TtlMs: 60_000,
	}
}

func commitment(positive bool) *macpv1.CommitmentPayload {
	action := "decision.selected"
	if !positive {
		action = "decision.rejected"
	}
	return &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "team", Reason: "voted",
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", OutcomePositive: positive,
	}
}

// step is one envelope of a scripted session and the code it must get
// ("" = accepted).
type step struct {
	sender, typ, id string
	payload         proto.Message
	wantCode        string
}

func decisionScript() []step {
	return []step{
		{"coordinator", "SessionStart", "m0", start(), ""},
		{"alice", "Proposal", "m1", &decisionv1.ProposalPayload{ProposalId: "p1", Option: "ship"}, ""},
		{"bob", "Evaluation", "m2", &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.9}, ""},
		{"bob", "Objection", "m3", &decisionv1.ObjectionPayload{ProposalId: "p1", Reason: "risky", Severity: "low"}, ""},
		{"alice", "Vote", "m4", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}, ""},
		{"alice", "Vote", "m5", &decisionv1.VotePayload{ProposalId: "p1", Vote: "REJECT"}, "INVALID_ENVELOPE"},
		{"bob", "Vote", "m6", &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}, ""},
		{"alice", "Commitment", "m7", commitment(true), "FORBIDDEN"},
		{"coordinator", "Commitment", "m8", commitment(true), ""},
	}
}

// send sends one scripted step over client and checks its Ack.
func send(t *testing.T, client macpv1connect.MACPRuntimeServiceClient, sid string, st step) *macpv1.Ack {
	t.Helper()
	env := servertest.Envelope(decisionMode, st.typ, st.id, sid, st.payload)
	env.Sender = st.sender
	req := connect.NewRequest(&macpv1.SendRequest{Envelope: env})
	req.Header().Set("Authorization", "Bearer "+st.sender)
	res, err := client.Send(context.Background(), req)
	if err != nil {
		t.Fatalf("%s %s: transport error %v", st.sender, st.typ, err)
	}
	ack := res.Msg.GetAck()
	if st.wantCode == "" {
		if !ack.GetOk() || ack.GetDuplicate() {
			t.Fatalf("%s %s (%s): want accepted, got %v", st.sender, st.typ, st.id, ack)
		}
	} else if ack.GetOk() || ack.GetError().GetCode() != st.wantCode {
		t.Fatalf("%s %s (%s): want %s, got %v", st.sender, st.typ, st.id, st.wantCode, ack)
	}
	return ack
}

func TestDecisionSessionOverEveryProtocol(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	for _, p := range servertest.Protocols {
		t.Run(string(p), func(t *testing.T) {
			client := srv.Client(p, "")
			sid := servertest.NewSessionID()
			var last *macpv1.Ack
			for _, st := range decisionScript() {
				last = send(t, client, sid, st)
			}
			if last.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
				t.Fatalf("final ack state = %v, want RESOLVED", last.GetSessionState())
			}
			md := getSession(t, srv.Client(p, "coordinator"), sid)
			if md.GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED || md.GetInitiator() != "coordinator" ||
				md.GetPolicyVersion() != "policy.default" || md.GetMode() != decisionMode {
				t.Fatalf("metadata = %v", md)
			}
			if n := len(md.GetParticipantActivity()); n != 3 {
				t.Fatalf("participant activity has %d entries, want 3 (coordinator, alice, bob): %v", n, md.GetParticipantActivity())
			}
		})
	}
}

func getSession(t *testing.T, c macpv1connect.MACPRuntimeServiceClient, sid string) *macpv1.SessionMetadata {
	t.Helper()
	res, err := c.GetSession(context.Background(), connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	return res.Msg.GetMetadata()
}

func TestDiscoveryNeedsNoCredentials(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	ctx := context.Background()
	for _, p := range servertest.Protocols {
		c := srv.Client(p, "")
		init, err := c.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"0.9", "1.0"}}))
		if err != nil {
			t.Fatalf("%s Initialize: %v", p, err)
		}
		if init.Msg.GetSelectedProtocolVersion() != "1.0" {
			t.Fatalf("%s selected %q", p, init.Msg.GetSelectedProtocolVersion())
		}
		modes, err := c.ListModes(ctx, connect.NewRequest(&macpv1.ListModesRequest{}))
		if err != nil {
			t.Fatalf("%s ListModes: %v", p, err)
		}
		found := false
		for _, m := range modes.Msg.GetModes() {
			if m.GetMode() == decisionMode && m.GetModeVersion() == "1.0.0" {
				found = true
			}
			if len(m.GetMode()) > 4 && m.GetMode()[:4] == "ext." {
				t.Fatalf("ListModes lists extension mode %s", m.GetMode())
			}
		}
		if !found {
			t.Fatalf("%s ListModes lacks %s: %v", p, decisionMode, modes.Msg.GetModes())
		}
		man, err := c.GetManifest(ctx, connect.NewRequest(&macpv1.GetManifestRequest{}))
		if err != nil {
			t.Fatalf("%s GetManifest: %v", p, err)
		}
		if len(man.Msg.GetManifest().GetSupportedModes()) == 0 || man.Msg.GetManifest().GetAgentId() == "" {
			t.Fatalf("%s manifest incomplete: %v", p, man.Msg.GetManifest())
		}
	}
	c := srv.Client(servertest.GRPC, "")
	_, err := c.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"2.0"}}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Initialize with only 2.0: got %v, want FailedPrecondition", err)
	}
	_, err = c.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("Initialize with no versions: got %v, want InvalidArgument", err)
	}
	_, err = c.GetManifest(ctx, connect.NewRequest(&macpv1.GetManifestRequest{AgentId: "someone-else"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetManifest of an unknown agent: got %v, want NotFound", err)
	}

	// The same manifest at the well-known HTTP address, as JSON with the
	// wire's field names.
	res, err := http.Get(srv.URL + "/.well-known/macp.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var man struct {
		AgentID        string   `json:"agent_id"`
		SupportedModes []string `json:"supported_modes"`
		InputTypes     []string `json:"input_content_types"`
	}
	if err := json.NewDecoder(res.Body).Decode(&man); err != nil || res.StatusCode != http.StatusOK ||
		res.Header.Get("Content-Type") != "application/macp-manifest+json" ||
		man.AgentID != "concord" || !slices.Contains(man.SupportedModes, decisionMode) || len(man.InputTypes) == 0 {
		t.Fatalf("well-known manifest: %d %s %+v %v", res.StatusCode, res.Header.Get("Content-Type"), man, err)
	}
	post, err := http.Post(srv.URL+"/.well-known/macp.json", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to the manifest: %d, want 405", post.StatusCode)
	}
}

func TestGetSessionAuthorization(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	sid := servertest.NewSessionID()
	send(t, srv.Client(servertest.Connect, ""), sid, decisionScript()[0])
	ctx := context.Background()
	req := connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid})
	if _, err := srv.Client(servertest.GRPC, "").GetSession(ctx, req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous GetSession: %v, want Unauthenticated", err)
	}
	if _, err := srv.Client(servertest.GRPC, "mallory").GetSession(ctx, req); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("outsider GetSession: %v, want PermissionDenied", err)
	}
	if md := getSession(t, srv.Client(servertest.GRPC, "bob"), sid); md.GetState() != macpv1.SessionState_SESSION_STATE_OPEN {
		t.Fatalf("participant sees %v", md.GetState())
	}
	_, err := srv.Client(servertest.GRPC, "bob").GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: servertest.NewSessionID()}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound || ce.Meta().Get("macp-error-code") != "SESSION_NOT_FOUND" {
		t.Fatalf("unknown session: %v, want NotFound with SESSION_NOT_FOUND", err)
	}
}
