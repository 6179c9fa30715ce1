package ui_test

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	"github.com/concord-macp/concord/ui/login"
)

// operatorUser is an identity at the test issuer with macp_scopes.
type operatorUser struct {
	sub    string
	scopes login.Scopes
}

func (u operatorUser) ID() string { return u.sub }

func (u operatorUser) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]string{"sub": u.sub})
}

func (u operatorUser) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	return &scopedClaims{IDTokenClaims: base, Scopes: u.scopes}, nil
}

type scopedClaims struct {
	*mockoidc.IDTokenClaims
	Scopes login.Scopes `json:"macp_scopes"`
}

// startIssuer runs a real OIDC issuer on a loopback port for the test.
func startIssuer(t *testing.T) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// freeAddr returns a loopback address nobody listens on, so that the
// server's callback URL can be configured before it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// startOIDCServer starts a server whose console logs in at issuer.
func startOIDCServer(t *testing.T, issuer *mockoidc.MockOIDC) *servertest.Server {
	t.Helper()
	addr := freeAddr(t)
	cfg := issuer.Config()
	return servertest.Start(t, server.Config{Memory: true, SweepInterval: -1, Addr: addr, UI: server.UIConfig{
		OIDCIssuer: cfg.Issuer, OIDCClientID: cfg.ClientID, OIDCClientSecret: cfg.ClientSecret,
		OIDCRedirectURL: "http://" + addr + "/ui/callback",
	}})
}

// logIn walks the authorization-code flow as a browser would and returns
// the final answer's status.
func logIn(t *testing.T, c *http.Client, srv *servertest.Server, issuer *mockoidc.MockOIDC, u operatorUser) {
	t.Helper()
	issuer.QueueUser(u)
	res, err := c.Get(srv.URL + "/ui/sessions")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/ui/login?next=") {
		t.Fatalf("an anonymous page load: %d to %q, want a redirect to the login", res.StatusCode, res.Header.Get("Location"))
	}
	next := srv.URL + res.Header.Get("Location")
	for hop := 0; hop < 5; hop++ {
		res, err := c.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		loc := res.Header.Get("Location")
		if hop == 0 {
			q, _ := url.Parse(loc)
			if q.Query().Get("code_challenge_method") != "S256" || q.Query().Get("code_challenge") == "" || q.Query().Get("nonce") == "" {
				t.Fatalf("the authorization request lacks PKCE or a nonce: %s", loc)
			}
		}
		if res.StatusCode == http.StatusSeeOther && loc == "/ui/sessions" {
			for _, ck := range res.Cookies() {
				if ck.Name == "concord_ui" && (!ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/ui/") {
					t.Fatalf("session cookie attributes: %+v", ck)
				}
			}
			return
		}
		if res.StatusCode/100 != 3 {
			t.Fatalf("login hop %d (%s): status %d", hop, next, res.StatusCode)
		}
		if strings.HasPrefix(loc, "/") {
			loc = srv.URL + loc
		}
		next = loc
	}
	t.Fatal("the login did not come back to the console")
}

func TestOIDCLoginAdminViewerAndNobody(t *testing.T) {
	issuer := startIssuer(t)
	srv := startOIDCServer(t, issuer)

	admin := browser(t)
	logIn(t, admin, srv, issuer, operatorUser{sub: "ops-ann", scopes: login.Scopes{IsAdmin: true, IsObserver: true}})
	status, body := get(t, admin, srv.URL, "/ui/sessions")
	if status != http.StatusOK {
		t.Fatalf("admin after login: %d", status)
	}
	mustContain(t, "admin page", body, "ops-ann", `badge">admin`, "Log out")
	if status, body := post(t, admin, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v1", quorumOfTwo, "save")); status != http.StatusOK {
		t.Fatalf("admin push: %d\n%.1000s", status, body)
	}

	viewer := browser(t)
	logIn(t, viewer, srv, issuer, operatorUser{sub: "ops-vic", scopes: login.Scopes{IsObserver: true}})
	_, body = get(t, viewer, srv.URL, "/ui/modes")
	mustContain(t, "viewer page", body, "ops-vic", `badge">viewer`)
	if strings.Contains(body, "Upload a mode") {
		t.Fatal("a viewer is offered the upload form")
	}
	if status, _ := post(t, viewer, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v2", quorumOfTwo, "save")); status != http.StatusForbidden {
		t.Fatalf("viewer save: %d, want 403", status)
	}
	if status, _ := post(t, viewer, srv.URL, "/ui/policies/push", pushForm("policy.acme.three-v2", quorumOfTwo, "test")); status != http.StatusOK {
		t.Fatalf("viewer test run: %d, want 200", status)
	}
	if status, _ := post(t, viewer, srv.URL, "/ui/modes/retire", url.Values{"mode": {"x"}, "confirm": {"yes"}}); status != http.StatusForbidden {
		t.Fatalf("viewer retire: %d, want 403", status)
	}
	if status, _ := get(t, viewer, srv.URL, "/ui/policies/policy.acme.three-v2"); status != http.StatusNotFound {
		t.Fatal("a viewer's save went through")
	}

	nobody := browser(t)
	logIn(t, nobody, srv, issuer, operatorUser{sub: "agent-zed"})
	if status, body := get(t, nobody, srv.URL, "/ui/"); status != http.StatusForbidden || !strings.Contains(body, "neither the admin nor the observer") {
		t.Fatalf("caller without capabilities: %d", status)
	}

	// Logging out ends the session.
	if status, _ := post(t, admin, srv.URL, "/ui/logout", nil); status != http.StatusOK {
		t.Fatalf("logout: %d", status)
	}
	if status, _ := get(t, admin, srv.URL, "/ui/"); status != http.StatusSeeOther {
		t.Fatalf("after logout: %d, want a redirect to the login", status)
	}
}

func TestOIDCRefusesForgedCookiesAndBadCallbacks(t *testing.T) {
	issuer := startIssuer(t)
	srv := startOIDCServer(t, issuer)
	c := browser(t)
	u, _ := url.Parse(srv.URL + "/ui/")
	forged, _ := json.Marshal(map[string]any{"caller": map[string]any{"ID": "mallory", "Admin": true}, "exp": 1 << 40})
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "concord_ui", Value: strings.TrimRight(urlB64(forged), "=") + ".c2lnbmF0dXJl", Path: "/ui/"}})
	if status, _ := get(t, c, srv.URL, "/ui/"); status != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d, want a redirect to the login", status)
	}
	if status, _ := post(t, c, srv.URL, "/ui/modes/retire", url.Values{"mode": {"x"}}); status != http.StatusUnauthorized {
		t.Fatalf("forged cookie on a form: %d, want 401", status)
	}
	if status, _ := get(t, browser(t), srv.URL, "/ui/callback?code=x&state=y"); status != http.StatusBadRequest {
		t.Fatalf("callback without a login in progress: %d, want 400", status)
	}
	// A login in progress, but the state does not match.
	res, err := c.Get(srv.URL + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if status, _ := get(t, c, srv.URL, "/ui/callback?code=x&state=wrong"); status != http.StatusBadRequest {
		t.Fatalf("callback with a wrong state: %d, want 400", status)
	}
}

func urlB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
