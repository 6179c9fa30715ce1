package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// openStream opens StreamSession as identity over gRPC.
func openStream(t *testing.T, srv *servertest.Server, identity string) (*connect.BidiStreamForClient[macpv1.StreamSessionRequest, macpv1.StreamSessionResponse], context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	st := srv.Client(servertest.GRPC, identity).StreamSession(ctx)
	st.RequestHeader().Set("Authorization", "Bearer "+identity)
	t.Cleanup(cancel)
	return st, cancel
}

// expectEnvelopes reads n responses and returns the envelopes' message ids,
// failing on an inline error.
func expectEnvelopes(t *testing.T, st *connect.BidiStreamForClient[macpv1.StreamSessionRequest, macpv1.StreamSessionResponse], n int) []string {
	t.Helper()
	var ids []string
	for range n {
		res, err := st.Receive()
		if err != nil {
			t.Fatalf("receive after %v: %v", ids, err)
		}
		if e := res.GetError(); e != nil {
			t.Fatalf("inline error after %v: %v", ids, e)
		}
		ids = append(ids, res.GetEnvelope().GetMessageId())
	}
	return ids
}

func TestStreamSessionBackfillThenLive(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	client := srv.Client(servertest.GRPC, "")
	sid := servertest.NewSessionID()
	script := decisionScript()
	for _, st := range script[:3] { // start, proposal, evaluation
		send(t, client, sid, st)
	}

	// Three subscribers: from the start, resumed after sequence 2, and a
	// second one from the start; all must see the same order.
	from0, _ := openStream(t, srv, "alice")
	from2, _ := openStream(t, srv, "bob")
	again, _ := openStream(t, srv, "coordinator")
	for st, after := range map[*connect.BidiStreamForClient[macpv1.StreamSessionRequest, macpv1.StreamSessionResponse]]uint64{from0: 0, from2: 2, again: 0} {
		if err := st.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid, AfterSequence: after}); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(expectEnvelopes(t, from0, 3)); got != "[m0 m1 m2]" {
		t.Fatalf("backfill from 0 = %s", got)
	}
	if got := fmt.Sprint(expectEnvelopes(t, from2, 1)); got != "[m2]" {
		t.Fatalf("backfill after 2 = %s", got)
	}
	// Live: messages sent concurrently with the subscribers reading.
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, st := range script[3:] {
			send(t, client, sid, st)
		}
	})
	// Accepted live: m3, m4, m6, m8 (m5 and m7 are rejected).
	live := fmt.Sprint(expectEnvelopes(t, from0, 4))
	if live != "[m3 m4 m6 m8]" {
		t.Fatalf("live = %s", live)
	}
	if got := fmt.Sprint(expectEnvelopes(t, from2, 4)); got != live {
		t.Fatalf("resumed subscriber saw %s, first saw %s", got, live)
	}
	if got := fmt.Sprint(expectEnvelopes(t, again, 7)); got != "[m0 m1 m2 m3 m4 m6 m8]" {
		t.Fatalf("second subscriber saw %s", got)
	}
	wg.Wait()
}

func TestStreamSessionSendsAndReportsErrorsInline(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	sid := servertest.NewSessionID()
	st, _ := openStream(t, srv, "coordinator")
	start := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, start())
	if err := st.Send(&macpv1.StreamSessionRequest{Envelope: start}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(expectEnvelopes(t, st, 1)); got != "[m0]" {
		t.Fatalf("own SessionStart not echoed: %s", got)
	}
	// The coordinator is no participant: its Proposal is refused inline and
	// the stream stays open.
	bad := servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})
	if err := st.Send(&macpv1.StreamSessionRequest{Envelope: bad}); err != nil {
		t.Fatal(err)
	}
	res, err := st.Receive()
	if err != nil || res.GetError().GetCode() != "FORBIDDEN" || res.GetError().GetMessageId() != "m1" {
		t.Fatalf("inline error = %v, %v; want FORBIDDEN for m1", res, err)
	}
	// Another agent's accepted message still arrives on this stream.
	send(t, srv.Client(servertest.Connect, ""), sid, step{"alice", "Proposal", "m2", &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"}, ""})
	if got := fmt.Sprint(expectEnvelopes(t, st, 1)); got != "[m2]" {
		t.Fatalf("after the inline error the stream delivered %s", got)
	}
	// A frame for another session ends the stream with InvalidArgument.
	other := servertest.Envelope(decisionMode, "Proposal", "m3", servertest.NewSessionID(), &decisionv1.ProposalPayload{ProposalId: "p2", Option: "y"})
	_ = st.Send(&macpv1.StreamSessionRequest{Envelope: other})
	if _, err := st.Receive(); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("frame for another session: %v, want InvalidArgument", err)
	}
}

func TestStreamSessionSubscribeRules(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	sid := servertest.NewSessionID()
	send(t, srv.Client(servertest.GRPC, ""), sid, decisionScript()[0])
	outsider, _ := openStream(t, srv, "mallory")
	_ = outsider.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid})
	if res, err := outsider.Receive(); err != nil || res.GetError().GetCode() != "FORBIDDEN" {
		t.Fatalf("outsider subscribe: %v %v, want inline FORBIDDEN", res, err)
	}
	_ = outsider.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: servertest.NewSessionID()})
	if res, err := outsider.Receive(); err != nil || res.GetError().GetCode() != "SESSION_NOT_FOUND" {
		t.Fatalf("unknown session subscribe: %v %v, want inline SESSION_NOT_FOUND", res, err)
	}
	both := servertest.Envelope(decisionMode, "Proposal", "x", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})
	_ = outsider.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid, Envelope: both})
	if _, err := outsider.Receive(); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("envelope and subscription in one frame: %v, want InvalidArgument", err)
	}
}

func TestWatchSessionsAndListSessions(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	client := srv.Client(servertest.GRPC, "")
	first := servertest.NewSessionID()
	send(t, client, first, decisionScript()[0])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch, err := srv.Client(servertest.GRPC, "alice").WatchSessions(ctx, connect.NewRequest(&macpv1.WatchSessionsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	next := func() *macpv1.SessionLifecycleEvent {
		if !watch.Receive() {
			t.Fatalf("watch ended: %v", watch.Err())
		}
		return watch.Msg().GetEvent()
	}
	if ev := next(); ev.GetEventType() != macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED || ev.GetSession().GetSessionId() != first {
		t.Fatalf("first event = %v, want CREATED of the existing session", ev)
	}
	second := servertest.NewSessionID()
	script := decisionScript()
	for _, st := range script {
		send(t, client, second, st)
	}
	if ev := next(); ev.GetEventType() != macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED || ev.GetSession().GetSessionId() != second {
		t.Fatalf("live event = %v, want CREATED", ev)
	}
	if ev := next(); ev.GetEventType() != macpv1.SessionLifecycleEvent_EVENT_TYPE_RESOLVED || ev.GetSession().GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("live event = %v, want RESOLVED", ev)
	}

	// Paging: 5 more sessions, pages of 2, ascending ids, only an empty token ends.
	for range 5 {
		send(t, client, servertest.NewSessionID(), decisionScript()[0])
	}
	// Sessions alice may not see, interleaved by id with hers: pages are
	// still full and complete.
	for range 6 {
		st := servertest.Envelope(decisionMode, "SessionStart", "m0", servertest.NewSessionID(),
			startWith(func(p *macpv1.SessionStartPayload) { p.Participants = []string{"mallory"} }))
		if ack := srv.Send(t, "mallory", st); !ack.GetOk() {
			t.Fatal(ack)
		}
	}
	var ids []string
	token := ""
	pages := 0
	for {
		res, err := srv.Client(servertest.GRPC, "alice").ListSessions(ctx, connect.NewRequest(&macpv1.ListSessionsRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, md := range res.Msg.GetSessions() {
			ids = append(ids, md.GetSessionId())
		}
		if token = res.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(ids) != 7 || pages != 4 {
		t.Fatalf("listed %d sessions in %d pages, want 7 in 4", len(ids), pages)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			t.Fatalf("ids not ascending: %v", ids)
		}
	}
	if res, err := srv.Client(servertest.GRPC, "eve").ListSessions(ctx, connect.NewRequest(&macpv1.ListSessionsRequest{})); err != nil || len(res.Msg.GetSessions()) != 0 {
		t.Fatalf("outsider lists %v, %v; want none", res, err)
	}
	if res, err := srv.Client(servertest.GRPC, "mallory").ListSessions(ctx, connect.NewRequest(&macpv1.ListSessionsRequest{PageSize: 4})); err != nil || len(res.Msg.GetSessions()) != 4 || res.Msg.GetNextPageToken() == "" {
		t.Fatalf("mallory's first page: %v, %v; want 4 of her 6 and a token", res, err)
	}
	for _, bad := range []*macpv1.ListSessionsRequest{{PageSize: -1}, {PageToken: "%%%"}} {
		if _, err := srv.Client(servertest.GRPC, "alice").ListSessions(ctx, connect.NewRequest(bad)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("ListSessions(%v): %v, want InvalidArgument", bad, err)
		}
	}
}

// TestManySendersOneSession has agents write to one session concurrently,
// the load the session's queue batches: every message is accepted exactly
// once, each agent's messages keep the order it sent them in, a retry gets
// a duplicate Ack, and a subscriber sees exactly the log's order.
func TestManySendersOneSession(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	const agents, each = 12, 15
	names := make([]string, agents)
	for i := range names {
		names[i] = fmt.Sprintf("agent-%02d", i)
	}
	sid := servertest.NewSessionID()
	if ack := srv.Send(t, "coordinator", servertest.Envelope(decisionMode, "SessionStart", "m0", sid,
		startWith(func(p *macpv1.SessionStartPayload) { p.Participants = names }))); !ack.GetOk() {
		t.Fatal(ack)
	}
	sub, _ := openStream(t, srv, "coordinator")
	if err := sub.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			for j := range each {
				id := fmt.Sprintf("%s/%02d", name, j)
				env := servertest.Envelope(decisionMode, "Proposal", id, sid, &decisionv1.ProposalPayload{ProposalId: id, Option: "x"})
				if ack := srv.Send(t, name, env); !ack.GetOk() || ack.GetDuplicate() {
					t.Errorf("%s: %v", id, ack)
				}
				if j == each-1 { // a retry of the last one
					if ack := srv.Send(t, name, env); !ack.GetOk() || !ack.GetDuplicate() {
						t.Errorf("retry of %s: %v, want a duplicate Ack", id, ack)
					}
				}
			}
		})
	}
	wg.Wait()
	log := logOf(t, srv, sid)
	if len(log) != 1+agents*each {
		t.Fatalf("log has %d entries, want %d", len(log), 1+agents*each)
	}
	next := map[string]int{}
	var order []string
	for i, e := range log {
		if e.GetSequence() != uint64(i+1) {
			t.Fatalf("entry %d has sequence %d", i, e.GetSequence())
		}
		order = append(order, e.GetEnvelope().GetMessageId())
		if i == 0 {
			continue
		}
		sender, id := e.GetEnvelope().GetSender(), e.GetEnvelope().GetMessageId()
		if want := fmt.Sprintf("%s/%02d", sender, next[sender]); id != want {
			t.Fatalf("entry %d is %s, want %s next from %s", i, id, want, sender)
		}
		next[sender]++
	}
	if got := expectEnvelopes(t, sub, len(log)); fmt.Sprint(got) != fmt.Sprint(order) {
		t.Fatalf("the subscriber saw another order than the log's")
	}
	expectExactReplay(t, srv, "coordinator", sid, uint64(len(log)))
}
