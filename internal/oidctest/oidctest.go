// Package oidctest runs a small OpenID Connect issuer for tests: OpenID
// discovery and a JWKS endpoint over a real loopback HTTP server, key
// rotation, and tokens signed the way a test needs them (valid, expired,
// with an unknown key id, unsigned, or HS256 with the public key as the
// secret).
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Audience is the audience tokens carry unless a test says otherwise; it
// is the runtime's default.
const Audience = "macp-runtime"

// Key is a signing key of the issuer.
type Key struct {
	ID        string
	Algorithm jose.SignatureAlgorithm
	Private   crypto.Signer
}

// Issuer is a running test issuer.
type Issuer struct {
	// URL is the issuer URL (the iss of its tokens).
	URL string

	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	active  Key
	publish []Key
	fetches atomic.Int64
	n       int
}

// New starts an issuer with one RS256 key and one ES256 key published;
// the RS256 key signs.
func New(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", iss.discovery)
	mux.HandleFunc("/jwks", iss.jwks)
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	rsaKey := iss.NewKey(jose.RS256)
	ecKey := iss.NewKey(jose.ES256)
	iss.active = rsaKey
	iss.publish = []Key{rsaKey, ecKey}
	return iss
}

// NewKey makes a key the issuer does not publish yet.
func (i *Issuer) NewKey(alg jose.SignatureAlgorithm) Key {
	i.t.Helper()
	i.mu.Lock()
	i.n++
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	id := fmt.Sprintf("key-%d-%x", i.n, nonce)
	i.mu.Unlock()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		i.t.Fatalf("oidctest: no key type for %s", alg)
	}
	if err != nil {
		i.t.Fatalf("oidctest: generate key: %v", err)
	}
	return Key{ID: id, Algorithm: alg, Private: priv}
}

func (i *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                i.URL,
		"jwks_uri":                              i.URL + "/jwks",
		"authorization_endpoint":                i.URL + "/authorize",
		"token_endpoint":                        i.URL + "/token",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	})
}

func (i *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	i.fetches.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(i.JWKS())
}

// JWKS returns the published key set.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	i.mu.Lock()
	defer i.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range i.publish {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: string(k.Algorithm), Use: "sig"})
	}
	return set
}

// JWKSFetches counts the requests for the key set so far.
func (i *Issuer) JWKSFetches() int { return int(i.fetches.Load()) }

// Active returns the key that signs by default.
func (i *Issuer) Active() Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.active
}

// Rotate publishes a new RS256 key, makes it the signing key and, unless
// keepOld, stops publishing the keys before it.
func (i *Issuer) Rotate(keepOld bool) Key {
	k := i.NewKey(jose.RS256)
	i.mu.Lock()
	defer i.mu.Unlock()
	if keepOld {
		i.publish = append(i.publish, k)
	} else {
		i.publish = []Key{k}
	}
	i.active = k
	return k
}

// Published returns the published keys of alg.
func (i *Issuer) Published(alg jose.SignatureAlgorithm) []Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []Key
	for _, k := range i.publish {
		if k.Algorithm == alg {
			out = append(out, k)
		}
	}
	return out
}

// Claims returns the standard claims of a token for sub, valid from now
// for ttl, for the default audience.
func (i *Issuer) Claims(sub string, ttl time.Duration) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": i.URL, "sub": sub, "aud": Audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
}

// Token signs claims with the active key.
func (i *Issuer) Token(claims map[string]any) string { return i.SignWith(i.Active(), claims) }

// SignWith signs claims with k, naming its key id.
func (i *Issuer) SignWith(k Key, claims map[string]any) string {
	i.t.Helper()
	return i.sign(jose.SigningKey{Algorithm: k.Algorithm, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.ID}}, claims)
}

// HS256 signs claims with HMAC-SHA256 under secret, naming kid (when not
// empty) in the header.
func (i *Issuer) HS256(secret []byte, kid string, claims map[string]any) string {
	i.t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	return i.signOpts(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts, claims)
}

func (i *Issuer) sign(sk jose.SigningKey, claims map[string]any) string {
	return i.signOpts(sk, (&jose.SignerOptions{}).WithType("JWT"), claims)
}

func (i *Issuer) signOpts(sk jose.SigningKey, opts *jose.SignerOptions, claims map[string]any) string {
	i.t.Helper()
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		i.t.Fatalf("oidctest: signer: %v", err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		i.t.Fatalf("oidctest: sign: %v", err)
	}
	return tok
}

// Unsigned returns claims as a JWT with "alg": "none" and no signature.
func (i *Issuer) Unsigned(claims map[string]any) string {
	i.t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, err := json.Marshal(claims)
	if err != nil {
		i.t.Fatalf("oidctest: claims: %v", err)
	}
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "."
}

// PublicKeyPEM returns the active key's public key as PEM (PKIX), the
// bytes an attacker would use as an HS256 secret.
func (i *Issuer) PublicKeyPEM() []byte {
	i.t.Helper()
	der, err := x509.MarshalPKIXPublicKey(i.Active().Private.Public())
	if err != nil {
		i.t.Fatalf("oidctest: marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
