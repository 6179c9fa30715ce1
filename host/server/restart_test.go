package server_test

import (
	"context"
	"testing"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func TestRestartKeepsStateAndDedupMemory(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	client := srv.Client(servertest.GRPC, "")
	script := decisionScript()
	sid := servertest.NewSessionID()
	for _, st := range script[:5] { // start, proposal, evaluation, objection, alice's vote
		send(t, client, sid, st)
	}
	before := getSession(t, srv.Client(servertest.GRPC, "coordinator"), sid)

	srv.Restart()
	client = srv.Client(servertest.GRPC, "")
	after := getSession(t, srv.Client(servertest.GRPC, "coordinator"), sid)
	if after.GetState() != macpv1.SessionState_SESSION_STATE_OPEN || after.GetExpiresAtUnixMs() != before.GetExpiresAtUnixMs() ||
		len(after.GetParticipantActivity()) != len(before.GetParticipantActivity()) {
		t.Fatalf("metadata changed across restart:\nbefore %v\nafter  %v", before, after)
	}
	// Dedup memory: the proposal's message id is still known.
	dup := srv.Send(t, "alice", scriptedEnvelope(sid, script[1]))
	if !dup.GetOk() || !dup.GetDuplicate() {
		t.Fatalf("resent proposal after restart: %v, want duplicate", dup)
	}
	// Mode state: alice's vote is remembered, so a second one is refused.
	send(t, client, sid, step{"alice", "Vote", "m5", script[5].payload, "INVALID_ENVELOPE"})
	send(t, client, sid, script[6])
	send(t, client, sid, script[8])

	srv.Restart()
	client = srv.Client(servertest.GRPC, "")
	md := getSession(t, srv.Client(servertest.GRPC, "alice"), sid)
	if md.GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("after second restart state = %v, want RESOLVED", md.GetState())
	}
	if ack := srv.Send(t, "coordinator", scriptedEnvelope(sid, script[8])); !ack.GetDuplicate() || ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("resent commitment: %v, want duplicate in RESOLVED", ack)
	}
	send(t, client, sid, step{"bob", "Vote", "m9", script[6].payload, "SESSION_NOT_OPEN"})

	var seqs []uint64
	err := srv.Server().Kernel().As(access.Operator("test")).Log(context.Background(), sid, 0, func(e *storev1.Entry) error {
		seqs = append(seqs, e.GetSequence())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 7 || seqs[0] != 1 || seqs[6] != 7 {
		t.Fatalf("log sequences = %v, want 1..7", seqs)
	}
}

// scriptedEnvelope builds the envelope of a scripted step without sending it.
func scriptedEnvelope(sid string, st step) *macpv1.Envelope {
	e := servertest.Envelope(decisionMode, st.typ, st.id, sid, st.payload)
	e.Sender = st.sender
	return e
}
