package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// goIn runs the go command in dir.
func goIn(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestModeAuthorLoop is the mode author's loop of the README: concord mode
// init writes a module that builds and passes its own test, concord mode
// test runs it sandboxed against its fixture, concord mode push uploads it
// into a running server, and a session in the new mode resolves.
func TestModeAuthorLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go module and a WebAssembly module")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "tally")
	var out, errs bytes.Buffer
	if code := run(ctx, []string{"mode", "init", "--dir", dir, "--concord", "../..", "tally"}, &out, &errs); code != 0 {
		t.Fatalf("mode init exited %d: %s%s", code, out.String(), errs.String())
	}
	goIn(t, dir, nil, "test", "./...")
	goIn(t, dir, nil, "generate", "./...") // the generated codecs are current
	wasmFile := filepath.Join(dir, "tally.wasm")
	goIn(t, dir, []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}, "build", "-buildmode=c-shared", "-o", wasmFile, "./wasm")

	cache := filepath.Join(os.TempDir(), "concord-test-wasm-cache")
	fixture := filepath.Join(dir, "fixtures", "happy_path.json")
	out.Reset()
	if code := run(ctx, []string{"mode", "test", "--cache-dir", cache, wasmFile, fixture}, &out, &errs); code != 0 {
		t.Fatalf("mode test exited %d:\n%s%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"ext.tally.v1 1.0.0", "usable after", "rejected FORBIDDEN", "ok   " + fixture, "1 passed, 0 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("mode test output lacks %q:\n%s", want, out.String())
		}
	}

	// A fixture whose expectation the module does not meet fails, and says
	// where.
	raw, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong.json")
	if err := os.WriteFile(wrong, bytes.Replace(raw, []byte(`"expected_error_code": "FORBIDDEN"`), []byte(`"expected_error_code": "INVALID_ENVELOPE"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(ctx, []string{"mode", "test", "--cache-dir", cache, wasmFile, wrong}, &out, &errs); code != 1 {
		t.Fatalf("mode test of a wrong fixture exited %d:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "FAIL 3   Check") || !strings.Contains(out.String(), "0 passed, 1 failed") {
		t.Fatalf("mode test of a wrong fixture:\n%s", out.String())
	}

	srv := servertest.Start(t, server.Config{Memory: true})
	out.Reset()
	if code := run(ctx, []string{"mode", "push", "--server", srv.URL, "--as", "operator", wasmFile}, &out, &errs); code != 0 {
		t.Fatalf("mode push exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "uploaded ext.tally.v1 1.0.0") || !strings.Contains(out.String(), "usable after") {
		t.Fatalf("mode push output: %s", out.String())
	}
	// The fixture's sessions run on the running server too.
	out.Reset()
	if code := run(ctx, []string{"mode", "test", "--server", srv.URL, "--as", "operator", wasmFile, fixture}, &out, &errs); code != 0 {
		t.Fatalf("mode test --server exited %d:\n%s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "1 passed, 0 failed") {
		t.Fatalf("mode test --server:\n%s", out.String())
	}
	const mode = "ext.tally.v1"
	sid := servertest.NewSessionID()
	send := func(who, typ, id string, env *macpv1.Envelope) {
		t.Helper()
		if ack := srv.Send(t, who, env); !ack.GetOk() {
			t.Fatalf("%s %s: %v", who, typ, ack.GetError())
		}
	}
	send("lead", "SessionStart", "m0", servertest.Envelope(mode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Participants: []string{"alice", "bob"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000}))
	for _, who := range []string{"alice", "bob"} {
		env := servertest.Envelope(mode, "Check", "c"+who, sid, nil)
		env.Payload = []byte(`{"note":"` + who + `"}`)
		send(who, "Check", env.MessageId, env)
	}
	send("lead", "Commitment", "m3", servertest.Envelope(mode, "Commitment", "m3", sid, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: "tally.completed", AuthorityScope: "session", Reason: "all in", ModeVersion: "1.0.0",
		ConfigurationVersion: "c", OutcomePositive: true}))
	res, err := srv.Client(servertest.GRPC, "lead").GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
	if err != nil || res.Msg.GetMetadata().GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Fatalf("session after the Commitment: %v, %v", res, err)
	}
}

func TestModeInitRefuses(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"bad name", []string{"--concord", "../..", "Bad-Name"}, "must be lower case"},
		{"no checkout", []string{"--dir", filepath.Join(t.TempDir(), "a"), "--concord", "", "a"}, "--concord"},
		{"not a checkout", []string{"--dir", filepath.Join(t.TempDir(), "a"), "--concord", t.TempDir(), "a"}, "go.mod"},
		{"folder not empty", []string{"--dir", full, "--concord", "../..", "a"}, "not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CONCORD_SOURCE", "")
			var out, errs bytes.Buffer
			if code := run(context.Background(), append([]string{"mode", "init"}, tc.args...), &out, &errs); code != 1 || !strings.Contains(errs.String(), tc.says) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errs.String(), tc.says)
			}
		})
	}
}
