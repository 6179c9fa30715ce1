package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/internal/oidctest"
)

// oidcChain starts a chain that discovers iss's keys.
func oidcChain(t *testing.T, iss *oidctest.Issuer, tweak func(*auth.OIDCOptions)) *auth.Chain {
	t.Helper()
	opts := auth.OIDCOptions{Issuer: iss.URL}
	if tweak != nil {
		tweak(&opts)
	}
	return newChain(t, auth.Config{OIDC: opts})
}

func authJWT(t *testing.T, c *auth.Chain, token string) (access.Caller, time.Time, error) {
	t.Helper()
	return c.AuthenticateUntil(context.Background(), bearer(token))
}

// refused asserts token is refused UNAUTHENTICATED with a reason
// containing want.
func refused(t *testing.T, c *auth.Chain, token, want string) {
	t.Helper()
	got, _, err := authJWT(t, c, token)
	if err == nil {
		t.Fatalf("accepted as %+v, want refused (%s)", got, want)
	}
	if !errors.Is(err, auth.ErrRejected) || !strings.Contains(err.Error(), want) {
		t.Fatalf("refused with %q, want a rejection mentioning %q", err, want)
	}
}

func TestJWTAcceptsValidTokens(t *testing.T) {
	iss := oidctest.New(t)
	c := oidcChain(t, iss, nil)

	claims := iss.Claims("agent://alice", time.Hour)
	got, until, err := authJWT(t, c, iss.Token(claims))
	if err != nil {
		t.Fatal(err)
	}
	want := access.Caller{ID: "agent://alice", CanStartSessions: true}
	if !auth.SameCaller(got, want) {
		t.Fatalf("caller %+v, want %+v: without macp_scopes only sending and starting", got, want)
	}
	exp := time.Unix(claims["exp"].(int64), 0)
	if !until.Equal(exp.Add(auth.DefaultLeeway)) {
		t.Fatalf("valid until %v, want exp %v plus the leeway", until, exp)
	}

	es := iss.Published(jose.ES256)[0]
	if got, _, err := authJWT(t, c, iss.SignWith(es, iss.Claims("agent://es", time.Hour))); err != nil || got.ID != "agent://es" {
		t.Fatalf("ES256: %+v %v", got, err)
	}

	// An audience list that includes ours.
	claims = iss.Claims("agent://multi", time.Hour)
	claims["aud"] = []string{"other", oidctest.Audience}
	if _, _, err := authJWT(t, c, iss.Token(claims)); err != nil {
		t.Fatalf("audience list: %v", err)
	}
}

func TestJWTScopesClaim(t *testing.T) {
	iss := oidctest.New(t)
	c := oidcChain(t, iss, nil)
	claims := iss.Claims("ops", time.Hour)
	claims["macp_scopes"] = map[string]any{
		"allowed_modes": []string{"macp.mode.task.v1"}, "can_start_sessions": false, "max_open_sessions": 7,
		"can_manage_mode_registry": true, "is_observer": true, "can_manage_policies": true, "is_admin": true,
		"some_future_scope": "ignored",
	}
	got, _, err := authJWT(t, c, iss.Token(claims))
	if err != nil {
		t.Fatal(err)
	}
	want := access.Caller{ID: "ops", AllowedModes: []string{"macp.mode.task.v1"}, MaxOpenSessions: 7,
		Observer: true, CanManageModes: true, CanManagePolicies: true, Admin: true}
	if !auth.SameCaller(got, want) {
		t.Fatalf("caller %+v, want %+v", got, want)
	}
	for name, scopes := range map[string]any{
		"wrong type":       map[string]any{"is_admin": "yes"},
		"negative maximum": map[string]any{"max_open_sessions": -1},
		"not an object":    "admin",
		"too many modes":   map[string]any{"allowed_modes": strings.Split(strings.Repeat("m,", 70), ",")},
	} {
		t.Run(name, func(t *testing.T) {
			claims := iss.Claims("ops", time.Hour)
			claims["macp_scopes"] = scopes
			refused(t, c, iss.Token(claims), "macp_scopes")
		})
	}
}

func TestJWTRefusesBadTokens(t *testing.T) {
	iss := oidctest.New(t)
	other := oidctest.New(t)
	c := oidcChain(t, iss, nil)
	now := time.Now()
	with := func(k string, v any) map[string]any {
		cl := iss.Claims("agent://mallory", time.Hour)
		if v == nil {
			delete(cl, k)
		} else {
			cl[k] = v
		}
		return cl
	}

	t.Run("expired", func(t *testing.T) {
		refused(t, c, iss.Token(with("exp", now.Add(-5*time.Minute).Unix())), "expired")
	})
	t.Run("expired within the leeway", func(t *testing.T) {
		if _, _, err := authJWT(t, c, iss.Token(with("exp", now.Add(-5*time.Second).Unix()))); err != nil {
			t.Fatalf("a token 5 s past exp is within the %v leeway: %v", auth.DefaultLeeway, err)
		}
	})
	t.Run("not yet valid", func(t *testing.T) {
		refused(t, c, iss.Token(with("nbf", now.Add(5*time.Minute).Unix())), "not valid yet")
	})
	t.Run("no exp", func(t *testing.T) {
		refused(t, c, iss.Token(with("exp", nil)), "exp")
	})
	t.Run("wrong audience", func(t *testing.T) {
		refused(t, c, iss.Token(with("aud", "another-service")), "audience")
	})
	t.Run("no audience", func(t *testing.T) {
		refused(t, c, iss.Token(with("aud", nil)), "audience")
	})
	t.Run("wrong issuer", func(t *testing.T) {
		refused(t, c, iss.Token(with("iss", other.URL)), "another issuer")
	})
	t.Run("token of another issuer", func(t *testing.T) {
		// Signed by the other issuer's key, which our issuer never published.
		refused(t, c, other.Token(other.Claims("agent://mallory", time.Hour)), "JWT")
	})
	t.Run("another issuer's key claiming our issuer", func(t *testing.T) {
		refused(t, c, other.Token(with("iss", iss.URL)), "key the issuer does not publish")
	})
	t.Run("unknown kid", func(t *testing.T) {
		refused(t, c, iss.SignWith(iss.NewKey(jose.RS256), iss.Claims("agent://mallory", time.Hour)), "key the issuer does not publish")
	})
	t.Run("known kid, other key", func(t *testing.T) {
		forged := iss.NewKey(jose.RS256)
		forged.ID = iss.Active().ID
		refused(t, c, iss.SignWith(forged, iss.Claims("agent://mallory", time.Hour)), "signature does not verify")
	})
	t.Run("alg none", func(t *testing.T) {
		refused(t, c, iss.Unsigned(iss.Claims("agent://mallory", time.Hour)), "malformed JWT")
	})
	t.Run("HS256 with the public key as secret", func(t *testing.T) {
		refused(t, c, iss.HS256(iss.PublicKeyPEM(), iss.Active().ID, iss.Claims("agent://mallory", time.Hour)), "malformed JWT")
		refused(t, c, iss.HS256(iss.PublicKeyPEM(), "", iss.Claims("agent://mallory", time.Hour)), "malformed JWT")
	})
	t.Run("tampered payload", func(t *testing.T) {
		tok := iss.Token(iss.Claims("agent://alice", time.Hour))
		parts := strings.Split(tok, ".")
		p, _ := json.Marshal(iss.Claims("agent://admin", time.Hour))
		parts[1] = base64.RawURLEncoding.EncodeToString(p)
		refused(t, c, strings.Join(parts, "."), "signature does not verify")
	})
	t.Run("sender missing", func(t *testing.T) {
		refused(t, c, iss.Token(with("sub", nil)), "sub claim")
	})
	t.Run("sender too long", func(t *testing.T) {
		refused(t, c, iss.Token(with("sub", strings.Repeat("s", auth.MaxSenderLen+1))), "sub claim")
	})
	t.Run("sender not a string", func(t *testing.T) {
		refused(t, c, iss.Token(with("sub", 42)), "not accepted")
	})
	t.Run("garbage", func(t *testing.T) {
		refused(t, c, "not.a.jwt", "malformed JWT")
	})
	t.Run("oversized", func(t *testing.T) {
		big := iss.Token(with("pad", strings.Repeat("x", auth.MaxTokenLen)))
		refused(t, c, big, "malformed credentials")
	})
}

func TestJWTKeyRotation(t *testing.T) {
	iss := oidctest.New(t)
	c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.MinRefresh = time.Millisecond })
	oldToken := iss.Token(iss.Claims("agent://alice", time.Hour))
	if _, _, err := authJWT(t, c, oldToken); err != nil {
		t.Fatal(err)
	}
	fetches := iss.JWKSFetches()

	// The issuer rotates and drops the old key: a token of the new key
	// names an unknown kid, which refreshes the key set once.
	iss.Rotate(false)
	time.Sleep(2 * time.Millisecond) // past MinRefresh
	if got, _, err := authJWT(t, c, iss.Token(iss.Claims("agent://alice", time.Hour))); err != nil || got.ID != "agent://alice" {
		t.Fatalf("token of the rotated key: %+v %v", got, err)
	}
	if n := iss.JWKSFetches() - fetches; n != 1 {
		t.Fatalf("rotation fetched the key set %d times, want 1", n)
	}
	// The old key is gone from the fetched set.
	refused(t, c, oldToken, "key the issuer does not publish")
}

func TestJWTUnknownKidFloodIsRateLimited(t *testing.T) {
	iss := oidctest.New(t)
	c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.MinRefresh = time.Hour })
	if _, _, err := authJWT(t, c, iss.Token(iss.Claims("agent://alice", time.Hour))); err != nil {
		t.Fatal(err)
	}
	before := iss.JWKSFetches()
	stranger := iss.NewKey(jose.RS256)
	for i := range 50 {
		stranger.ID = "kid-" + strings.Repeat("x", i)
		refused(t, c, iss.SignWith(stranger, iss.Claims("agent://mallory", time.Hour)), "key the issuer does not publish")
	}
	// The first unknown kid may refresh (the last fetch was the initial
	// one, an hour is not over: none may), the other 49 never do.
	if n := iss.JWKSFetches() - before; n > 1 {
		t.Fatalf("50 unknown key ids caused %d key set fetches", n)
	}
	// Known keys keep working meanwhile.
	if _, _, err := authJWT(t, c, iss.Token(iss.Claims("agent://alice", time.Hour))); err != nil {
		t.Fatal(err)
	}
}

func TestJWTFixedKeySets(t *testing.T) {
	iss := oidctest.New(t)
	set, err := json.Marshal(iss.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("inline JWKS", func(t *testing.T) {
		c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.JWKSJSON = string(set) })
		before := iss.JWKSFetches()
		if _, _, err := authJWT(t, c, iss.Token(iss.Claims("agent://alice", time.Hour))); err != nil {
			t.Fatal(err)
		}
		if iss.JWKSFetches() != before {
			t.Fatal("an inline key set was fetched")
		}
	})
	t.Run("JWKS URL", func(t *testing.T) {
		c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.JWKSURL = iss.URL + "/jwks" })
		if _, _, err := authJWT(t, c, iss.Token(iss.Claims("agent://alice", time.Hour))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("custom audience and sender claim", func(t *testing.T) {
		c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.Audience = "concord-prod"; o.SenderClaim = "email" })
		cl := iss.Claims("ignored-subject", time.Hour)
		cl["aud"], cl["email"] = "concord-prod", "alice@example.com"
		got, _, err := authJWT(t, c, iss.Token(cl))
		if err != nil || got.ID != "alice@example.com" {
			t.Fatalf("%+v %v", got, err)
		}
		refused(t, c, iss.Token(iss.Claims("alice", time.Hour)), "audience")
	})
}

func TestJWTHS256OnlyWithAnInlineSecret(t *testing.T) {
	iss := oidctest.New(t)
	secret := []byte("an-operator-chosen-secret-of-32+bytes!")
	set, _ := json.Marshal(map[string]any{"keys": []any{
		map[string]any{"kty": "oct", "kid": "shared", "k": base64.RawURLEncoding.EncodeToString(secret)},
		iss.JWKS().Keys[0],
	}})
	c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.JWKSJSON = string(set) })
	if got, _, err := authJWT(t, c, iss.HS256(secret, "shared", iss.Claims("agent://svc", time.Hour))); err != nil || got.ID != "agent://svc" {
		t.Fatalf("HS256 with the configured secret: %+v %v", got, err)
	}
	// The RSA key's public half as an HMAC secret still fails: HS256
	// verifies only with the configured symmetric key.
	refused(t, c, iss.HS256(iss.PublicKeyPEM(), iss.Active().ID, iss.Claims("agent://mallory", time.Hour)), "key the issuer does not publish")
	refused(t, c, iss.HS256(iss.PublicKeyPEM(), "", iss.Claims("agent://mallory", time.Hour)), "signature does not verify")
	refused(t, c, iss.HS256([]byte("a-guessed-secret-of-thirty-two-bytes"), "shared", iss.Claims("agent://mallory", time.Hour)), "signature does not verify")
	// RS256 keeps working beside it.
	if _, _, err := authJWT(t, c, iss.Token(iss.Claims("agent://alice", time.Hour))); err != nil {
		t.Fatal(err)
	}
}

func TestJWTRemoteSymmetricKeysAreIgnored(t *testing.T) {
	// A key set served over HTTP never enables HS256, even if it carries
	// an oct key: here the JWKS URL serves one.
	secret := []byte("published-secret-is-no-secret-at-all!!")
	srv := jwksServer(t, map[string]any{"keys": []any{map[string]any{"kty": "oct", "kid": "k", "k": base64.RawURLEncoding.EncodeToString(secret)}}})
	iss := oidctest.New(t)
	c := oidcChain(t, iss, func(o *auth.OIDCOptions) { o.JWKSURL = srv })
	refused(t, c, iss.HS256(secret, "k", iss.Claims("agent://mallory", time.Hour)), "malformed JWT")
}

func TestJWTConfigurationErrors(t *testing.T) {
	if _, err := auth.New(context.Background(), auth.Config{OIDC: auth.OIDCOptions{JWKSURL: "http://127.0.0.1:1/jwks"}}, quiet); err == nil {
		t.Fatal("a JWKS without an issuer was accepted")
	}
	if _, err := auth.New(context.Background(), auth.Config{OIDC: auth.OIDCOptions{Issuer: "http://127.0.0.1:1"}}, quiet); err == nil {
		t.Fatal("an unreachable issuer passed discovery")
	}
	if _, err := auth.New(context.Background(), auth.Config{OIDC: auth.OIDCOptions{Issuer: "x", JWKSJSON: `{"keys": []}`}}, quiet); err == nil {
		t.Fatal("an empty inline key set was accepted")
	}
}

func jwksServer(t *testing.T, doc any) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(doc) })
	srv := newHTTPServer(t, mux)
	return srv + "/jwks"
}
