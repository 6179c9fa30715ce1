package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// TestRateLimitsAndOpenSessionQuota checks RATE_LIMITED on a real server:
// the per-identity SessionStart and message rates, the open-session quota
// (freed when a session ends, and counted again after a restart), and that
// a refused envelope leaves nothing behind.
func TestRateLimitsAndOpenSessionQuota(t *testing.T) {
	clk := servertest.NewClock(time.UnixMilli(1_800_000_000_000))
	srv := servertest.Start(t, server.Config{Now: clk.Now, SweepInterval: -1,
		Limits: limits.Options{StartsPerMinute: 4, MessagesPerMinute: 3, MaxOpenSessions: 2}})
	ctx := context.Background()
	coord := srv.Client(servertest.GRPC, "coordinator")
	startSession := func() (string, *macpv1.Ack) {
		sid := servertest.NewSessionID()
		st := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, start())
		st.TimestampUnixMs = clk.Now().UnixMilli()
		return sid, srv.Send(t, "coordinator", st)
	}
	wantLimited := func(what string, ack *macpv1.Ack, about string) {
		t.Helper()
		if ack.GetOk() || ack.GetError().GetCode() != "RATE_LIMITED" || !strings.Contains(ack.GetError().GetMessage(), about) {
			t.Fatalf("%s: %v, want RATE_LIMITED about %q", what, ack, about)
		}
	}
	s1, ack := startSession()
	if !ack.GetOk() {
		t.Fatal(ack)
	}
	s2, ack := startSession()
	if !ack.GetOk() {
		t.Fatal(ack)
	}
	s3, ack := startSession()
	wantLimited("third open session", ack, "open sessions")
	if _, err := coord.GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: s3})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("the refused session exists: %v", err)
	}
	// Ending a session frees its slot.
	if _, err := coord.CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: s1})); err != nil {
		t.Fatal(err)
	}
	s3, ack = startSession() // the fourth SessionStart this minute
	if !ack.GetOk() {
		t.Fatalf("start after a cancel: %v", ack)
	}
	if _, err := coord.CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: s2})); err != nil {
		t.Fatal(err)
	}
	_, ack = startSession()
	wantLimited("fifth start within a minute", ack, "faster")
	clk.Advance(16 * time.Second) // 4 per minute: one start every 15 s
	if _, ack = startSession(); !ack.GetOk() {
		t.Fatalf("start after the refill: %v", ack)
	}

	// Messages: alice's three go through, the fourth is refused, bob is
	// unaffected, and a refill lets alice go on.
	for i, id := range []string{"a1", "a2", "a3"} {
		if ack := srv.Send(t, "alice", servertest.Envelope(decisionMode, "Proposal", id, s3, &decisionv1.ProposalPayload{ProposalId: id, Option: "x"})); !ack.GetOk() {
			t.Fatalf("message %d: %v", i, ack)
		}
	}
	wantLimited("fourth message", srv.Send(t, "alice", servertest.Envelope(decisionMode, "Proposal", "a4", s3, &decisionv1.ProposalPayload{ProposalId: "a4", Option: "x"})), "faster")
	if ack := srv.Send(t, "bob", servertest.Envelope(decisionMode, "Proposal", "b1", s3, &decisionv1.ProposalPayload{ProposalId: "b1", Option: "x"})); !ack.GetOk() {
		t.Fatalf("bob: %v", ack)
	}
	if n := len(logOf(t, srv, s3)); n != 5 {
		t.Fatalf("log has %d entries, want 5 (the refused message left no trace)", n)
	}
	clk.Advance(21 * time.Second) // 3 per minute: one every 20 s
	if ack := srv.Send(t, "alice", servertest.Envelope(decisionMode, "Proposal", "a4", s3, &decisionv1.ProposalPayload{ProposalId: "a4", Option: "x"})); !ack.GetOk() {
		t.Fatalf("alice after the refill: %v", ack)
	}

	// After a restart the two open sessions still count against the quota.
	srv.Restart()
	clk.Advance(time.Minute)
	_, ack = startSession()
	wantLimited("third open session after a restart", ack, "open sessions")
}
