package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

func TestReferenceAuthEnvironmentIsHonoured(t *testing.T) {
	var f serveFlags
	fs := newServeFlagSet(&f, io.Discard)
	_ = fs.Parse(nil)
	env := map[string]string{
		"MACP_AUTH_TOKENS_FILE":   "/etc/macp/tokens.json",
		"MACP_AUTH_TOKENS_JSON":   `[]`,
		"MACP_AUTH_ISSUER":        "https://issuer.example",
		"MACP_AUTH_AUDIENCE":      "macp-prod",
		"MACP_AUTH_JWKS_URL":      "https://issuer.example/keys",
		"MACP_AUTH_JWKS_JSON":     `{"keys":[]}`,
		"MACP_AUTH_JWKS_TTL_SECS": "120",
		"CONCORD_TLS_CLIENT_CA":   "/etc/macp/agents.pem",
		"CONCORD_AUTH_RECHECK":    "3s",
	}
	if err := applyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	a := f.auth
	if a.TokensFile != "/etc/macp/tokens.json" || a.TokensJSON != "[]" || a.OIDC.Issuer != "https://issuer.example" ||
		a.OIDC.Audience != "macp-prod" || a.OIDC.JWKSURL != "https://issuer.example/keys" || a.OIDC.JWKSJSON != `{"keys":[]}` ||
		time.Duration(f.jwksTTL) != 120*time.Second || a.ClientCAFile != "/etc/macp/agents.pem" || a.Recheck != 3*time.Second {
		t.Fatalf("auth flags = %+v, ttl %v", a, time.Duration(f.jwksTTL))
	}
	var g serveFlags
	fs = newServeFlagSet(&g, io.Discard)
	_ = fs.Parse(nil)
	if err := applyEnv(fs, func(k string) string { return map[string]string{"CONCORD_OIDC_JWKS_TTL": "5m"}[k] }); err != nil {
		t.Fatal(err)
	}
	if time.Duration(g.jwksTTL) != 5*time.Minute || g.auth.OIDC.Audience != auth.DefaultAudience || g.auth.Configured() {
		t.Fatalf("defaults: %+v ttl %v", g.auth, time.Duration(g.jwksTTL))
	}
	if err := g.jwksTTL.Set("soon"); err == nil {
		t.Fatal("a TTL of \"soon\" was accepted")
	}
}

func TestTokenCommand(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"token", "--sender", "agent://alice", "--modes", "macp.mode.decision.v1,macp.mode.task.v1", "--no-start", "--max-open-sessions", "4", "--observer", "--admin"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	token, entry, _ := strings.Cut(out.String(), "\n")
	if len(token) != 43 || strings.ContainsAny(token, ".=+/") || token[0] == '-' || token[0] == '_' {
		t.Fatalf("token %q", token)
	}
	entries, err := auth.ParseTokens([]byte("[" + entry + "]"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("the printed entry does not parse: %v\n%s", err, entry)
	}
	e := entries[0]
	want := auth.TokenEntry{Token: token, Sender: "agent://alice"}
	if e.Token != want.Token || e.Sender != want.Sender || len(e.AllowedModes) != 2 || e.CanStartSessions == nil || *e.CanStartSessions ||
		e.MaxOpenSessions == nil || *e.MaxOpenSessions != 4 || !e.IsObserver || !e.IsAdmin || e.CanManageModeRegistry || e.CanManagePolicies {
		t.Fatalf("entry %+v", e)
	}
	// Two tokens are never the same.
	out.Reset()
	_ = run(context.Background(), []string{"token", "--sender", "agent://alice"}, &out, &errs)
	if again, _, _ := strings.Cut(out.String(), "\n"); again == token {
		t.Fatal("the same token twice")
	}
	if code := run(context.Background(), []string{"token"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("no --sender: exit %d", code)
	}
	if code := run(context.Background(), []string{"token", "--sender", "has space"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("bad sender: exit %d", code)
	}
}

// exampleToken returns the token of sender in examples/auth/tokens.json.
func exampleToken(t *testing.T, sender string) string {
	t.Helper()
	data, err := os.ReadFile("../../examples/auth/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := auth.ParseTokens(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Sender == sender {
			return e.Token
		}
	}
	t.Fatalf("no %s in the example tokens file", sender)
	return ""
}

func signalAck(t *testing.T, url, token, id string) *macpv1.Ack {
	t.Helper()
	c := macpv1connect.NewMACPRuntimeServiceClient(servertest.H2CClient(), url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(token)))
	res, err := c.Send(context.Background(), connect.NewRequest(&macpv1.SendRequest{Envelope: servertest.Envelope("", "Signal", id, "", &macpv1.SignalPayload{SignalType: "ping"})}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg.GetAck()
}

// TestServeWithTheExampleTokensFile starts the server as the README
// shows and uses the CLI with --token; SIGHUP reloads the file.
func TestServeWithTheExampleTokensFile(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../../examples/auth/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(file, example, 0o600); err != nil {
		t.Fatal(err)
	}
	url, _, logs := startServe(t, "--auth-tokens-file", file)
	if !strings.Contains(logs.String(), "auth=static-tokens") {
		t.Fatalf("startup log does not name the resolver:\n%s", logs.String())
	}
	if ack := signalAck(t, url, exampleToken(t, "agent://alice"), "s1"); !ack.GetOk() {
		t.Fatalf("alice's example token: %v", ack)
	}
	if ack := signalAck(t, url, "agent://alice", "s2"); ack.GetError().GetCode() != "UNAUTHENTICATED" {
		t.Fatalf("a dev bearer on a token server: %v", ack)
	}
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"mode", "ls", "--server", url, "--token", exampleToken(t, "ops")}, &out, &errs); code != 0 || !strings.Contains(out.String(), "macp.mode.decision.v1") {
		t.Fatalf("mode ls --token: exit %d\n%s%s", code, out.String(), errs.String())
	}
	t.Setenv("CONCORD_TOKEN", "")
	if code := run(context.Background(), []string{"mode", "ls", "--server", url, "--as", "ops"}, io.Discard, io.Discard); code == 0 {
		t.Fatal("mode ls --as on a token server succeeded")
	}

	// SIGHUP: a token added to the file works at once.
	added := strings.Replace(string(example), `"tokens": [`, `"tokens": [{"token": "added-by-sighup-0123456789abcdef", "sender": "agent://new"},`, 1)
	if err := os.WriteFile(file, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "SIGHUP: reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ack := signalAck(t, url, "added-by-sighup-0123456789abcdef", "s3"); !ack.GetOk() {
		t.Fatalf("the added token: %v", ack)
	}
}

func TestServeRefusesDevBesideOtherAuth(t *testing.T) {
	var logs syncBuffer
	code := run(context.Background(), []string{"serve", "--memory", "--addr", "127.0.0.1:0", "--dev", "--auth-tokens-file", "../../examples/auth/tokens.json"}, &logs, &logs)
	if code != 1 || !strings.Contains(logs.String(), "never combines") {
		t.Fatalf("exit %d:\n%s", code, logs.String())
	}
}

// TestInsecureKeepsRealAuthentication: --insecure with a tokens file
// allows plaintext beyond loopback but does not turn dev auth on.
func TestInsecureKeepsRealAuthentication(t *testing.T) {
	url, _, _ := startServe(t, "--insecure", "--auth-tokens-file", "../../examples/auth/tokens.json")
	if ack := signalAck(t, url, "agent://alice", "s1"); ack.GetError().GetCode() != "UNAUTHENTICATED" {
		t.Fatalf("dev bearer with --insecure and tokens: %v", ack)
	}
	if ack := signalAck(t, url, exampleToken(t, "agent://bob"), "s2"); !ack.GetOk() {
		t.Fatalf("example token: %v", ack)
	}
}
