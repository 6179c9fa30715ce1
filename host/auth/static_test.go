package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/auth"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	aliceToken = "alice-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdefgh"
)

func bearer(token string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	return h
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestParseTokensBothFormatsAndDefaults(t *testing.T) {
	list := `[
	  {"token": "` + aliceToken + `", "sender": "agent://alice"},
	  {"token": "` + bobToken + `", "sender": "bob", "allowed_modes": ["macp.mode.decision.v1"],
	   "can_start_sessions": false, "max_open_sessions": 3, "can_manage_mode_registry": true,
	   "is_observer": true, "can_manage_policies": true, "is_admin": true}
	]`
	for name, doc := range map[string]string{"list": list, "object": `{"tokens": ` + list + `}`} {
		t.Run(name, func(t *testing.T) {
			entries, err := auth.ParseTokens([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				t.Fatalf("%d entries", len(entries))
			}
			alice := entries[0].Caller()
			want := access.Caller{ID: "agent://alice", CanStartSessions: true}
			if !auth.SameCaller(alice, want) {
				t.Fatalf("alice = %+v, want %+v (absent can_start_sessions means true, nothing else granted)", alice, want)
			}
			bob := entries[1].Caller()
			want = access.Caller{ID: "bob", AllowedModes: []string{"macp.mode.decision.v1"}, MaxOpenSessions: 3,
				Observer: true, CanManageModes: true, CanManagePolicies: true, Admin: true}
			if !auth.SameCaller(bob, want) {
				t.Fatalf("bob = %+v, want %+v", bob, want)
			}
		})
	}
}

func TestParseTokensRefusesBadFiles(t *testing.T) {
	long := strings.Repeat("s", 257)
	cases := map[string]string{
		"not json":             `tokens`,
		"unknown field":        `[{"token": "` + aliceToken + `", "sender": "a", "is_admn": true}]`,
		"duplicate token":      `[{"token": "` + aliceToken + `", "sender": "a"}, {"token": "` + aliceToken + `", "sender": "b"}]`,
		"dot-shaped token":     `[{"token": "abc.def.ghi0123456789", "sender": "a"}]`,
		"token with space":     `[{"token": "abc def 0123456789", "sender": "a"}]`,
		"empty token":          `[{"token": "", "sender": "a"}]`,
		"token too long":       `[{"token": "` + strings.Repeat("t", 513) + `", "sender": "a"}]`,
		"empty sender":         `[{"token": "` + aliceToken + `", "sender": ""}]`,
		"sender too long":      `[{"token": "` + aliceToken + `", "sender": "` + long + `"}]`,
		"sender with newline":  `[{"token": "` + aliceToken + `", "sender": "a\nb"}]`,
		"negative max open":    `[{"token": "` + aliceToken + `", "sender": "a", "max_open_sessions": -1}]`,
		"object without list":  `{"entries": []}`,
		"trailing data":        `[] []`,
		"mode name too long":   `[{"token": "` + aliceToken + `", "sender": "a", "allowed_modes": ["` + long + `"]}]`,
		"wrong type":           `[{"token": "` + aliceToken + `", "sender": "a", "is_admin": "yes"}]`,
		"empty mode in a list": `[{"token": "` + aliceToken + `", "sender": "a", "allowed_modes": [""]}]`,
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := auth.ParseTokens([]byte(doc)); err == nil {
				t.Fatalf("accepted %s", doc)
			}
		})
	}
}

func TestExampleTokensFileParses(t *testing.T) {
	data, err := os.ReadFile("../../examples/auth/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := auth.ParseTokens(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 3 {
		t.Fatalf("the example has %d entries", len(entries))
	}
	var admin bool
	for _, e := range entries {
		admin = admin || e.IsAdmin
	}
	if !admin {
		t.Fatal("the example has no admin entry")
	}
}

func newChain(t *testing.T, cfg auth.Config) *auth.Chain {
	t.Helper()
	c, err := auth.New(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func tokensFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, p, content)
	return p
}

func entry(token, sender string) string {
	return `{"token": "` + token + `", "sender": "` + sender + `"}`
}

func TestStaticTokensResolve(t *testing.T) {
	c := newChain(t, auth.Config{TokensJSON: "[" + entry(aliceToken, "alice") + "]"})
	got, err := c.Authenticate(context.Background(), bearer(aliceToken))
	if err != nil || got.ID != "alice" || !got.CanStartSessions {
		t.Fatalf("alice: %+v %v", got, err)
	}
	h := http.Header{}
	h.Set("X-Macp-Token", aliceToken)
	if got, err := c.Authenticate(context.Background(), h); err != nil || got.ID != "alice" {
		t.Fatalf("x-macp-token: %+v %v", got, err)
	}
	for _, tok := range []string{bobToken, aliceToken[:len(aliceToken)-1], aliceToken + "x", strings.ToUpper(aliceToken)} {
		_, err := c.Authenticate(context.Background(), bearer(tok))
		if !errors.Is(err, auth.ErrRejected) || !strings.Contains(err.Error(), "unknown token") {
			t.Fatalf("token %q: %v, want unknown token", tok, err)
		}
	}
}

func TestStaticTokensReloadOnChangeAndOnDemand(t *testing.T) {
	path := tokensFile(t, "["+entry(aliceToken, "alice")+"]")
	c := newChain(t, auth.Config{TokensFile: path, PollInterval: 20 * time.Millisecond})
	if _, err := c.Authenticate(context.Background(), bearer(aliceToken)); err != nil {
		t.Fatal(err)
	}

	// The file changes: bob is added, alice removed. The poller notices.
	writeFile(t, path, "["+entry(bobToken, "bob")+"]")
	waitFor(t, "bob's token to work and alice's to stop", func() bool {
		_, errBob := c.Authenticate(context.Background(), bearer(bobToken))
		_, errAlice := c.Authenticate(context.Background(), bearer(aliceToken))
		return errBob == nil && errAlice != nil
	})

	// A broken file keeps the tokens in use.
	writeFile(t, path, `[{"token": `)
	if err := c.Reload(); err == nil {
		t.Fatal("Reload accepted a broken file")
	}
	if got, err := c.Authenticate(context.Background(), bearer(bobToken)); err != nil || got.ID != "bob" {
		t.Fatalf("after a broken reload bob = %+v %v", got, err)
	}
}

func TestStaticTokensReloadWithoutPolling(t *testing.T) {
	path := tokensFile(t, "["+entry(aliceToken, "alice")+"]")
	c := newChain(t, auth.Config{TokensFile: path, PollInterval: -1})
	writeFile(t, path, "["+entry(bobToken, "bob")+"]")
	if _, err := c.Authenticate(context.Background(), bearer(bobToken)); err == nil {
		t.Fatal("bob's token works before any reload")
	}
	if err := c.Reload(); err != nil { // what SIGHUP does
		t.Fatal(err)
	}
	if _, err := c.Authenticate(context.Background(), bearer(bobToken)); err != nil {
		t.Fatalf("after Reload: %v", err)
	}
	if _, err := c.Authenticate(context.Background(), bearer(aliceToken)); err == nil {
		t.Fatal("the removed token still works after Reload")
	}
}

func TestChainRefusesMissingOrBrokenTokensFileAtStart(t *testing.T) {
	if _, err := auth.New(context.Background(), auth.Config{TokensFile: filepath.Join(t.TempDir(), "missing.json")}, quiet); err == nil {
		t.Fatal("a missing tokens file was accepted")
	}
	if _, err := auth.New(context.Background(), auth.Config{TokensFile: tokensFile(t, "{")}, quiet); err == nil {
		t.Fatal("a broken tokens file was accepted")
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCredentialHeaders(t *testing.T) {
	c := newChain(t, auth.Config{TokensJSON: "[" + entry(aliceToken, "alice") + "]"})
	malformed := func(h http.Header) {
		t.Helper()
		_, err := c.Authenticate(context.Background(), h)
		if !errors.Is(err, auth.ErrRejected) || !strings.Contains(err.Error(), "malformed credentials") {
			t.Fatalf("%v: %v, want malformed credentials", h, err)
		}
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	// Accepted spellings.
	for _, h := range []http.Header{
		hdr("Authorization", "Bearer "+aliceToken),
		hdr("Authorization", "bearer "+aliceToken),
		hdr("Authorization", "BEARER  "+aliceToken+" "),
		hdr("X-Macp-Token", aliceToken),
		hdr("Authorization", "Bearer "+aliceToken, "X-Macp-Token", aliceToken),
	} {
		if got, err := c.Authenticate(context.Background(), h); err != nil || got.ID != "alice" {
			t.Fatalf("%v: %+v %v", h, got, err)
		}
	}
	// Presented but not a token: one answer.
	malformed(hdr("Authorization", "Basic "+aliceToken))
	malformed(hdr("Authorization", "Token "+aliceToken))
	malformed(hdr("Authorization", aliceToken))
	malformed(hdr("Authorization", "Bearer "))
	malformed(hdr("Authorization", "Bearer a b"))
	malformed(hdr("Authorization", "Bearer "+aliceToken+"\x01"))
	malformed(hdr("Authorization", "Bearer "+aliceToken+"é"))
	malformed(hdr("Authorization", "Bearer "+strings.Repeat("a", auth.MaxTokenLen+1)))
	malformed(hdr("Authorization", "Bearer "+aliceToken, "Authorization", "Bearer "+aliceToken))
	malformed(hdr("Authorization", "Bearer "+aliceToken, "X-Macp-Token", bobToken))
	malformed(hdr("X-Macp-Token", " "))
	// The retired self-asserted header.
	if _, err := c.Authenticate(context.Background(), hdr("X-Macp-Agent-Id", "alice")); !errors.Is(err, auth.ErrRejected) {
		t.Fatalf("x-macp-agent-id: %v", err)
	}
	if _, err := c.Authenticate(context.Background(), hdr("X-Macp-Agent-Id", "alice", "Authorization", "Bearer "+aliceToken)); !errors.Is(err, auth.ErrRejected) {
		t.Fatalf("x-macp-agent-id beside a valid token: %v", err)
	}
	// A token in a header nobody reads is no credential at all.
	for _, h := range []http.Header{hdr("X-Api-Key", aliceToken), hdr("Cookie", "token="+aliceToken), hdr("Proxy-Authorization", "Bearer "+aliceToken)} {
		if _, err := c.Authenticate(context.Background(), h); !errors.Is(err, auth.ErrNoCredentials) {
			t.Fatalf("%v: %v, want no credentials", h, err)
		}
	}
	// An opaque token of any length up to the bound is looked up, not malformed.
	if _, err := c.Authenticate(context.Background(), bearer(strings.Repeat("a", 300))); err == nil || !strings.Contains(err.Error(), "unknown token") {
		t.Fatalf("300-character token: %v", err)
	}
}

func TestDevAnswersMalformedLikeTheChain(t *testing.T) {
	c := newChain(t, auth.Config{TokensJSON: "[" + entry(aliceToken, "alice") + "]"})
	h := bearer(strings.Repeat("a", 300))
	_, devErr := auth.Dev{}.Authenticate(context.Background(), h)
	_, chainErr := c.Authenticate(context.Background(), bearer(strings.Repeat("a", auth.MaxTokenLen+1)))
	if devErr == nil || chainErr == nil || devErr.Error() != chainErr.Error() {
		t.Fatalf("dev %q, chain %q: want one message", devErr, chainErr)
	}
	got, err := auth.Dev{}.Authenticate(context.Background(), bearer("alice"))
	if err != nil || got.ID != "alice" || got.Observer {
		t.Fatalf("dev alice: %+v %v", got, err)
	}
	if _, err := (auth.Deny{}).Authenticate(context.Background(), bearer("alice")); !errors.Is(err, auth.ErrRejected) {
		t.Fatalf("deny: %v", err)
	}
	if _, err := (auth.Deny{}).Authenticate(context.Background(), http.Header{}); !errors.Is(err, auth.ErrNoCredentials) {
		t.Fatalf("deny without credentials: %v", err)
	}
}

func TestChainRoutesByTokenShape(t *testing.T) {
	static := newChain(t, auth.Config{TokensJSON: "[" + entry(aliceToken, "alice") + "]"})
	_, err := static.Authenticate(context.Background(), bearer("a.b.c"))
	if err == nil || !strings.Contains(err.Error(), "JWT bearer tokens are not configured") {
		t.Fatalf("dot-shaped token without a JWT resolver: %v", err)
	}
	if got := static.Resolvers(); !slices.Equal(got, []string{"static-tokens"}) {
		t.Fatalf("resolvers %v", got)
	}
}
