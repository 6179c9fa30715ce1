package server_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	handoffv1 "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const handoffMode = "macp.mode.handoff.v1"

// startHandoff registers a Handoff policy with a 5 s implicit-accept timeout
// and starts a session bound to it, owned by "owner" with target "bob".
func startHandoff(t *testing.T, srv *servertest.Server, now time.Time) string {
	t.Helper()
	ctx := context.Background()
	pol := &macpv1.PolicyDescriptor{PolicyId: "policy.handoff.auto", Mode: handoffMode, Description: "accept after 5 s of silence",
		SchemaVersion: 1, Rules: `{"acceptance":{"implicit_accept_timeout_ms":5000}}`}
	res, err := srv.Client(servertest.GRPC, "operator").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: pol}))
	if err != nil || (!res.Msg.GetOk() && res.Msg.GetError() == "") {
		t.Fatalf("register policy: %v %v", res, err)
	}
	sid := servertest.NewSessionID()
	st := servertest.Envelope(handoffMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Participants: []string{"owner", "bob"}, ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1",
		PolicyVersion: "policy.handoff.auto", TtlMs: 60_000})
	st.TimestampUnixMs = now.UnixMilli()
	if ack := srv.Send(t, "owner", st); !ack.GetOk() {
		t.Fatalf("SessionStart: %v", ack)
	}
	return sid
}

func handoffCommitment(positive bool) *macpv1.CommitmentPayload {
	action, scope := "handoff.accepted", "support"
	if !positive {
		action = "handoff.declined"
	}
	return &macpv1.CommitmentPayload{CommitmentId: "c1", Action: action, AuthorityScope: scope, Reason: "done",
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", PolicyVersion: "policy.handoff.auto", OutcomePositive: positive}
}

func logOf(t *testing.T, srv *servertest.Server, sid string) []*storev1.Entry {
	t.Helper()
	var out []*storev1.Entry
	if err := srv.Server().Kernel().As(access.Operator("test")).Log(context.Background(), sid, 0, func(e *storev1.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHandoffImplicitAccept plays RFC-MACP-0010's implicit accept on a
// real server: the timer runs on the session clock, so a suspension
// postpones it; nothing is written until the session is next touched; the
// synthetic HandoffAccept is then written before the message that touched
// the session, timestamped when it came due, streamed to subscribers, and
// replayed exactly. Agents cannot use the runtime's message ids.
func TestHandoffImplicitAccept(t *testing.T) {
	clk := servertest.NewClock(time.UnixMilli(1_800_000_000_000))
	t0 := clk.Now()
	srv := servertest.Start(t, server.Config{Now: clk.Now, SweepInterval: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sid := startHandoff(t, srv, t0)
	owner := srv.Client(servertest.GRPC, "owner")

	stream := srv.Client(servertest.GRPC, "bob").StreamSession(ctx)
	if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Second) // session clock 1 s: the timer is due at 6 s
	if ack := srv.Send(t, "owner", servertest.Envelope(handoffMode, "HandoffOffer", "m1", sid,
		&handoffv1.HandoffOfferPayload{HandoffId: "h1", TargetParticipant: "bob", Scope: "support"})); !ack.GetOk() {
		t.Fatalf("offer: %v", ack)
	}
	// Agents may not use the runtime's message ids.
	for _, id := range []string{"implicit-accept:h1", "runtime:suspend:9"} {
		ack := srv.Send(t, "bob", servertest.Envelope(handoffMode, "HandoffAccept", id, sid,
			&handoffv1.HandoffAcceptPayload{HandoffId: "h1", AcceptedBy: "bob"}))
		if ack.GetError().GetCode() != "INVALID_ENVELOPE" {
			t.Fatalf("agent message id %q: %v, want INVALID_ENVELOPE", id, ack)
		}
	}
	clk.Advance(2 * time.Second) // clock 3 s
	if res, err := owner.SuspendSession(ctx, connect.NewRequest(&macpv1.SuspendSessionRequest{SessionId: sid})); err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("suspend: %v %v", res, err)
	}
	clk.Advance(10 * time.Second) // suspended: the clock stays at 3 s
	if res, err := owner.ResumeSession(ctx, connect.NewRequest(&macpv1.ResumeSessionRequest{SessionId: sid})); err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("resume: %v %v", res, err)
	}
	clk.Advance(2 * time.Second) // clock 5 s: not due yet
	if ack := srv.Send(t, "owner", servertest.Envelope(handoffMode, "Commitment", "m2", sid, handoffCommitment(true))); ack.GetError().GetCode() != "INVALID_ENVELOPE" {
		t.Fatalf("commitment before the timer: %v, want INVALID_ENVELOPE (no answer yet)", ack)
	}
	if n := len(logOf(t, srv, sid)); n != 4 {
		t.Fatalf("log has %d entries before the timer, want 4", n)
	}
	clk.Advance(3 * time.Second) // clock 8 s: due since 6 s, i.e. at t0 + 16 s
	if ack := srv.Send(t, "owner", servertest.Envelope(handoffMode, "Commitment", "m3", sid, handoffCommitment(true))); !ack.GetOk() {
		t.Fatalf("commitment after the timer: %v", ack)
	}

	log := logOf(t, srv, sid)
	var types []string
	for _, e := range log {
		types = append(types, e.GetEnvelope().GetMessageType())
	}
	if got, want := fmtList(types), "[SessionStart HandoffOffer SessionSuspend SessionResume HandoffAccept Commitment]"; got != want {
		t.Fatalf("log %s, want %s", got, want)
	}
	synthetic := log[4]
	env := synthetic.GetEnvelope()
	var p handoffv1.HandoffAcceptPayload
	if err := proto.Unmarshal(env.GetPayload(), &p); err != nil {
		t.Fatal(err)
	}
	due := t0.Add(16 * time.Second).UnixMilli()
	if synthetic.GetOrigin() != storev1.Origin_ORIGIN_RUNTIME || env.GetMessageId() != "implicit-accept:h1" || env.GetSender() != "bob" ||
		synthetic.GetAcceptedAtUnixMs() != due || env.GetTimestampUnixMs() != due || !p.GetImplicit() || p.GetAcceptedBy() != "bob" {
		t.Fatalf("synthetic accept %v (payload %v); want a runtime record from bob at %d", synthetic, &p, due)
	}
	ins, err := srv.Admin("owner").InspectSession(ctx, connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatal(err)
	}
	view := ins.Msg.GetModeStateJson()
	if !contains(view, `"disposition":"Accepted"`) || !contains(view, `"implicit":true`) {
		t.Fatalf("mode state %s", view)
	}

	// The subscriber saw every entry, the synthetic accept in its place.
	var streamed []string
	for len(streamed) < 6 {
		res, err := stream.Receive()
		if err != nil {
			t.Fatalf("stream after %v: %v", streamed, err)
		}
		if e := res.GetEnvelope(); e != nil {
			streamed = append(streamed, e.GetMessageId())
		}
	}
	if streamed[4] != "implicit-accept:h1" || streamed[5] != "m3" {
		t.Fatalf("streamed %v", streamed)
	}
	expectExactReplay(t, srv, "owner", sid, 6)
}

// TestHandoffImplicitAcceptLosesToAnswer: an answer before the timer is due
// withdraws it, so nothing is written later.
func TestHandoffImplicitAcceptLosesToAnswer(t *testing.T) {
	clk := servertest.NewClock(time.UnixMilli(1_800_000_000_000))
	srv := servertest.Start(t, server.Config{Memory: true, Now: clk.Now, SweepInterval: -1})
	sid := startHandoff(t, srv, clk.Now())
	srv.Send(t, "owner", servertest.Envelope(handoffMode, "HandoffOffer", "m1", sid,
		&handoffv1.HandoffOfferPayload{HandoffId: "h1", TargetParticipant: "bob"}))
	clk.Advance(4 * time.Second)
	if ack := srv.Send(t, "bob", servertest.Envelope(handoffMode, "HandoffDecline", "m2", sid,
		&handoffv1.HandoffDeclinePayload{HandoffId: "h1", DeclinedBy: "bob", Reason: "busy"})); !ack.GetOk() {
		t.Fatalf("decline: %v", ack)
	}
	clk.Advance(time.Minute / 2)
	getSession(t, srv.Client(servertest.GRPC, "owner"), sid) // an access after the old due time
	if n := len(logOf(t, srv, sid)); n != 3 {
		t.Fatalf("log has %d entries, want 3: the declined offer's timer must not fire", n)
	}
	expectExactReplay(t, srv, "owner", sid, 3)
}

// TestHandoffImplicitAcceptBySweepAfterRestart: the pending timer survives a
// restart, and the sweeper writes the synthetic accept with nobody touching
// the session.
func TestHandoffImplicitAcceptBySweepAfterRestart(t *testing.T) {
	clk := servertest.NewClock(time.UnixMilli(1_800_000_000_000))
	srv := servertest.Start(t, server.Config{Now: clk.Now, SweepInterval: 5 * time.Millisecond})
	sid := startHandoff(t, srv, clk.Now())
	srv.Send(t, "owner", servertest.Envelope(handoffMode, "HandoffOffer", "m1", sid,
		&handoffv1.HandoffOfferPayload{HandoffId: "h1", TargetParticipant: "bob"}))
	srv.Restart()
	clk.Advance(6 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for len(logOf(t, srv, sid)) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not write the synthetic accept within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e := logOf(t, srv, sid)[2]; e.GetEnvelope().GetMessageId() != "implicit-accept:h1" || e.GetOrigin() != storev1.Origin_ORIGIN_RUNTIME {
		t.Fatalf("third entry %v", e)
	}
	expectExactReplay(t, srv, "owner", sid, 3)
}
