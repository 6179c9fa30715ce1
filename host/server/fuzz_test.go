package server_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/fixturetest"
	"github.com/concord-macp/concord/internal/servertest"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// fuzzTarget is one in-memory server per fuzzing process, with the real
// built-in modes, and the open Decision session the fuzzer aims at.
var fuzzTarget struct {
	once sync.Once
	srv  *server.Server
	err  error
	sid  string
}

func fuzzServer(t *testing.T) (*server.Server, string) {
	t.Helper()
	fuzzTarget.once.Do(func() {
		fuzzTarget.srv, fuzzTarget.err = server.New(context.Background(), server.Config{
			Addr: "127.0.0.1:0", Memory: true, MaxPayloadBytes: 4096,
			WasmCacheDir: filepath.Join(os.TempDir(), "concord-test-wasm-cache"),
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	})
	if fuzzTarget.err != nil {
		t.Fatal(fuzzTarget.err)
	}
	k := fuzzTarget.srv.Kernel()
	ctx := context.Background()
	if fuzzTarget.sid != "" {
		if md, err := k.As(access.Caller{ID: "coordinator"}).Session(ctx, fuzzTarget.sid); err == nil && md.GetState() == macpv1.SessionState_SESSION_STATE_OPEN {
			return fuzzTarget.srv, fuzzTarget.sid
		}
	}
	// The fuzzer ended the last session (or this is the first run): open
	// another.
	sid := servertest.NewSessionID()
	ack := k.Send(ctx, access.Caller{ID: "coordinator", CanStartSessions: true}, servertest.Envelope(decisionMode, "SessionStart", "m0", sid, start()))
	if !ack.GetOk() {
		t.Fatalf("SessionStart: %v", ack)
	}
	if ack := k.Send(ctx, access.Caller{ID: "alice"}, servertest.Envelope(decisionMode, "Proposal", "m1", sid,
		&decisionv1.ProposalPayload{ProposalId: "p1", Option: "ship"})); !ack.GetOk() {
		t.Fatalf("Proposal: %v", ack)
	}
	fuzzTarget.sid = sid
	return fuzzTarget.srv, sid
}

// logLength counts the entries agents wrote to session sid. Entries the
// runtime writes on its own are left out: a SessionStart stamped long ago
// (its timestamp anchors the TTL) is accepted and then expires at once.
func logLength(srv *server.Server, sid string) int {
	n := 0
	_ = srv.Kernel().As(access.Operator("fuzz")).Log(context.Background(), sid, 0, func(e *storev1.Entry) error {
		if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT {
			n++
		}
		return nil
	})
	return n
}

func marshal(p proto.Message) []byte {
	b, _ := proto.Marshal(p)
	return b
}

// FuzzSend runs hostile envelopes through the kernel's Send pipeline (the
// envelope checks, dedup, the session checks, the real Decision module and
// the policy), as the Send RPC does after authentication.
//
// Properties: Send never panics and always answers; a refusal carries a
// registry code and a message and echoes the envelope's ids; a refused
// envelope leaves the log unchanged; an accepted one adds exactly one
// entry (none for a duplicate or an ambient Signal), and sending it again
// is answered as a duplicate without adding another.
//
//	go test -run '^$' -fuzz FuzzSend ./host/server/
func FuzzSend(f *testing.F) {
	vote := marshal(&decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"})
	f.Add("alice", "1.0", decisionMode, "Vote", "v1", uint8(0), "", "", vote)
	f.Add("bob", "1.0", decisionMode, "Evaluation", "e1", uint8(0), "", "bob",
		marshal(&decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.5, Reason: "ok"}))
	f.Add("coordinator", "1.0", decisionMode, "Commitment", "c1", uint8(0), "", "",
		marshal(&macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "s", Reason: "r",
			ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", OutcomePositive: true}))
	f.Add("coordinator", "1.0", decisionMode, "SessionStart", "m0", uint8(3), "", "", marshal(start()))
	f.Add("alice", "1.0", "", "Signal", "s1", uint8(2), "", "", []byte{})
	f.Add("", "1.0", decisionMode, "Vote", "v1", uint8(0), "", "", vote)
	f.Add("alice", "1.0.0", decisionMode, "Vote", "runtime:x", uint8(1), "not-a-session", "mallory", []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, identity, version, mode, typ, mid string, pick uint8, rawSID, sender string, payload []byte) {
		srv, open := fuzzServer(t)
		sid := open
		switch pick % 4 {
		case 1:
			sid = rawSID
		case 2:
			sid = ""
		case 3:
			sid = servertest.NewSessionID()
		}
		env := &macpv1.Envelope{MacpVersion: version, Mode: mode, MessageType: typ, MessageId: mid,
			SessionId: sid, Sender: sender, TimestampUnixMs: 1, Payload: payload}
		before := logLength(srv, sid)
		ack := srv.Kernel().Send(context.Background(), access.Caller{ID: identity, CanStartSessions: true}, env)
		if ack == nil {
			t.Fatal("Send returned no Ack")
		}
		after := logLength(srv, sid)
		if !ack.GetOk() {
			e := ack.GetError()
			if !fixturetest.Registered(e.GetCode()) || strings.TrimSpace(e.GetMessage()) == "" {
				t.Fatalf("refusal %q %q: want a registry code and a message", e.GetCode(), e.GetMessage())
			}
			if ack.GetMessageId() != mid || e.GetMessageId() != mid || e.GetSessionId() != sid {
				t.Fatalf("refusal does not echo the envelope's ids: %v", ack)
			}
			if after != before {
				t.Fatalf("refused %s (%s) changed the log from %d to %d entries", typ, e.GetCode(), before, after)
			}
			return
		}
		if ack.GetError() != nil || ack.GetMessageId() != mid {
			t.Fatalf("accepted Ack %v", ack)
		}
		grew := 1
		if ack.GetDuplicate() || (sid == "" && typ == "Signal") || (sid == "" && typ == "Progress") {
			grew = 0
		}
		if after != before+grew {
			t.Fatalf("accepted %s (duplicate=%t) took the log from %d to %d entries", typ, ack.GetDuplicate(), before, after)
		}
		if sid == "" {
			return
		}
		again := srv.Kernel().Send(context.Background(), access.Caller{ID: identity, CanStartSessions: true}, env)
		if !again.GetOk() || !again.GetDuplicate() || logLength(srv, sid) != after {
			t.Fatalf("resending accepted %s %s: %v, log %d entries (was %d)", typ, mid, again, logLength(srv, sid), after)
		}
	})
}
