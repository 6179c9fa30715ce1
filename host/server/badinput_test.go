package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// sendRaw sends env with the given bearer identity ("" = none) and returns
// the Ack.
func sendRaw(t *testing.T, srv *servertest.Server, identity string, env *macpv1.Envelope) *macpv1.Ack {
	t.Helper()
	res, err := srv.Client(servertest.GRPC, identity).Send(context.Background(), connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
	if err != nil {
		t.Fatalf("Send: transport error %v", err)
	}
	return res.Msg.GetAck()
}

func env(typ, id, sid string, p proto.Message) *macpv1.Envelope {
	return servertest.Envelope(decisionMode, typ, id, sid, p)
}

func with(e *macpv1.Envelope, f func(*macpv1.Envelope)) *macpv1.Envelope { f(e); return e }

func startWith(f func(*macpv1.SessionStartPayload)) *macpv1.SessionStartPayload {
	p := start()
	f(p)
	return p
}

// TestEveryEnvelopeRuleHasItsCode violates each envelope and SessionStart
// rule once and checks the code; afterwards the logs hold only what was
// accepted, and rejected message ids were not consumed.
func TestEveryEnvelopeRuleHasItsCode(t *testing.T) {
	srv := servertest.Start(t, server.Config{MaxPayloadBytes: 4096})
	sid := servertest.NewSessionID()
	proposal := &decisionv1.ProposalPayload{ProposalId: "p1", Option: "ship"}

	// A session to aim at, then the rejections.
	if ack := sendRaw(t, srv, "coordinator", env("SessionStart", "start", sid, start())); !ack.GetOk() {
		t.Fatalf("start: %v", ack)
	}
	rejectedStarts := map[string]string{} // session id -> case
	cases := []struct {
		name, identity, code string
		env                  *macpv1.Envelope
	}{
		{"wrong macp_version", "alice", "UNSUPPORTED_PROTOCOL_VERSION", with(env("Proposal", "r1", sid, proposal), func(e *macpv1.Envelope) { e.MacpVersion = "1.0.0-draft" })},
		{"empty message_type", "alice", "INVALID_ENVELOPE", env("", "r1", sid, proposal)},
		{"empty message_id", "alice", "INVALID_ENVELOPE", env("Proposal", "", sid, proposal)},
		{"signal with a session", "alice", "INVALID_ENVELOPE", with(env("Signal", "r1", sid, nil), func(e *macpv1.Envelope) { e.Mode = "" })},
		{"progress with session but no mode", "alice", "INVALID_ENVELOPE", with(env("Progress", "r1", sid, nil), func(e *macpv1.Envelope) { e.Mode = "" })},
		{"session message without mode", "alice", "INVALID_ENVELOPE", with(env("Proposal", "r1", sid, proposal), func(e *macpv1.Envelope) { e.Mode = "" })},
		{"session message without session", "alice", "INVALID_ENVELOPE", env("Proposal", "r1", "", proposal)},
		{"payload over the limit", "alice", "PAYLOAD_TOO_LARGE", env("Proposal", "r1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: strings.Repeat("x", 5000)})},
		{"no credentials", "", "UNAUTHENTICATED", env("Proposal", "r1", sid, proposal)},
		{"sender differs from identity", "alice", "UNAUTHENTICATED", with(env("Proposal", "r1", sid, proposal), func(e *macpv1.Envelope) { e.Sender = "bob" })},
		{"unknown session", "alice", "SESSION_NOT_FOUND", env("Proposal", "r1", servertest.NewSessionID(), proposal)},
		{"mode differs from the session's", "alice", "INVALID_ENVELOPE", with(env("Proposal", "r1", sid, proposal), func(e *macpv1.Envelope) { e.Mode = "macp.mode.task.v1" })},
		{"client-sent SessionCancel", "coordinator", "FORBIDDEN", env("SessionCancel", "r1", sid, &macpv1.SessionCancelPayload{Reason: "x"})},
		{"second SessionStart for the id", "coordinator", "SESSION_ALREADY_EXISTS", env("SessionStart", "r1", sid, start())},
		{"outsider's message", "mallory", "FORBIDDEN", env("Proposal", "r1", sid, proposal)},
		{"undecodable mode payload", "alice", "INVALID_ENVELOPE", with(env("Proposal", "r1", sid, nil), func(e *macpv1.Envelope) { e.Payload = []byte{0xff, 0xff, 0xff} })},
		{"unknown message type", "alice", "INVALID_ENVELOPE", env("Frobnicate", "r1", sid, proposal)},
		{"commitment before any proposal", "coordinator", "INVALID_ENVELOPE", env("Commitment", "r1", sid, commitment(true))},
		{"commitment by a participant", "alice", "FORBIDDEN", env("Commitment", "r1", sid, commitment(true))},
	}
	badStarts := []struct {
		name, sid, code string
		payload         proto.Message
		mode            string
	}{
		{"uppercase UUID", strings.ToUpper(servertest.NewSessionID()), "INVALID_SESSION_ID", start(), ""},
		{"short id", "s1", "INVALID_SESSION_ID", start(), ""},
		{"36-char non-UUID with hyphens", "abcdefgh-abcd-abcd-abcd-abcdefghijkl", "INVALID_SESSION_ID", start(), ""},
		{"UUID v1", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "INVALID_SESSION_ID", start(), ""},
		{"unknown mode", servertest.NewSessionID(), "MODE_NOT_SUPPORTED", start(), "macp.mode.nothing.v1"},
		{"empty payload", servertest.NewSessionID(), "INVALID_ENVELOPE", nil, ""},
		{"ttl zero", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.TtlMs = 0 }), ""},
		{"ttl over a day", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.TtlMs = 86_400_001 }), ""},
		{"blank mode_version", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.ModeVersion = " " }), ""},
		{"blank configuration_version", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.ConfigurationVersion = "" }), ""},
		{"duplicate participant", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.Participants = []string{"a", "a"} }), ""},
		{"blank participant", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.Participants = []string{"a", " "} }), ""},
		{"negative max_suspend_ms", servertest.NewSessionID(), "INVALID_ENVELOPE", startWith(func(p *macpv1.SessionStartPayload) { p.MaxSuspendMs = -1 }), ""},
		{"unserved mode_version", servertest.NewSessionID(), "MODE_NOT_SUPPORTED", startWith(func(p *macpv1.SessionStartPayload) { p.ModeVersion = "2.0.0" }), ""},
		{"unknown policy", servertest.NewSessionID(), "UNKNOWN_POLICY_VERSION", startWith(func(p *macpv1.SessionStartPayload) { p.PolicyVersion = "policy.nobody.nothing" }), ""},
	}
	for _, c := range cases {
		ack := sendRaw(t, srv, c.identity, c.env)
		if ack.GetOk() || ack.GetError().GetCode() != c.code {
			t.Errorf("%s: got %v, want %s", c.name, ack, c.code)
		}
	}
	for _, c := range badStarts {
		e := env("SessionStart", "start", c.sid, c.payload)
		if c.mode != "" {
			e.Mode = c.mode
		}
		ack := sendRaw(t, srv, "coordinator", e)
		if ack.GetOk() || ack.GetError().GetCode() != c.code {
			t.Errorf("SessionStart %s: got %v, want %s", c.name, ack, c.code)
		}
		rejectedStarts[c.sid] = c.name
	}
	// Nothing rejected left a session behind.
	for id, name := range rejectedStarts {
		_, err := srv.Client(servertest.GRPC, "coordinator").GetSession(context.Background(), connect.NewRequest(&macpv1.GetSessionRequest{SessionId: id}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("rejected SessionStart (%s) left a session: %v", name, err)
		}
	}
	// The rejected id "r1" was never consumed: it is accepted now.
	if ack := sendRaw(t, srv, "alice", env("Proposal", "r1", sid, proposal)); !ack.GetOk() || ack.GetDuplicate() {
		t.Fatalf("r1 after its rejections: %v, want accepted", ack)
	}
	// The log holds exactly the two accepted envelopes.
	var ids []string
	if err := srv.Server().Kernel().As(access.Operator("test")).Log(context.Background(), sid, 0, func(e *storev1.Entry) error {
		ids = append(ids, e.GetEnvelope().GetMessageId())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "start,r1" {
		t.Fatalf("log message ids = %v, want [start r1]", ids)
	}
	// The same SessionStart again is a duplicate, not an error.
	if ack := sendRaw(t, srv, "coordinator", env("SessionStart", "start", sid, start())); !ack.GetOk() || !ack.GetDuplicate() {
		t.Fatalf("repeated SessionStart: %v, want duplicate", ack)
	}
	// A missing envelope is a transport-level InvalidArgument.
	if _, err := srv.Client(servertest.GRPC, "alice").Send(context.Background(), connect.NewRequest(&macpv1.SendRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("Send without envelope: %v, want InvalidArgument", err)
	}
}

func TestCommitmentPayloadChecks(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	sid := servertest.NewSessionID()
	for _, e := range []*macpv1.Envelope{
		with(env("SessionStart", "m0", sid, start()), func(e *macpv1.Envelope) { e.Sender = "coordinator" }),
		with(env("Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "ship"}), func(e *macpv1.Envelope) { e.Sender = "alice" }),
	} {
		if ack := sendRaw(t, srv, e.Sender, e); !ack.GetOk() {
			t.Fatalf("%s: %v", e.MessageType, ack)
		}
	}
	mutate := func(f func(*macpv1.CommitmentPayload)) *macpv1.CommitmentPayload {
		c := commitment(true)
		f(c)
		return c
	}
	for name, c := range map[string]*macpv1.CommitmentPayload{
		"mode_version echo":          mutate(func(c *macpv1.CommitmentPayload) { c.ModeVersion = "0.9.0" }),
		"configuration_version echo": mutate(func(c *macpv1.CommitmentPayload) { c.ConfigurationVersion = "cfg-2" }),
		"policy_version echo":        mutate(func(c *macpv1.CommitmentPayload) { c.PolicyVersion = "policy.other" }),
		"blank reason":               mutate(func(c *macpv1.CommitmentPayload) { c.Reason = "  " }),
		"blank commitment_id":        mutate(func(c *macpv1.CommitmentPayload) { c.CommitmentId = "" }),
		"polarity of the action":     mutate(func(c *macpv1.CommitmentPayload) { c.OutcomePositive = false }),
		"uppercase supersedes hash": mutate(func(c *macpv1.CommitmentPayload) {
			c.Supersedes = &macpv1.CommitmentRef{SessionId: "x", CommitmentHash: "sha256:" + strings.Repeat("A", 64)}
		}),
		"supersedes without session": mutate(func(c *macpv1.CommitmentPayload) {
			c.Supersedes = &macpv1.CommitmentRef{CommitmentHash: "sha256:" + strings.Repeat("a", 64)}
		}),
	} {
		if ack := sendRaw(t, srv, "coordinator", env("Commitment", "c-"+name, sid, c)); ack.GetOk() || ack.GetError().GetCode() != "INVALID_ENVELOPE" {
			t.Errorf("%s: got %v, want INVALID_ENVELOPE", name, ack)
		}
	}
	ok := mutate(func(c *macpv1.CommitmentPayload) { c.PolicyVersion = "policy.default" })
	if ack := sendRaw(t, srv, "coordinator", env("Commitment", "c-ok", sid, ok)); !ack.GetOk() || ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("valid commitment echoing policy.default: %v", ack)
	}
	if ack := sendRaw(t, srv, "coordinator", env("Commitment", "c-late", sid, ok)); ack.GetError().GetCode() != "SESSION_NOT_OPEN" {
		t.Fatalf("second commitment: %v, want SESSION_NOT_OPEN", ack)
	}
}

func TestTTLExpiry(t *testing.T) {
	// One server expires lazily only (no sweeper), the other by its sweeper.
	lazySrv := servertest.Start(t, server.Config{Memory: true, SweepInterval: -1})
	sweptSrv := servertest.Start(t, server.Config{Memory: true, SweepInterval: 10 * time.Millisecond})
	lazy, swept := servertest.NewSessionID(), servertest.NewSessionID()
	for id, srv := range map[string]*servertest.Server{lazy: lazySrv, swept: sweptSrv} {
		p := startWith(func(p *macpv1.SessionStartPayload) { p.TtlMs = 50 })
		if ack := sendRaw(t, srv, "coordinator", env("SessionStart", "m0", id, p)); !ack.GetOk() {
			t.Fatalf("start: %v", ack)
		}
	}
	time.Sleep(200 * time.Millisecond)
	// The sweeper wrote the expiry before anyone asked.
	var last *storev1.Entry
	_ = sweptSrv.Server().Kernel().As(access.Operator("test")).Log(context.Background(), swept, 0, func(e *storev1.Entry) error { last = e; return nil })
	if last.GetOrigin() != storev1.Origin_ORIGIN_RUNTIME || last.GetStateAfter() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("swept session's last log entry = %v, want a runtime expiry record", last)
	}
	// Without a sweeper the next message finds the deadline passed.
	ack := sendRaw(t, lazySrv, "alice", env("Proposal", "m1", lazy, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"}))
	if ack.GetError().GetCode() != "SESSION_NOT_OPEN" {
		t.Fatalf("message after the TTL: %v, want SESSION_NOT_OPEN", ack)
	}
	for id, srv := range map[string]*servertest.Server{lazy: lazySrv, swept: sweptSrv} {
		if md := getSession(t, srv.Client(servertest.GRPC, "coordinator"), id); md.GetState() != macpv1.SessionState_SESSION_STATE_EXPIRED {
			t.Fatalf("state after the TTL = %v, want EXPIRED", md.GetState())
		}
		last = nil
		_ = srv.Server().Kernel().As(access.Operator("test")).Log(context.Background(), id, 0, func(e *storev1.Entry) error { last = e; return nil })
		if last.GetOrigin() != storev1.Origin_ORIGIN_RUNTIME || last.GetStateAfter() != macpv1.SessionState_SESSION_STATE_EXPIRED {
			t.Fatalf("last log entry = %v, want a runtime expiry record", last)
		}
	}
}
