package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The tokens of the token-authenticated test servers: each name is both
// the sender and the token's stem.
var testTokens = map[string]string{
	"coordinator": `"allowed_modes": ["macp.mode.decision.v1"]`,
	"alice":       `"can_start_sessions": false`,
	"bob":         `"can_start_sessions": false`,
	"outsider":    `"can_start_sessions": false`,
	"observer":    `"can_start_sessions": false, "is_observer": true`,
	"modes":       `"can_manage_mode_registry": true`,
	"policies":    `"can_manage_policies": true`,
	"ops":         `"can_start_sessions": false, "is_observer": true, "can_manage_mode_registry": true, "can_manage_policies": true, "is_admin": true`,
	"limited":     `"max_open_sessions": 1`,
	"mallory":     ``,
}

// tok is the token of a test identity.
func tok(name string) string { return name + "-token-0123456789abcdef" }

// tokensDoc renders the tokens file for names (all of testTokens when
// none are given).
func tokensDoc(names ...string) string {
	if len(names) == 0 {
		for n := range testTokens {
			names = append(names, n)
		}
	}
	var entries []string
	for _, n := range names {
		extra := testTokens[n]
		if extra != "" {
			extra = ", " + extra
		}
		entries = append(entries, fmt.Sprintf(`{"token": %q, "sender": %q%s}`, tok(n), n, extra))
	}
	return "[" + strings.Join(entries, ",\n") + "]"
}

func writeTokens(t *testing.T, path, doc string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tokenServer starts a server authenticating with a tokens file it
// polls every 20 ms, whose streams re-check every 50 ms.
func tokenServer(t *testing.T, tweak func(*server.Config)) (*servertest.Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, tokensDoc())
	cfg := server.Config{Memory: true, Auth: auth.Config{TokensFile: path, PollInterval: 20 * time.Millisecond, Recheck: 50 * time.Millisecond}}
	if tweak != nil {
		tweak(&cfg)
	}
	return servertest.Start(t, cfg), path
}

// sendAs sends env presenting name's token.
func sendAs(t *testing.T, srv *servertest.Server, name string, env *macpv1.Envelope) *macpv1.Ack {
	t.Helper()
	return srv.Send(t, tok(name), env)
}

func decisionStart(sid string, participants ...string) *macpv1.Envelope {
	return servertest.Envelope(decisionMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Intent: "choose", Participants: participants, ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", TtlMs: 60_000})
}

func proposal(sid, id string) *macpv1.Envelope {
	return servertest.Envelope(decisionMode, "Proposal", id, sid, &decisionv1.ProposalPayload{ProposalId: "p-" + id, Option: "ship"})
}

func wantAck(t *testing.T, what string, ack *macpv1.Ack, code string) {
	t.Helper()
	if code == "" {
		if !ack.GetOk() {
			t.Fatalf("%s: refused %v, want accepted", what, ack.GetError())
		}
		return
	}
	if ack.GetOk() || ack.GetError().GetCode() != code {
		t.Fatalf("%s: %v, want %s", what, ack, code)
	}
}

func TestStaticTokensDriveASession(t *testing.T) {
	srv, _ := tokenServer(t, nil)
	sid := servertest.NewSessionID()
	wantAck(t, "coordinator starts", sendAs(t, srv, "coordinator", decisionStart(sid, "alice", "bob")), "")
	wantAck(t, "alice proposes", sendAs(t, srv, "alice", proposal(sid, "m1")), "")

	// The sender is the token's, whatever the envelope claims.
	env := proposal(sid, "m2")
	env.Sender = "bob"
	wantAck(t, "alice's token sending as bob", sendAs(t, srv, "alice", env), "UNAUTHENTICATED")
	md, err := srv.Client(servertest.Connect, tok("bob")).GetSession(context.Background(), connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
	if err != nil || md.Msg.GetMetadata().GetInitiator() != "coordinator" {
		t.Fatalf("GetSession as bob: %v %v", md, err)
	}
	// A dev-style bearer (the sender's name) is no credential here.
	wantAck(t, "bearer alice", srv.Send(t, "alice", proposal(sid, "m3")), "UNAUTHENTICATED")
}

// TestRefusedCredentialsAnswerOneWay: a refused credential gets the same
// UNAUTHENTICATED message from Send's Ack, from GetSession's status and
// from StreamSession, whatever the call.
func TestRefusedCredentialsAnswerOneWay(t *testing.T) {
	srv, _ := tokenServer(t, nil)
	sid := servertest.NewSessionID()
	wantAck(t, "start", sendAs(t, srv, "coordinator", decisionStart(sid, "alice")), "")
	cases := map[string]struct {
		header, value, want string
	}{
		"unknown token":     {"Authorization", "Bearer not-a-known-token-0123456789", "credentials refused: unknown token"},
		"oversized token":   {"Authorization", "Bearer " + strings.Repeat("a", auth.MaxTokenLen+1), "malformed credentials"},
		"300-byte token":    {"Authorization", "Bearer " + strings.Repeat("a", 300), "unknown token"},
		"basic auth":        {"Authorization", "Basic " + tok("alice"), "malformed credentials"},
		"no scheme":         {"Authorization", tok("alice"), "malformed credentials"},
		"agent id header":   {"X-Macp-Agent-Id", "alice", "x-macp-agent-id"},
		"jwt not enabled":   {"Authorization", "Bearer a.b.c", "JWT bearer tokens are not configured"},
		"wrong header":      {"X-Api-Key", tok("alice"), "no credentials presented"},
		"token in a cookie": {"Cookie", "token=" + tok("alice"), "no credentials presented"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := srv.Client(servertest.GRPC, "")
			sreq := connect.NewRequest(&macpv1.SendRequest{Envelope: proposal(sid, "m-"+strings.ReplaceAll(name, " ", "-"))})
			sreq.Header().Set(tc.header, tc.value)
			res, err := c.Send(context.Background(), sreq)
			if err != nil {
				t.Fatal(err)
			}
			ack := res.Msg.GetAck()
			if ack.GetOk() || ack.GetError().GetCode() != "UNAUTHENTICATED" || !strings.Contains(ack.GetError().GetMessage(), tc.want) {
				t.Fatalf("Send: %v, want UNAUTHENTICATED %q", ack, tc.want)
			}
			greq := connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid})
			greq.Header().Set(tc.header, tc.value)
			_, err = c.GetSession(context.Background(), greq)
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("GetSession: %v, want Unauthenticated", err)
			}
			var ce *connect.Error
			if errors.As(err, &ce) && ce.Message() != ack.GetError().GetMessage() {
				t.Fatalf("GetSession says %q, Send says %q: want one message", ce.Message(), ack.GetError().GetMessage())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream := c.StreamSession(ctx)
			stream.RequestHeader().Set(tc.header, tc.value)
			_ = stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid})
			if _, err := stream.Receive(); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("StreamSession: %v, want Unauthenticated", err)
			}
		})
	}
}

func TestTokensFileReloadAddsAndRemovesTokens(t *testing.T) {
	srv, path := tokenServer(t, nil)
	writeTokens(t, path, tokensDoc("coordinator")+"")
	newbie := `[{"token": "newbie-token-0123456789abcdef", "sender": "newbie"}, {"token": "` + tok("coordinator") + `", "sender": "coordinator"}]`
	writeTokens(t, path, newbie)
	signal := func(token, id string) *macpv1.Ack {
		return srv.Send(t, token, servertest.Envelope("", "Signal", id, "", &macpv1.SignalPayload{SignalType: "ping"}))
	}
	n := 0
	waitUntil(t, "the new token to work", func() bool {
		n++
		return signal("newbie-token-0123456789abcdef", fmt.Sprint("s", n)).GetOk()
	})
	wantAck(t, "removed token", signal(tok("alice"), "s-alice"), "UNAUTHENTICATED")
	wantAck(t, "kept token", signal(tok("coordinator"), "s-coord"), "")
	// A broken file keeps the tokens in use, and Reload (SIGHUP) says so.
	writeTokens(t, path, `[{"token": `)
	if err := srv.Server().Reload(); err == nil {
		t.Fatal("Reload accepted a broken tokens file")
	}
	wantAck(t, "after a broken file", signal("newbie-token-0123456789abcdef", "s-after"), "")
}

// waitUntil polls cond every 20 ms until it holds; it fails the test
// after 15 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCapabilitiesAtTheRPCLayer: registry, policy and audit rights are
// checked by the RPCs themselves.
func TestCapabilitiesAtTheRPCLayer(t *testing.T) {
	srv, _ := tokenServer(t, nil)
	ctx := context.Background()
	mod := module(t, "counter")

	// can_manage_mode_registry: uploads and registry writes.
	for _, who := range []string{"alice", "policies"} {
		_, err := srv.Admin(tok(who)).UploadMode(ctx, connect.NewRequest(&adminv1UploadReq{Wasm: mod}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("%s uploads: %v, want PermissionDenied", who, err)
		}
		c := srv.Client(servertest.GRPC, tok(who))
		if _, err := c.UnregisterExtMode(ctx, connect.NewRequest(&macpv1.UnregisterExtModeRequest{Mode: "ext.test.counter.v1"})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("%s unregisters: %v", who, err)
		}
		if _, err := c.PromoteMode(ctx, connect.NewRequest(&macpv1.PromoteModeRequest{Mode: "ext.test.counter.v1"})); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("%s promotes: %v", who, err)
		}
	}
	up, err := srv.Admin(tok("modes")).UploadMode(ctx, connect.NewRequest(&adminv1UploadReq{Wasm: mod}))
	if err != nil || up.Msg.GetModule().GetMode() != "ext.test.counter.v1" {
		t.Fatalf("modes uploads: %v %v", up, err)
	}

	// can_manage_policies: registration.
	for _, who := range []string{"alice", "modes"} {
		_, err := srv.Client(servertest.GRPC, tok(who)).RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.x." + who)}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("%s registers a policy: %v", who, err)
		}
	}
	res, err := srv.Client(servertest.GRPC, tok("policies")).RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.x.ok")}))
	if err != nil || !res.Msg.GetOk() {
		t.Fatalf("policies registers: %v %v", res, err)
	}

	// is_admin: the audit trail.
	if _, err := srv.Admin(tok("modes")).ListAuditRecords(ctx, connect.NewRequest(&adminv1ListAuditReq{})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("non-admin reads the audit trail: %v", err)
	}
	if _, err := srv.Admin(tok("ops")).ListAuditRecords(ctx, connect.NewRequest(&adminv1ListAuditReq{})); err != nil {
		t.Fatalf("admin reads the audit trail: %v", err)
	}

	// Observers read any session; outsiders do not.
	sid := servertest.NewSessionID()
	wantAck(t, "start", sendAs(t, srv, "coordinator", decisionStart(sid, "alice")), "")
	get := func(who string) error {
		_, err := srv.Client(servertest.GRPC, tok(who)).GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
		return err
	}
	if err := get("observer"); err != nil {
		t.Fatalf("observer reads: %v", err)
	}
	if err := get("outsider"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("outsider reads: %v", err)
	}
	// Participants only send; only the initiator cancels.
	wantAck(t, "outsider proposes", sendAs(t, srv, "outsider", proposal(sid, "m1")), "FORBIDDEN")
	_, err = srv.Client(servertest.GRPC, tok("alice")).CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid, Reason: "mine now"}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("participant cancels: %v", err)
	}
}

// TestCapabilitiesInTheKernel covers the session-level rules the kernel
// enforces from the caller's capabilities (allowed_modes,
// can_start_sessions, max_open_sessions, observers never send,
// initiator-only suspend and resume) and the admin right on AdminService.
func TestCapabilitiesInTheKernel(t *testing.T) {
	srv, _ := tokenServer(t, nil)
	ctx := context.Background()
	taskStart := servertest.Envelope("macp.mode.task.v1", "SessionStart", "m0", servertest.NewSessionID(), &macpv1.SessionStartPayload{
		Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000})
	wantAck(t, "coordinator starts outside its allowed_modes", sendAs(t, srv, "coordinator", taskStart), "FORBIDDEN")
	wantAck(t, "alice (can_start_sessions=false) starts", sendAs(t, srv, "alice", decisionStart(servertest.NewSessionID(), "bob")), "FORBIDDEN")

	wantAck(t, "limited's first session", sendAs(t, srv, "limited", decisionStart(servertest.NewSessionID(), "alice")), "")
	wantAck(t, "limited's second session (max_open_sessions 1)", sendAs(t, srv, "limited", decisionStart(servertest.NewSessionID(), "alice")), "RATE_LIMITED")

	sid := servertest.NewSessionID()
	wantAck(t, "start", sendAs(t, srv, "coordinator", decisionStart(sid, "alice", "observer")), "")
	wantAck(t, "an observer listed as participant sends", sendAs(t, srv, "observer", proposal(sid, "m1")), "FORBIDDEN")

	for _, op := range []string{"suspend", "resume"} {
		var err error
		c := srv.Client(servertest.GRPC, tok("alice"))
		if op == "suspend" {
			_, err = c.SuspendSession(ctx, connect.NewRequest(&macpv1.SuspendSessionRequest{SessionId: sid}))
		} else {
			_, err = c.ResumeSession(ctx, connect.NewRequest(&macpv1.ResumeSessionRequest{SessionId: sid}))
		}
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("participant %ss: %v", op, err)
		}
	}
	// AdminService needs is_admin, even for a session the caller is in.
	if _, err := srv.Admin(tok("coordinator")).InspectSession(ctx, connect.NewRequest(&adminv1InspectReq{SessionId: sid})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("non-admin inspects: %v", err)
	}
	if _, err := srv.Admin(tok("ops")).InspectSession(ctx, connect.NewRequest(&adminv1InspectReq{SessionId: sid})); err != nil {
		t.Fatalf("admin inspects: %v", err)
	}
}

// TestFloodFromOneIdentityDoesNotStarveAnother: while one identity floods
// the server from many connections, another's messages are all accepted.
func TestFloodFromOneIdentityDoesNotStarveAnother(t *testing.T) {
	srv, _ := tokenServer(t, func(c *server.Config) { c.Limits.MessagesPerMinute = 60 })
	signal := func(token, id string) *macpv1.Ack {
		return srv.Send(t, token, servertest.Envelope("", "Signal", id, "", &macpv1.SignalPayload{SignalType: "ping"}))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	stop := make(chan struct{})
	began := time.Now()
	for w := range 6 {
		wg.Go(func() {
			for i := 0; i < 400; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ack := signal(tok("mallory"), fmt.Sprintf("flood-%d-%d", w, i))
				mu.Lock()
				codes[ack.GetError().GetCode()]++
				mu.Unlock()
			}
		})
	}
	for i := range 30 {
		wantAck(t, fmt.Sprintf("alice's signal %d during the flood", i), signal(tok("alice"), fmt.Sprint("alice-", i)), "")
	}
	close(stop)
	wg.Wait()
	if codes["RATE_LIMITED"] == 0 {
		t.Fatalf("the flood was never limited: %v", codes)
	}
	// A full bucket of 60, then one more each second the flood lasted.
	if limit := 60 + int(time.Since(began)/time.Second) + 1; codes[""] > limit {
		t.Fatalf("mallory got %d signals accepted past a 60/minute limit (at most %d in %v)", codes[""], limit, time.Since(began))
	}
}

// TestRevokedCredentialsEndOpenStreams: a token removed from the file,
// or whose capabilities change, ends the streams opened with it.
func TestRevokedCredentialsEndOpenStreams(t *testing.T) {
	srv, path := tokenServer(t, nil)
	sid := servertest.NewSessionID()
	wantAck(t, "start", sendAs(t, srv, "coordinator", decisionStart(sid, "alice", "bob")), "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	aliceStream := srv.Client(servertest.GRPC, tok("alice")).StreamSession(ctx)
	if err := aliceStream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		t.Fatal(err)
	}
	if _, err := aliceStream.Receive(); err != nil {
		t.Fatalf("alice's stream: %v", err)
	}
	observerWatch, err := srv.Client(servertest.GRPC, tok("observer")).WatchSessions(ctx, connect.NewRequest(&macpv1.WatchSessionsRequest{}))
	if err != nil || !observerWatch.Receive() {
		t.Fatalf("observer's watch: %v %v", err, observerWatch.Err())
	}
	bobStream := srv.Client(servertest.GRPC, tok("bob")).StreamSession(ctx)
	if err := bobStream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		t.Fatal(err)
	}
	if _, err := bobStream.Receive(); err != nil {
		t.Fatal(err)
	}

	// Alice's token goes; the observer loses is_observer; bob keeps his.
	doc := strings.Replace(tokensDoc(), `"sender": "observer", "can_start_sessions": false, "is_observer": true`, `"sender": "observer", "can_start_sessions": false`, 1)
	var kept []string
	for _, line := range strings.Split(strings.Trim(doc, "[]"), ",\n") {
		if !strings.Contains(line, `"sender": "alice"`) {
			kept = append(kept, line)
		}
	}
	writeTokens(t, path, "["+strings.Join(kept, ",\n")+"]")

	for {
		_, err := aliceStream.Receive()
		if err == nil {
			continue
		}
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("alice's stream ended with %v, want Unauthenticated", err)
		}
		break
	}
	for observerWatch.Receive() {
	}
	if connect.CodeOf(observerWatch.Err()) != connect.CodeUnauthenticated {
		t.Fatalf("the observer's watch ended with %v, want Unauthenticated", observerWatch.Err())
	}
	// Bob's stream is untouched: it delivers the next envelope.
	wantAck(t, "bob proposes", sendAs(t, srv, "bob", proposal(sid, "m9")), "")
	for {
		res, err := bobStream.Receive()
		if err != nil {
			t.Fatalf("bob's stream: %v", err)
		}
		if res.GetEnvelope().GetMessageId() == "m9" {
			break
		}
	}
	cancel()
}

type (
	adminv1UploadReq    = adminv1.UploadModeRequest
	adminv1ListAuditReq = adminv1.ListAuditRecordsRequest
	adminv1InspectReq   = adminv1.InspectSessionRequest
)
