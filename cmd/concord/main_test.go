package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const decision = "macp.mode.decision.v1"

// runSession drives a short resolved Decision session on srv.
func runSession(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	sid := servertest.NewSessionID()
	send := func(who, typ, id string, env *macpv1.Envelope) {
		if ack := srv.Send(t, who, env); !ack.GetOk() {
			t.Fatalf("%s %s: %v", who, typ, ack.GetError())
		}
	}
	send("coordinator", "SessionStart", "m0", servertest.Envelope(decision, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000}))
	send("alice", "Proposal", "m1", servertest.Envelope(decision, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "go"}))
	send("alice", "Vote", "m2", servertest.Envelope(decision, "Vote", "m2", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}))
	send("coordinator", "Commitment", "m3", servertest.Envelope(decision, "Commitment", "m3", sid, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "s", Reason: "r", ModeVersion: "1.0.0",
		ConfigurationVersion: "c", OutcomePositive: true}))
	return sid
}

func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	srv := servertest.Start(t, server.Config{DataDir: dir})
	sid := runSession(t, srv)

	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"replay", "--server", srv.URL, "--as", "coordinator", sid}, &out, &errs); code != 0 {
		t.Fatalf("replay --server exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "replay is exact") || !strings.Contains(out.String(), "SESSION_STATE_RESOLVED") {
		t.Fatalf("replay --server output:\n%s", out.String())
	}

	// From the data directory, with the server stopped.
	srv.Stop()
	out.Reset()
	if code := run(context.Background(), []string{"replay", "--data-dir", dir, sid}, &out, &errs); code != 0 {
		t.Fatalf("replay --data-dir exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "replayed 4 log entries") || !strings.Contains(out.String(), `"phase": "Committed"`) {
		t.Fatalf("replay --data-dir output:\n%s", out.String())
	}
	if code := run(context.Background(), []string{"replay", "--data-dir", dir, servertest.NewSessionID()}, io.Discard, &errs); code != 1 {
		t.Fatalf("replay of an unknown session exited %d", code)
	}
	if code := run(context.Background(), []string{"replay", sid}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("replay without a source exited %d, want 2", code)
	}
}

func TestFlagsReadEnvironmentButCommandLineWins(t *testing.T) {
	var f serveFlags
	fs := newServeFlagSet(&f, io.Discard)
	if err := fs.Parse([]string{"--addr", "127.0.0.1:7000"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"MACP_BIND_ADDR":         "127.0.0.1:9999",
		"MACP_DATA_DIR":          "/tmp/from-macp",
		"CONCORD_DATA_DIR":       "/tmp/from-concord",
		"MACP_MEMORY_ONLY":       "1",
		"MACP_MAX_PAYLOAD_BYTES": "2048",
		"MACP_ALLOW_INSECURE":    "true",
	}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if f.addr != "127.0.0.1:7000" || f.dataDir != "/tmp/from-concord" || !f.memory || f.maxPayload != 2048 || !f.insecure {
		t.Fatalf("flags = %+v", f)
	}
	bad := newServeFlagSet(&serveFlags{}, io.Discard)
	_ = bad.Parse(nil)
	if err := applyEnv(bad, func(k string) string {
		if k == "MACP_MAX_PAYLOAD_BYTES" {
			return "lots"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "MACP_MAX_PAYLOAD_BYTES") {
		t.Fatalf("bad environment value: %v", err)
	}
}

func TestUnknownCommand(t *testing.T) {
	var errs bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, io.Discard, &errs); code != 2 || !strings.Contains(errs.String(), "unknown command") {
		t.Fatalf("exit %d, stderr %q", code, errs.String())
	}
}

func TestModeCommands(t *testing.T) {
	dir := t.TempDir()
	wasmFile := filepath.Join(dir, "counter.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasmFile, "../../host/server/testdata/extmode")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build test module: %v\n%s", err, out)
	}
	srv := servertest.Start(t, server.Config{Memory: true})
	ctx := context.Background()
	var out, errs bytes.Buffer
	// An SDK declares the mode before its module exists.
	reg, err := srv.Client(servertest.GRPC, "operator").RegisterExtMode(ctx, connect.NewRequest(&macpv1.RegisterExtModeRequest{
		ModeDescriptor: &macpv1.ModeDescriptor{Mode: "ext.test.counter.v1", ModeVersion: "1.0.0", MessageTypes: []string{"Tick", "Panic", "Trap", "Loop", "Bomb", "Big", "Commitment"}}}))
	if err != nil || !reg.Msg.GetOk() {
		t.Fatalf("RegisterExtMode: %v %v", reg, err)
	}
	if code := run(ctx, []string{"mode", "ls", "--server", srv.URL, "--as", "operator"}, &out, &errs); code != 0 {
		t.Fatalf("mode ls exited %d: %s", code, errs.String())
	}
	if !regexp.MustCompile(`(?m)^ext\.test\.counter\.v1 +1\.0\.0 +declared, no module +-$`).MatchString(out.String()) {
		t.Fatalf("mode ls does not show the declaration as declared, no module:\n%s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"mode", "push", "--server", srv.URL, "--as", "operator", wasmFile}, &out, &errs); code != 0 {
		t.Fatalf("mode push exited %d: %s", code, errs.String())
	}
	if !strings.Contains(out.String(), "uploaded ext.test.counter.v1 1.0.0") {
		t.Fatalf("mode push output: %s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"mode", "ls", "--server", srv.URL, "--as", "operator"}, &out, &errs); code != 0 {
		t.Fatalf("mode ls exited %d: %s", code, errs.String())
	}
	for _, want := range []string{"ext.test.counter.v1", "uploaded", "macp.mode.decision.v1", "built-in"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("mode ls lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "declared") {
		t.Fatalf("the upload did not fill the declaration:\n%s", out.String())
	}
	if code := run(ctx, []string{"mode", "rm", "--server", srv.URL, "--as", "operator", "macp.mode.decision.v1"}, io.Discard, &errs); code != 1 {
		t.Fatalf("removing a built-in exited %d", code)
	}
	if code := run(ctx, []string{"mode", "rm", "--server", srv.URL, "--as", "operator", "ext.test.counter.v1"}, io.Discard, &errs); code != 0 {
		t.Fatalf("mode rm exited %d: %s", code, errs.String())
	}
	out.Reset()
	_ = run(ctx, []string{"mode", "ls", "--server", srv.URL, "--as", "operator"}, &out, &errs)
	if strings.Contains(out.String(), "ext.test.counter.v1") {
		t.Fatalf("removed mode still listed:\n%s", out.String())
	}
	if code := run(ctx, []string{"mode", "push", "--server", srv.URL, "--as", "operator", filepath.Join(dir, "missing.wasm")}, io.Discard, io.Discard); code != 1 {
		t.Fatalf("pushing a missing file exited %d", code)
	}
}

const opsRota = `package concord.custom

mode := "macp.mode.decision.v1"

govern := {"allow": true, "reasons": []}

authorize := {"allow": true, "reasons": []} if input.sender in {"ops", input.session.initiator}
else := {"allow": false, "reasons": [sprintf("%s is not on the ops rota", [input.sender])]}

test_ops_may_commit if {
	authorize.allow with input as {"sender": "ops", "session": {"initiator": "boss"}}
}
`

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ops.rego", opsRota)
	write("ops.json", `{"policy_id":"policy.acme.ops","mode":"macp.mode.decision.v1","description":"ops rota","schema_version":3,"rules":{}}`)
	ctx := context.Background()
	var out, errs bytes.Buffer
	if code := run(ctx, []string{"policy", "test", dir}, &out, &errs); code != 0 || !strings.Contains(out.String(), "ok ") {
		t.Fatalf("policy test exited %d:\n%s%s", code, out.String(), errs.String())
	}
	// A failing shipped test makes both test and push fail.
	bad := t.TempDir()
	_ = os.WriteFile(filepath.Join(bad, "ops.rego"), []byte(opsRota+"\ntest_broken if { false }\n"), 0o600)
	_ = os.WriteFile(filepath.Join(bad, "ops.json"), []byte(`{"policy_id":"policy.acme.bad","mode":"macp.mode.decision.v1","description":"x","schema_version":3}`), 0o600)
	if code := run(ctx, []string{"policy", "test", bad}, io.Discard, io.Discard); code != 1 {
		t.Fatalf("policy test of a failing policy exited %d", code)
	}
	srv := servertest.Start(t, server.Config{Memory: true})
	if code := run(ctx, []string{"policy", "push", "--server", srv.URL, "--as", "operator", filepath.Join(bad, "ops.rego")}, io.Discard, &errs); code != 1 {
		t.Fatalf("pushing a failing policy exited %d", code)
	}
	out.Reset()
	if code := run(ctx, []string{"policy", "push", "--server", srv.URL, "--as", "operator", filepath.Join(dir, "ops.rego")}, &out, &errs); code != 0 {
		t.Fatalf("policy push exited %d: %s", code, errs.String())
	}
	out.Reset()
	if code := run(ctx, []string{"policy", "ls", "--server", srv.URL, "--as", "operator"}, &out, &errs); code != 0 {
		t.Fatalf("policy ls exited %d: %s", code, errs.String())
	}
	if !strings.Contains(out.String(), "policy.acme.ops") || strings.Contains(out.String(), "policy.acme.bad") || !strings.Contains(out.String(), "policy.default") {
		t.Fatalf("policy ls:\n%s", out.String())
	}
}
