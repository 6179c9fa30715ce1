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
	"testing"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/examples/modes/internal/kittest"
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
				if ack.GetOk() != native.Accepted || ack.GetError().GetCode() != native.Code {
					t.Fatalf("%s %s from %s: server ok=%t %s %q, native ok=%t %s %q", id, msg.Type, msg.Sender,
						ack.GetOk(), ack.GetError().GetCode(), ack.GetError().GetMessage(), native.Accepted, native.Code, native.Message)
				}
				if native.Accepted {
					state = native.State
					accepted++
				}
			}
			md, err := srv.Server().Kernel().Session(ctx, sess.Initiator, sess.SessionID)
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
