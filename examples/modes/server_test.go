package modes_test

// This test does what an operator does: it uploads every example mode into
// a running Concord server (the admin API behind `concord mode push`) and
// plays a session of it over gRPC. Every Ack must agree with the verdict of
// the mode's native code, the session must end resolved, and its log must
// replay exactly.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// buildBytes compiles ./<name>/wasm for wasip1 and returns the module.
func buildBytes(tb testing.TB, dir, name string) []byte {
	tb.Helper()
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./"+name+"/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestExamplesUploadedIntoARunningServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds WebAssembly modules")
	}
	srv := servertest.Start(t, server.Config{Memory: true})
	ctx := context.Background()
	dir := t.TempDir()
	for _, ex := range examples() {
		t.Run(ex.dir, func(t *testing.T) {
			up, err := srv.Admin("operator").UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: buildBytes(t, dir, ex.dir)}))
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			if up.Msg.GetModule().GetMode() != ex.sess.Mode {
				t.Fatalf("uploaded %s, want %s", up.Msg.GetModule().GetMode(), ex.sess.Mode)
			}
			// The server binds the default policy, so the native reference
			// runs with its empty rules too.
			sess := ex.sess
			sess.PolicyRules = "{}"
			sess.SessionID = servertest.NewSessionID()
			start := servertest.Envelope(sess.Mode, "SessionStart", "m0", sess.SessionID, &macpv1.SessionStartPayload{
				Participants: sess.Participants, ModeVersion: sess.ModeVersion, ConfigurationVersion: sess.ConfigurationVersion, TtlMs: 60_000})
			if ack := srv.Send(t, sess.Initiator, start); !ack.GetOk() {
				t.Fatalf("SessionStart: %v", ack.GetError())
			}
			state := kt.Start(t, ex.mode, sess)
			accepted := uint64(1)
			for i, msg := range ex.script {
				payload := kt.Encode(t, msg.Payload)
				id := fmt.Sprintf("m%d", i+1)
				env := servertest.Envelope(sess.Mode, msg.Type, id, sess.SessionID, nil)
				env.Payload = payload
				ack := srv.Send(t, msg.Sender, env)
				native := ex.mode.Step(&guest.StepRequest{State: state, Session: sess, Envelope: guest.Envelope{
					MACPVersion: "1.0", Mode: sess.Mode, MessageType: msg.Type, MessageID: id,
					SessionID: sess.SessionID, Sender: msg.Sender, Payload: payload}})
				if ack.GetOk() != native.Accepted || ack.GetError().GetCode() != string(native.Code) {
					t.Fatalf("%s %s from %s: server ok=%t %s %q, native ok=%t %s %q", id, msg.Type, msg.Sender,
						ack.GetOk(), ack.GetError().GetCode(), ack.GetError().GetMessage(), native.Accepted, native.Code, native.Message)
				}
				if native.Accepted {
					state = native.State
					accepted++
				}
			}
			md, err := srv.Server().Kernel().As(access.Caller{ID: sess.Initiator}).Session(ctx, sess.SessionID)
			if err != nil || md.GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
				t.Fatalf("final state %v, %v; want RESOLVED", md.GetState(), err)
			}
			rep, err := srv.Admin(sess.Initiator).ReplaySession(ctx, connect.NewRequest(&adminv1.ReplaySessionRequest{SessionId: sess.SessionID}))
			if err != nil || !rep.Msg.GetExact() || rep.Msg.GetEntries() != accepted {
				t.Fatalf("replay: %v %v", rep, err)
			}
		})
	}
}

// BenchmarkMPACCycleServer measures the MPAC coordination cycle end to end
// on one Concord server: N agents share one ext.mpac.intent.v1 session
// (uploaded, so sandboxed); each agent follows the session on its own
// StreamSession and runs announce intent → commit operation (with the
// watermark it has seen) → withdraw on its own path. Every step is durable
// before it is acknowledged and is streamed to all N agents. The last case
// spreads the 32 agents over 8 sessions of 4, to show how sessions scale
// next to each other: one session's steps are applied one at a time.
//
//	go test -run '^$' -bench MPACCycleServer -benchtime 2000x ./examples/modes/
func BenchmarkMPACCycleServer(b *testing.B) {
	for _, c := range []struct{ agents, sessions int }{{1, 1}, {32, 1}, {32, 8}} {
		b.Run(fmt.Sprintf("agents=%d/sessions=%d", c.agents, c.sessions), func(b *testing.B) { benchMPAC(b, c.agents, c.sessions) })
	}
}

func benchMPAC(b *testing.B, agents, sessions int) {
	srv := servertest.Start(b, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := srv.Admin("operator").UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: buildBytes(b, b.TempDir(), "mpac")})); err != nil {
		b.Fatal(err)
	}
	const mode = "ext.mpac.intent.v1"
	names := make([]string, agents)
	for i := range names {
		names[i] = fmt.Sprintf("agent-%d", i)
	}
	// Agent i takes part in session i % sessions.
	sids := make([]string, sessions)
	for g := range sids {
		var members []string
		for i := g; i < agents; i += sessions {
			members = append(members, names[i])
		}
		sids[g] = servertest.NewSessionID()
		start := servertest.Envelope(mode, "SessionStart", "m0", sids[g], &macpv1.SessionStartPayload{
			Participants: members, ModeVersion: "1.0.0", ConfigurationVersion: "bench", TtlMs: 3_600_000})
		if ack := srv.Send(b, "coordinator", start); !ack.GetOk() {
			b.Fatal(ack.GetError())
		}
	}
	type agentState struct {
		ops      atomic.Int64  // CommitOperations seen on the stream
		seenOwn  chan struct{} // signalled when the agent's announce arrives
		announce atomic.Value  // message id being waited for
	}
	states := make([]*agentState, agents)
	for i, name := range names {
		st := &agentState{seenOwn: make(chan struct{}, 1)}
		states[i] = st
		stream := srv.Client(servertest.GRPC, name).StreamSession(ctx)
		if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sids[i%sessions]}); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				res, err := stream.Receive()
				if err != nil {
					return
				}
				env := res.GetEnvelope()
				switch env.GetMessageType() {
				case "CommitOperation":
					st.ops.Add(1)
				case "AnnounceIntent":
					if id, _ := st.announce.Load().(string); id == env.GetMessageId() {
						st.seenOwn <- struct{}{}
					}
				}
			}
		}()
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for i, name := range names {
		st, sid := states[i], sids[i%sessions]
		wg.Go(func() {
			client := srv.Client(servertest.GRPC, name)
			send := func(typ, id, payload string) bool {
				env := servertest.Envelope(mode, typ, id, sid, nil)
				env.Payload = []byte(payload)
				res, err := client.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
				if err != nil || !res.Msg.GetAck().GetOk() {
					failed.Add(1)
					return false
				}
				return true
			}
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				intent := fmt.Sprintf("%s-%d", name, n)
				st.announce.Store("a" + intent)
				if !send("AnnounceIntent", "a"+intent, fmt.Sprintf(`{"intent_id":%q,"scope":["%s/%d"]}`, intent, name, n)) {
					return
				}
				<-st.seenOwn
				send("CommitOperation", "c"+intent, fmt.Sprintf(`{"intent_id":%q,"watermark":%d}`, intent, st.ops.Load()))
				send("Withdraw", "w"+intent, fmt.Sprintf(`{"intent_id":%q}`, intent))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d steps failed", f)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cycles/s")
	b.ReportMetric(float64(3*b.N)/elapsed.Seconds(), "durable-steps/s")
}
