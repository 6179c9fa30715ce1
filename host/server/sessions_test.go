package server_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/export"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func timelineOf(t *testing.T, admin adminv1connect.AdminServiceClient, req *adminv1.SessionTimelineRequest) []*adminv1.TimelineEntry {
	t.Helper()
	stream, err := admin.SessionTimeline(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.Close() }()
	var out []*adminv1.TimelineEntry
	for stream.Receive() {
		out = append(out, stream.Msg().GetEntry())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("timeline: %v", err)
	}
	return out
}

func TestSessionAdminRPCs(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true, Limits: limits.Options{StartsPerMinute: 1}})
	ctx := context.Background()
	sid := observedSession(t, srv) // resolved, 4 entries
	long := servertest.NewSessionID()
	if ack := srv.Send(t, "carol", servertest.Envelope(decisionMode, "SessionStart", "s0", long, &macpv1.SessionStartPayload{
		Participants: []string{"dave"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 600_000})); !ack.GetOk() {
		t.Fatal(ack.GetError())
	}
	if ack := srv.Send(t, "dave", servertest.Envelope(decisionMode, "Proposal", "s1", long, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})); !ack.GetOk() {
		t.Fatal(ack.GetError())
	}
	// More entries than one page of the timeline.
	for i := range 300 {
		env := servertest.Envelope(decisionMode, "Evaluation", fmt.Sprintf("e%d", i), long,
			&decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "REVIEW", Confidence: 0.5, Reason: "r"})
		if ack := srv.Send(t, "dave", env); !ack.GetOk() {
			t.Fatal(ack.GetError())
		}
	}
	carol := srv.Admin("carol")

	t.Run("ListSessions filters", func(t *testing.T) {
		list := func(caller string, req *adminv1.ListSessionsRequest) []string {
			t.Helper()
			res, err := srv.Admin(caller).ListSessions(ctx, connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, md := range res.Msg.GetSessions() {
				ids = append(ids, md.GetSessionId())
			}
			return ids
		}
		if ids := list("carol", &adminv1.ListSessionsRequest{}); len(ids) != 1 || ids[0] != long {
			t.Fatalf("carol sees %v", ids)
		}
		if ids := list("alice", &adminv1.ListSessionsRequest{States: []macpv1.SessionState{macpv1.SessionState_SESSION_STATE_RESOLVED}}); len(ids) != 1 || ids[0] != sid {
			t.Fatalf("alice's resolved sessions: %v", ids)
		}
		if ids := list("alice", &adminv1.ListSessionsRequest{States: []macpv1.SessionState{macpv1.SessionState_SESSION_STATE_OPEN}}); len(ids) != 0 {
			t.Fatalf("alice's open sessions: %v", ids)
		}
		if ids := list("carol", &adminv1.ListSessionsRequest{Mode: "macp.mode.task.v1"}); len(ids) != 0 {
			t.Fatalf("carol's task sessions: %v", ids)
		}
		if _, err := carol.ListSessions(ctx, connect.NewRequest(&adminv1.ListSessionsRequest{PageSize: -1})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("negative page size: %v", err)
		}
		if _, err := carol.ListSessions(ctx, connect.NewRequest(&adminv1.ListSessionsRequest{PageToken: "%%%"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("forged page token: %v", err)
		}
	})

	t.Run("ExportSession", func(t *testing.T) {
		res, err := srv.Admin("coordinator").ExportSession(ctx, connect.NewRequest(&adminv1.ExportSessionRequest{SessionId: sid}))
		if err != nil {
			t.Fatal(err)
		}
		exp := res.Msg.GetExport()
		if exp.GetFormat() != export.Format || exp.GetSession().GetLastSequence() != 4 || len(exp.GetEntries()) != 4 {
			t.Fatalf("export: format %q, last %d, %d entries", exp.GetFormat(), exp.GetSession().GetLastSequence(), len(exp.GetEntries()))
		}
		for i, e := range exp.GetEntries() {
			if e.GetSequence() != uint64(i+1) {
				t.Fatalf("entry %d has sequence %d", i, e.GetSequence())
			}
		}
		r, err := srv.Server().ReplayExport(ctx, exp)
		if err != nil || len(r.Divergences) != 0 || r.Entries != 4 {
			t.Fatalf("replay of the export: %v %+v", err, r)
		}
		for _, c := range []struct {
			id   string
			who  string
			code connect.Code
		}{{"", "coordinator", connect.CodeInvalidArgument}, {servertest.NewSessionID(), "coordinator", connect.CodeNotFound}, {sid, "carol", connect.CodePermissionDenied}} {
			if _, err := srv.Admin(c.who).ExportSession(ctx, connect.NewRequest(&adminv1.ExportSessionRequest{SessionId: c.id})); connect.CodeOf(err) != c.code {
				t.Errorf("export %q as %s: %v, want %v", c.id, c.who, err, c.code)
			}
		}
	})

	t.Run("SessionTimeline pages and follows", func(t *testing.T) {
		all := timelineOf(t, carol, &adminv1.SessionTimelineRequest{SessionId: long})
		if len(all) != 302 {
			t.Fatalf("timeline has %d entries, want 302", len(all))
		}
		for i, e := range all {
			if e.GetSequence() != uint64(i+1) {
				t.Fatalf("entry %d has sequence %d", i, e.GetSequence())
			}
		}
		if e := all[1]; e.GetPayloadType() != "macp.modes.decision.v1.ProposalPayload" || e.GetSender() != "dave" {
			t.Fatalf("proposal entry %v", e)
		}
		if tail := timelineOf(t, carol, &adminv1.SessionTimelineRequest{SessionId: long, AfterSequence: 300}); len(tail) != 2 || tail[0].GetSequence() != 301 {
			t.Fatalf("timeline after 300: %v", tail)
		}
		// A followed timeline of an ended session is its log, then the end.
		if got := timelineOf(t, srv.Admin("coordinator"), &adminv1.SessionTimelineRequest{SessionId: sid, Follow: true}); len(got) != 4 ||
			got[3].GetStateAfter() != macpv1.SessionState_SESSION_STATE_RESOLVED || got[3].GetCommitmentHash() == "" || got[3].GetGovernance() == nil {
			t.Fatalf("followed timeline of a resolved session: %v", got)
		}
		// Following an open session: it ends with the cancellation.
		stream, err := carol.SessionTimeline(ctx, connect.NewRequest(&adminv1.SessionTimelineRequest{SessionId: long, AfterSequence: 302, Follow: true}))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = stream.Close() }()
		if _, err := srv.Client(servertest.GRPC, "carol").CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: long, Reason: "done"})); err != nil {
			t.Fatal(err)
		}
		var got []*adminv1.TimelineEntry
		for stream.Receive() {
			got = append(got, stream.Msg().GetEntry())
		}
		if stream.Err() != nil || len(got) != 1 || got[0].GetMessageType() != "SessionCancel" || got[0].GetStateAfter() != macpv1.SessionState_SESSION_STATE_CANCELLED ||
			got[0].GetPayloadType() != "macp.v1.SessionCancelPayload" {
			t.Fatalf("followed timeline: %v %v", got, stream.Err())
		}
		bad, err := carol.SessionTimeline(ctx, connect.NewRequest(&adminv1.SessionTimelineRequest{}))
		if err == nil {
			for bad.Receive() {
			}
			err = bad.Err()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("timeline without a session id: %v", err)
		}
	})

	t.Run("a followed timeline answers at once on every protocol", func(t *testing.T) {
		for _, p := range []struct {
			name string
			opt  []connect.ClientOption
		}{{"grpc", []connect.ClientOption{connect.WithGRPC()}}, {"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}}, {"connect", nil}} {
			// Each protocol's own initiator: SessionStarts are rate-limited per identity.
			who := "erin-" + p.name
			open := servertest.NewSessionID()
			if ack := srv.Send(t, who, servertest.Envelope(decisionMode, "SessionStart", "s0", open, &macpv1.SessionStartPayload{
				Participants: []string{"dave"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 600_000})); !ack.GetOk() {
				t.Fatal(ack.GetError())
			}
			admin := adminv1connect.NewAdminServiceClient(servertest.H2CClient(), srv.URL, append(p.opt, connect.WithInterceptors(auth.Bearer(who)))...)
			stream, err := admin.SessionTimeline(ctx, connect.NewRequest(&adminv1.SessionTimelineRequest{SessionId: open, AfterSequence: 1, Follow: true}))
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			if _, err := srv.Client(servertest.GRPC, who).CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: open})); err != nil {
				t.Fatal(err)
			}
			n := 0
			for stream.Receive() {
				n++
			}
			if stream.Err() != nil || n != 1 {
				t.Fatalf("%s: %d entries, %v", p.name, n, stream.Err())
			}
			_ = stream.Close()
		}
	})

	t.Run("anonymous callers are refused", func(t *testing.T) {
		anon := adminv1connect.NewAdminServiceClient(servertest.H2CClient(), srv.URL, connect.WithGRPC())
		if _, err := anon.ListSessions(ctx, connect.NewRequest(&adminv1.ListSessionsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("anonymous ListSessions: %v", err)
		}
	})
}
