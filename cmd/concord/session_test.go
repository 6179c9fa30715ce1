package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// concord runs the command line and returns its exit code and output.
func concord(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run(ctx, args, &out, &errs)
	return code, out.String(), errs.String()
}

// waitFor polls buf until it contains want.
func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(buf.String(), want) {
			return
		}
	}
	t.Fatalf("output never showed %q:\n%s", want, buf.String())
}

func TestSessionCommands(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	ctx := context.Background()
	resolved := runSession(t, srv)
	open := servertest.NewSessionID()
	if ack := srv.Send(t, "coordinator", servertest.Envelope(decision, "SessionStart", "s0", open, &macpv1.SessionStartPayload{
		Participants: []string{"bob"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000})); !ack.GetOk() {
		t.Fatal(ack.GetError())
	}
	as := []string{"--server", srv.URL, "--as", "coordinator"}
	cmd := func(args ...string) []string { return append(append([]string{"session"}, args...), as...) }

	t.Run("ls", func(t *testing.T) {
		code, out, errs := concord(t, ctx, cmd("ls")...)
		if code != 0 || !strings.Contains(out, resolved) || !strings.Contains(out, open) || !strings.Contains(out, "SESSION") {
			t.Fatalf("ls exited %d:\n%s%s", code, out, errs)
		}
		code, out, _ = concord(t, ctx, cmd("ls", "--state", "resolved")...)
		if code != 0 || !strings.Contains(out, resolved) || strings.Contains(out, open) {
			t.Fatalf("ls --state resolved:\n%s", out)
		}
		code, out, _ = concord(t, ctx, cmd("ls", "--participant", "bob", "--json")...)
		var listed []map[string]any
		if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil {
			t.Fatalf("ls --json exited %d: %v\n%s", code, err, out)
		}
		if len(listed) != 1 || listed[0]["session_id"] != open {
			t.Fatalf("ls --participant bob: %v", listed)
		}
		// alice takes part in the resolved session only, and sees only it.
		code, out, _ = concord(t, ctx, "session", "ls", "--server", srv.URL, "--as", "alice")
		if code != 0 || !strings.Contains(out, resolved) || strings.Contains(out, open) {
			t.Fatalf("ls as alice:\n%s", out)
		}
		if code, _, errs := concord(t, ctx, cmd("ls", "--state", "bogus")...); code != 2 || !strings.Contains(errs, "unknown state") {
			t.Fatalf("ls --state bogus exited %d: %s", code, errs)
		}
	})

	t.Run("show", func(t *testing.T) {
		code, out, errs := concord(t, ctx, cmd("show", resolved)...)
		if code != 0 {
			t.Fatalf("show exited %d: %s", code, errs)
		}
		for _, want := range []string{
			"state          resolved", "initiator      coordinator", "alice: 2 messages",
			"timeline:", "SessionStart", `"proposal_id":"p1"`, `"vote":"APPROVE"`,
			"commitment: decision.selected (c1), outcome_positive=true", "hash: sha256:",
			"governance:", "allow m3 by coordinator under policy.default", `mode state: {`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = concord(t, ctx, cmd("show", "--json", resolved)...)
		var shown struct {
			Session struct {
				Metadata       map[string]any `json:"metadata"`
				ResolutionHash string         `json:"resolution_hash"`
			} `json:"session"`
			Timeline []map[string]any `json:"timeline"`
		}
		if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil {
			t.Fatalf("show --json exited %d: %v\n%s", code, err, out)
		}
		if shown.Session.Metadata["session_id"] != resolved || !strings.HasPrefix(shown.Session.ResolutionHash, "sha256:") || len(shown.Timeline) != 4 ||
			shown.Timeline[2]["payload_type"] != "macp.modes.decision.v1.VotePayload" {
			t.Fatalf("show --json: %+v", shown)
		}
		if code, _, errs := concord(t, ctx, cmd("show", servertest.NewSessionID())...); code != 1 || !strings.Contains(errs, "not_found") {
			t.Fatalf("show of an unknown session exited %d: %s", code, errs)
		}
		if code, _, errs := concord(t, ctx, "session", "show", "--server", srv.URL, "--as", "bob", resolved); code != 1 || !strings.Contains(errs, "permission_denied") {
			t.Fatalf("show by an outsider exited %d: %s", code, errs)
		}
	})

	t.Run("export and replay --file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "session.json")
		if code, _, errs := concord(t, ctx, cmd("export", resolved, "-o", file)...); code != 0 {
			t.Fatalf("export exited %d: %s", code, errs)
		}
		cache := filepath.Join(os.TempDir(), "concord-test-wasm-cache")
		code, out, errs := concord(t, ctx, "replay", "--file", file, "--wasm-cache-dir", cache)
		if code != 0 || !strings.Contains(out, "replay is exact") || !strings.Contains(out, "replayed 4 log entries") {
			t.Fatalf("replay --file exited %d:\n%s%s", code, out, errs)
		}
		// A log with an entry missing is refused, not replayed.
		var exp map[string]any
		b, _ := os.ReadFile(file)
		if err := json.Unmarshal(b, &exp); err != nil {
			t.Fatal(err)
		}
		entries := exp["entries"].([]any)
		exp["entries"] = append(entries[:1:1], entries[2:]...)
		b, _ = json.Marshal(exp)
		_ = os.WriteFile(file, b, 0o600)
		if code, _, errs := concord(t, ctx, "replay", "--file", file, "--wasm-cache-dir", cache); code != 1 || !strings.Contains(errs, "the log must be dense") {
			t.Fatalf("replay of a gapped log exited %d: %s", code, errs)
		}
		_ = os.WriteFile(file, []byte("not json"), 0o600)
		if code, _, errs := concord(t, ctx, "replay", "--file", file, "--wasm-cache-dir", cache); code != 1 || !strings.Contains(errs, "not a session export") {
			t.Fatalf("replay of garbage exited %d: %s", code, errs)
		}
	})

	t.Run("watch and cancel", func(t *testing.T) {
		var watched syncBuffer
		done := make(chan int, 1)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		go func() { done <- run(wctx, cmd("watch", open), &watched, &watched) }()
		waitFor(t, &watched, "SessionStart")
		if ack := srv.Send(t, "bob", servertest.Envelope(decision, "Proposal", "s1", open, &decisionv1.ProposalPayload{ProposalId: "q1", Option: "stay"})); !ack.GetOk() {
			t.Fatal(ack.GetError())
		}
		waitFor(t, &watched, `"option":"stay"`)
		code, out, errs := concord(t, ctx, cmd("cancel", open, "--reason", "test over")...)
		if code != 0 || !strings.Contains(out, "is cancelled") {
			t.Fatalf("cancel exited %d: %s%s", code, out, errs)
		}
		// The watch ends by itself once the session has ended.
		if code := <-done; code != 0 {
			t.Fatalf("watch exited %d:\n%s", code, watched.String())
		}
		if !strings.Contains(watched.String(), "SessionCancel") || !strings.Contains(watched.String(), "→ cancelled") {
			t.Fatalf("watch output:\n%s", watched.String())
		}
		// Cancelling is idempotent; only those with the authority may.
		if code, out, errs := concord(t, ctx, cmd("cancel", open)...); code != 0 || !strings.Contains(out, "is cancelled") {
			t.Fatalf("cancelling twice exited %d: %s%s", code, out, errs)
		}
		if code, _, errs := concord(t, ctx, "session", "cancel", "--server", srv.URL, "--as", "mallory", resolved); code != 1 || !strings.Contains(errs, "permission_denied") {
			t.Fatalf("cancel by an outsider exited %d: %s", code, errs)
		}

		// Watching every session: the listing's CREATED events, filtered.
		var all syncBuffer
		actx, stop := context.WithCancel(ctx)
		go func() { done <- run(actx, cmd("watch", "--state", "cancelled"), &all, &all) }()
		waitFor(t, &all, open)
		stop()
		if code := <-done; code != 0 || strings.Contains(all.String(), resolved) {
			t.Fatalf("watch (all) exited %d:\n%s", code, all.String())
		}
	})

	if code, _, _ := concord(t, ctx, "session", "frob"); code != 2 {
		t.Fatalf("unknown subcommand exited %d", code)
	}
}
