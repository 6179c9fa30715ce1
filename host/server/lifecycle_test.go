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
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func TestCancelSuspendResume(t *testing.T) {
	clk := servertest.NewClock(time.UnixMilli(1_800_000_000_000))
	srv := servertest.Start(t, server.Config{Memory: true, Now: clk.Now, SweepInterval: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	coord := srv.Client(servertest.GRPC, "coordinator")
	// Watch after the session exists: its CREATED comes from the initial
	// listing (a connect-go client waits for the first message).
	sid := servertest.NewSessionID()
	st := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, startWith(func(p *macpv1.SessionStartPayload) { p.TtlMs = 10_000 }))
	st.TimestampUnixMs = clk.Now().UnixMilli()
	if ack := srv.Send(t, "coordinator", st); !ack.GetOk() {
		t.Fatal(ack)
	}
	watch, err := coord.WatchSessions(ctx, connect.NewRequest(&macpv1.WatchSessionsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	event := func() macpv1.SessionLifecycleEvent_EventType {
		if !watch.Receive() {
			t.Fatalf("watch ended: %v", watch.Err())
		}
		return watch.Msg().GetEvent().GetEventType()
	}

	if ev := event(); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED {
		t.Fatalf("event %v, want CREATED", ev)
	}
	deadline := getSession(t, coord, sid).GetExpiresAtUnixMs()

	// Only the initiator (or a delegated role) may control the session.
	if _, err := srv.Client(servertest.GRPC, "alice").SuspendSession(ctx, connect.NewRequest(&macpv1.SuspendSessionRequest{SessionId: sid, Reason: "x"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("participant suspends: %v, want PermissionDenied", err)
	}
	if _, err := coord.CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: servertest.NewSessionID()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("cancel unknown: %v, want NotFound", err)
	}
	if res, err := coord.ResumeSession(ctx, connect.NewRequest(&macpv1.ResumeSessionRequest{SessionId: sid, Reason: "x"})); err != nil || res.Msg.GetAck().GetError().GetCode() != "SESSION_NOT_OPEN" {
		t.Fatalf("resume an open session: %v %v, want SESSION_NOT_OPEN in the Ack", res, err)
	}

	clk.Advance(4 * time.Second)
	if res, err := coord.SuspendSession(ctx, connect.NewRequest(&macpv1.SuspendSessionRequest{SessionId: sid, Reason: "lunch"})); err != nil || !res.Msg.GetAck().GetOk() ||
		res.Msg.GetAck().GetSessionState() != macpv1.SessionState_SESSION_STATE_SUSPENDED {
		t.Fatalf("suspend: %v %v", res, err)
	}
	if ev := event(); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_SUSPENDED {
		t.Fatalf("event %v, want SUSPENDED", ev)
	}
	// While suspended: messages are refused, and the old deadline passes
	// without expiring the session.
	if ack := srv.Send(t, "alice", servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})); ack.GetError().GetCode() != "SESSION_NOT_OPEN" {
		t.Fatalf("message while suspended: %v", ack)
	}
	clk.Advance(30 * time.Second)
	if md := getSession(t, coord, sid); md.GetState() != macpv1.SessionState_SESSION_STATE_SUSPENDED {
		t.Fatalf("suspended session past its old deadline is %v", md.GetState())
	}
	res, err := coord.ResumeSession(ctx, connect.NewRequest(&macpv1.ResumeSessionRequest{SessionId: sid, Reason: "back"}))
	if err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("resume: %v %v", res, err)
	}
	if ev := event(); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_RESUMED {
		t.Fatalf("event %v, want RESUMED", ev)
	}
	md := getSession(t, coord, sid)
	if md.GetExpiresAtUnixMs() != deadline+30_000 {
		t.Fatalf("deadline after resume = %d, want the old one plus 30s of suspension (%d)", md.GetExpiresAtUnixMs(), deadline+30_000)
	}
	// The resume record banks the remaining TTL: 10s - 4s = 6s.
	var resume macpv1.SessionResumePayload
	var types []string
	_ = srv.Server().Kernel().As(access.Operator("test")).Log(ctx, sid, 0, func(e *storev1.Entry) error {
		types = append(types, e.GetEnvelope().GetMessageType())
		if e.GetEnvelope().GetMessageType() == "SessionResume" {
			_ = proto.Unmarshal(e.GetEnvelope().GetPayload(), &resume)
		}
		return nil
	})
	if resume.GetBankedMs() != 6_000 || resume.GetResumedBy() != "coordinator" || resume.GetReason() != "back" {
		t.Fatalf("resume record = %v, want banked_ms 6000 by coordinator", &resume)
	}
	if ack := srv.Send(t, "alice", servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})); !ack.GetOk() {
		t.Fatalf("message after resume: %v", ack)
	}
	if res, err := coord.CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid, Reason: "done"})); err != nil || res.Msg.GetAck().GetSessionState() != macpv1.SessionState_SESSION_STATE_CANCELLED {
		t.Fatalf("cancel: %v %v", res, err)
	}
	if ev := event(); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_CANCELLED {
		t.Fatalf("event %v, want CANCELLED", ev)
	}
	// Cancelling again is idempotent.
	if res, err := coord.CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid})); err != nil || !res.Msg.GetAck().GetOk() || res.Msg.GetAck().GetSessionState() != macpv1.SessionState_SESSION_STATE_CANCELLED {
		t.Fatalf("second cancel: %v %v", res, err)
	}
	types = nil
	_ = srv.Server().Kernel().As(access.Operator("test")).Log(ctx, sid, 0, func(e *storev1.Entry) error {
		types = append(types, e.GetEnvelope().GetMessageType())
		return nil
	})
	want := "[SessionStart SessionSuspend SessionResume Proposal SessionCancel]"
	if got := fmtList(types); got != want {
		t.Fatalf("log = %s, want %s", got, want)
	}
	expectExactReplay(t, srv, "coordinator", sid, 5)
}

// expectExactReplay replays sid through the admin API and requires it to
// reproduce the recorded session over n log entries.
func expectExactReplay(t *testing.T, srv *servertest.Server, identity, sid string, n uint64) {
	t.Helper()
	rep, err := srv.Admin(identity).ReplaySession(context.Background(), connect.NewRequest(&adminv1.ReplaySessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if !rep.Msg.GetExact() || rep.Msg.GetEntries() != n {
		t.Fatalf("replay over %d entries (want %d): exact=%t %v", rep.Msg.GetEntries(), n, rep.Msg.GetExact(), rep.Msg.GetDivergences())
	}
}

func TestSuspensionCapExpires(t *testing.T) {
	clk := servertest.NewClock(time.UnixMilli(1_800_000_000_000))
	srv := servertest.Start(t, server.Config{Memory: true, Now: clk.Now, SweepInterval: -1})
	ctx := context.Background()
	coord := srv.Client(servertest.GRPC, "coordinator")
	sid := servertest.NewSessionID()
	st := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, startWith(func(p *macpv1.SessionStartPayload) { p.MaxSuspendMs = 5_000 }))
	st.TimestampUnixMs = clk.Now().UnixMilli()
	if ack := srv.Send(t, "coordinator", st); !ack.GetOk() {
		t.Fatal(ack)
	}
	if _, err := coord.SuspendSession(ctx, connect.NewRequest(&macpv1.SuspendSessionRequest{SessionId: sid, Reason: "wait"})); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second)
	res, err := coord.ResumeSession(ctx, connect.NewRequest(&macpv1.ResumeSessionRequest{SessionId: sid, Reason: "late"}))
	if err != nil || res.Msg.GetAck().GetOk() || res.Msg.GetAck().GetError().GetCode() != "SESSION_NOT_OPEN" {
		t.Fatalf("resume past the suspension cap: %v %v, want SESSION_NOT_OPEN", res, err)
	}
	if md := getSession(t, coord, sid); md.GetState() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("state = %v, want EXPIRED", md.GetState())
	}
	expectExactReplay(t, srv, "coordinator", sid, 3) // start, suspend, expiry
}

func fmtList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}
