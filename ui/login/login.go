// Package login signs operators in to the admin console with OpenID
// Connect: the authorization-code flow with PKCE against a configured
// issuer, then a signed, HttpOnly, SameSite session cookie that carries
// the caller the ID token maps to. Which capabilities an ID token grants
// is decided by one swappable function (Config.MapClaims).
package login

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/concord-macp/concord/host/access"
)

// Cookie names; both are scoped to /ui/.
const (
	sessionCookie = "concord_ui"
	flowCookie    = "concord_ui_login"
)

// ErrNoSession reports a request without a valid console session.
var ErrNoSession = errors.New("no console session")

// Config configures the login.
type Config struct {
	// Issuer is the OIDC issuer URL; its discovery document is read at
	// New.
	Issuer, ClientID, ClientSecret string
	// RedirectURL is the console's callback, e.g.
	// https://concord.example/ui/callback.
	RedirectURL string
	// CookieKey signs the session cookie; at least 32 bytes. Empty: a
	// random key, so sessions end when the server restarts.
	CookieKey []byte
	// MapClaims turns an ID token's claims into a caller; nil uses
	// CallerFromClaims.
	MapClaims func(claims json.RawMessage) (access.Caller, error)
	// SessionTTL bounds a console session (default 8 hours); a session
	// never outlives the ID token it came from.
	SessionTTL time.Duration
	// HTTPClient talks to the issuer (default http.DefaultClient).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Login is a configured OIDC login.
type Login struct {
	cfg      Config
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	key      []byte
	secure   bool
	origin   string
}

// New discovers the issuer and returns the login.
func New(ctx context.Context, cfg Config) (*Login, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("login: the OIDC issuer, client id and redirect URL are required")
	}
	redirect, err := url.Parse(cfg.RedirectURL)
	if err != nil || (redirect.Scheme != "https" && redirect.Scheme != "http") || redirect.Host == "" {
		return nil, fmt.Errorf("login: the redirect URL %q is not an absolute http(s) URL", cfg.RedirectURL)
	}
	if cfg.MapClaims == nil {
		cfg.MapClaims = CallerFromClaims
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	key := cfg.CookieKey
	switch {
	case len(key) == 0:
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("login: cookie key: %w", err)
		}
	case len(key) < 32:
		return nil, errors.New("login: the cookie key must be at least 32 bytes")
	}
	ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("login: discover the OIDC issuer %s: %w", cfg.Issuer, err)
	}
	issuer, _ := url.Parse(cfg.Issuer)
	l := &Login{
		cfg: cfg,
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL,
			Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		key:      key,
		secure:   redirect.Scheme == "https",
		origin:   issuer.Scheme + "://" + issuer.Host,
	}
	return l, nil
}

// IssuerOrigin is the issuer's scheme and host.
func (l *Login) IssuerOrigin() string { return l.origin }

// flow is what the login cookie remembers between Start and Callback.
type flow struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// session is the console session cookie's content.
type session struct {
	Caller  access.Caller `json:"caller"`
	Expires int64         `json:"exp"`
}

// Start begins a login: it remembers a fresh state, nonce and PKCE
// verifier in a short-lived cookie and redirects to the issuer.
func (l *Login) Start(w http.ResponseWriter, r *http.Request) {
	f := flow{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(r.URL.Query().Get("next")), Expires: l.cfg.Now().Add(10 * time.Minute).Unix()}
	if err := l.setCookie(w, flowCookie, f, 10*time.Minute); err != nil {
		l.cfg.Logger.Error("login: set the flow cookie", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, l.oauth.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)), http.StatusFound)
}

// Callback completes a login: it checks the state, redeems the code with
// the PKCE verifier, verifies the ID token and its nonce, maps its claims
// to a caller and sets the session cookie.
func (l *Login) Callback(w http.ResponseWriter, r *http.Request) {
	var f flow
	if err := l.readCookie(r, flowCookie, &f); err != nil || f.Expires < l.cfg.Now().Unix() {
		http.Error(w, "login: no login in progress or it expired; start again at /ui/login", http.StatusBadRequest)
		return
	}
	clear := &http.Cookie{Name: flowCookie, Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: l.secure, SameSite: http.SameSiteLaxMode}
	http.SetCookie(w, clear)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		http.Error(w, "login: the issuer refused: "+truncate(e+" "+q.Get("error_description"), 200), http.StatusUnauthorized)
		return
	}
	if !hmac.Equal([]byte(q.Get("state")), []byte(f.State)) {
		http.Error(w, "login: the state does not match this login", http.StatusBadRequest)
		return
	}
	ctx := oidc.ClientContext(r.Context(), l.cfg.HTTPClient)
	tok, err := l.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		l.cfg.Logger.Warn("login: code exchange failed", "err", err)
		http.Error(w, "login: the issuer did not accept the authorization code", http.StatusUnauthorized)
		return
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		http.Error(w, "login: the issuer sent no ID token", http.StatusUnauthorized)
		return
	}
	idt, err := l.verifier.Verify(ctx, raw)
	if err != nil {
		l.cfg.Logger.Warn("login: ID token refused", "err", err)
		http.Error(w, "login: the ID token does not verify", http.StatusUnauthorized)
		return
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(f.Nonce)) {
		http.Error(w, "login: the ID token's nonce does not match this login", http.StatusUnauthorized)
		return
	}
	var claims json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		http.Error(w, "login: the ID token's claims do not decode", http.StatusUnauthorized)
		return
	}
	c, err := l.cfg.MapClaims(claims)
	if err != nil {
		http.Error(w, "login: "+err.Error(), http.StatusForbidden)
		return
	}
	ttl := min(l.cfg.SessionTTL, idt.Expiry.Sub(l.cfg.Now()))
	if ttl <= 0 {
		http.Error(w, "login: the ID token has expired", http.StatusUnauthorized)
		return
	}
	s := session{Caller: c, Expires: l.cfg.Now().Add(ttl).Unix()}
	if err := l.setCookie(w, sessionCookie, s, ttl); err != nil {
		l.cfg.Logger.Error("login: set the session cookie", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	l.cfg.Logger.Info("console login", "identity", c.ID, "admin", c.Admin, "observer", c.Observer)
	http.Redirect(w, r, f.Next, http.StatusSeeOther)
}

// Caller returns the caller of a request's session cookie.
func (l *Login) Caller(r *http.Request) (access.Caller, error) {
	var s session
	if err := l.readCookie(r, sessionCookie, &s); err != nil {
		return access.Caller{}, err
	}
	if s.Expires < l.cfg.Now().Unix() {
		return access.Caller{}, fmt.Errorf("%w: the console session expired", ErrNoSession)
	}
	return s.Caller, nil
}

// Logout ends the console session.
func (l *Login) Logout(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: l.secure, SameSite: http.SameSiteLaxMode})
}

// Cookies are base64url(JSON) "." base64url(HMAC-SHA256(key, name "." JSON)).
func (l *Login) sign(name string, payload []byte) []byte {
	m := hmac.New(sha256.New, l.key)
	m.Write([]byte(name))
	m.Write([]byte{'.'})
	m.Write(payload)
	return m.Sum(nil)
}

func (l *Login) setCookie(w http.ResponseWriter, name string, v any, ttl time.Duration) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	enc := base64.RawURLEncoding
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: enc.EncodeToString(payload) + "." + enc.EncodeToString(l.sign(name, payload)),
		Path: "/ui/", MaxAge: int(ttl.Seconds()), HttpOnly: true, Secure: l.secure, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// maxCookieBytes bounds a cookie value read.
const maxCookieBytes = 4096

func (l *Login) readCookie(r *http.Request, name string, v any) error {
	c, err := r.Cookie(name)
	if err != nil {
		return ErrNoSession
	}
	if len(c.Value) > maxCookieBytes {
		return fmt.Errorf("%w: the cookie is too large", ErrNoSession)
	}
	body, sig, ok := strings.Cut(c.Value, ".")
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(body)
	mac, err2 := enc.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(mac, l.sign(name, payload)) {
		return fmt.Errorf("%w: the cookie's signature does not verify", ErrNoSession)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: the cookie does not decode", ErrNoSession)
	}
	return nil
}

// safeNext keeps a post-login destination on the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/ui/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/ui/"
	}
	return u.RequestURI()
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
