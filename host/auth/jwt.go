package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/concord-macp/concord/host/access"
)

// OIDCOptions configure the JWT resolver.
type OIDCOptions struct {
	// Issuer is the issuer URL; tokens must carry it as iss. Without
	// JWKSURL or JWKSJSON its keys come from OpenID discovery
	// (Issuer/.well-known/openid-configuration names the JWKS).
	Issuer string
	// Audience must be among the token's aud (default DefaultAudience).
	Audience string
	// JWKSURL fixes the key set's URL instead of discovering it.
	JWKSURL string
	// JWKSJSON is a fixed key set; it may hold symmetric keys, the only
	// way HS256 tokens are ever accepted.
	JWKSJSON string
	// JWKSTTL is how long a fetched key set is used before it is fetched
	// again (default DefaultJWKSTTL).
	JWKSTTL time.Duration
	// MinRefresh is the shortest time between two fetches of the key set
	// caused by unknown key ids (default DefaultMinRefresh).
	MinRefresh time.Duration
	// SenderClaim names the claim that is the sender (default "sub").
	SenderClaim string
	// Leeway is the clock skew allowed on exp and nbf (default
	// DefaultLeeway).
	Leeway time.Duration
	// HTTPClient fetches discovery and keys (default: a client with a 10 s
	// timeout).
	HTTPClient *http.Client
	// Now overrides the clock (tests).
	Now func() time.Time
}

// Defaults of OIDCOptions.
const (
	DefaultAudience   = "macp-runtime"
	DefaultJWKSTTL    = 300 * time.Second
	DefaultMinRefresh = 10 * time.Second
	DefaultLeeway     = 30 * time.Second
)

// Bounds on claims a token may carry.
const maxClaimBytes = 4096

// JWT resolves JWT bearer tokens signed by one issuer.
type JWT struct {
	verifier *oidc.IDTokenVerifier
	claim    string
	audience string
	leeway   time.Duration
	now      func() time.Time
	keys     *keySet
	cache    verifiedCache
}

// Verified tokens are remembered for verifiedFor (never past their own
// expiry), up to maxVerified of them: an agent presents the same JWT on
// every call, and a signature check costs about 300 times a static token
// lookup (BenchmarkAuthenticate).
const (
	verifiedFor = 60 * time.Second
	maxVerified = 10_000
)

type verified struct {
	caller access.Caller
	until  time.Time // the token's own end of validity
	fresh  time.Time // when the entry must be verified again
	keys   uint64    // the key set generation it was verified with
}

// verifiedCache maps sha256(token) to its verified caller. When full it
// is emptied: a flood of distinct tokens costs verifications, not memory.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verified
}

func (c *verifiedCache) get(k [sha256.Size]byte, now time.Time, keys uint64) (verified, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	if ok && (now.After(v.fresh) || now.After(v.until) || v.keys != keys) {
		delete(c.m, k)
		return verified{}, false
	}
	return v, ok
}

func (c *verifiedCache) put(k [sha256.Size]byte, v verified) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVerified {
		c.m = make(map[[sha256.Size]byte]verified)
	}
	c.m[k] = v
}

// NewJWT prepares a JWT resolver; with discovery it fetches the issuer's
// configuration now, so a wrong issuer URL fails at startup.
func NewJWT(ctx context.Context, opts OIDCOptions, log *slog.Logger) (*JWT, error) {
	if opts.Issuer == "" {
		return nil, errors.New("auth: JWT authentication needs an issuer (--oidc-issuer)")
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.JWKSTTL <= 0 {
		opts.JWKSTTL = DefaultJWKSTTL
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = DefaultMinRefresh
	}
	if opts.SenderClaim == "" {
		opts.SenderClaim = "sub"
	}
	if opts.Leeway <= 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: jwksFetchLimit}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	ks := &keySet{client: opts.HTTPClient, ttl: opts.JWKSTTL, minRefresh: opts.MinRefresh, now: opts.Now, log: log}
	switch {
	case opts.JWKSJSON != "":
		keys, err := parseJWKS([]byte(opts.JWKSJSON), true, log)
		if err != nil {
			return nil, fmt.Errorf("auth: inline JWKS: %w", err)
		}
		ks.keys = keys
	case opts.JWKSURL != "":
		ks.url = opts.JWKSURL
	default:
		dctx, cancel := context.WithTimeout(ctx, jwksFetchLimit)
		defer cancel()
		provider, err := oidc.NewProvider(oidc.ClientContext(dctx, opts.HTTPClient), opts.Issuer)
		if err != nil {
			return nil, fmt.Errorf("auth: OIDC discovery of %s: %w", opts.Issuer, err)
		}
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := provider.Claims(&doc); err != nil || doc.JWKSURI == "" {
			return nil, fmt.Errorf("auth: the OIDC configuration of %s names no jwks_uri", opts.Issuer)
		}
		ks.url = doc.JWKSURI
	}
	ks.algs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}
	for _, k := range ks.keys {
		if _, ok := k.Key.([]byte); ok {
			ks.algs = append(ks.algs, jose.HS256)
			break
		}
	}
	algs := make([]string, len(ks.algs))
	for i, a := range ks.algs {
		algs[i] = string(a)
	}
	v := oidc.NewVerifier(opts.Issuer, ks, &oidc.Config{
		ClientID:             opts.Audience,
		SupportedSigningAlgs: algs,
		// exp and nbf are checked below, with one leeway for both.
		SkipExpiryCheck: true,
	})
	return &JWT{verifier: v, claim: opts.SenderClaim, audience: opts.Audience, leeway: opts.Leeway, now: opts.Now, keys: ks}, nil
}

// macpScopes is the macp_scopes claim: a token entry's capabilities.
type macpScopes struct {
	AllowedModes          []string `json:"allowed_modes"`
	CanStartSessions      *bool    `json:"can_start_sessions"`
	MaxOpenSessions       *int     `json:"max_open_sessions"`
	CanManageModeRegistry bool     `json:"can_manage_mode_registry"`
	IsObserver            bool     `json:"is_observer"`
	CanManagePolicies     bool     `json:"can_manage_policies"`
	IsAdmin               bool     `json:"is_admin"`
}

// Resolve verifies token and returns its caller and the moment it stops
// being valid (exp plus the leeway).
func (j *JWT) Resolve(ctx context.Context, token string) (access.Caller, time.Time, error) {
	key := sha256.Sum256([]byte(token))
	now := j.now()
	// A new key set (a rotation) forgets every verification made before.
	gen := j.keys.generation()
	if v, ok := j.cache.get(key, now, gen); ok {
		return v.caller, v.until, nil
	}
	caller, until, err := j.verify(ctx, token, now)
	if err == nil {
		j.cache.put(key, verified{caller: caller, until: until, fresh: now.Add(verifiedFor), keys: gen})
	}
	return caller, until, err
}

func (j *JWT) verify(ctx context.Context, token string, now time.Time) (access.Caller, time.Time, error) {
	idt, err := j.verifier.Verify(ctx, token)
	if err != nil {
		return access.Caller{}, time.Time{}, reject(jwtReason(err, j.audience))
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return access.Caller{}, time.Time{}, reject("malformed JWT claims")
	}
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return access.Caller{}, time.Time{}, reject("the JWT has no valid exp claim")
	}
	if now.After(exp.Add(j.leeway)) {
		return access.Caller{}, time.Time{}, reject("the JWT has expired")
	}
	if raw, present := claims["nbf"]; present {
		nbf, ok := numericDate(raw)
		if !ok {
			return access.Caller{}, time.Time{}, reject("the JWT has a malformed nbf claim")
		}
		if now.Before(nbf.Add(-j.leeway)) {
			return access.Caller{}, time.Time{}, reject("the JWT is not valid yet (nbf)")
		}
	}
	var sender string
	if raw := claims[j.claim]; len(raw) == 0 || len(raw) > maxClaimBytes || json.Unmarshal(raw, &sender) != nil || checkSender(sender) != nil {
		return access.Caller{}, time.Time{}, reject(fmt.Sprintf("the JWT's %s claim is not a valid sender (1 to 256 visible characters)", j.claim))
	}
	caller, err := ScopedCaller(sender, claims["macp_scopes"])
	if err != nil {
		return access.Caller{}, time.Time{}, reject(err.Error())
	}
	return caller, exp.Add(j.leeway), nil
}

// ScopedCaller is the caller sender with the capabilities of a macp_scopes
// claim (its raw JSON; nil or null when the token has none). Without one the
// caller may send and start sessions and holds no registry, policy,
// observer or admin right. The admin console's login maps ID tokens with it
// too, so a token means the same to the API and to the console.
func ScopedCaller(sender string, scopes json.RawMessage) (access.Caller, error) {
	if err := checkSender(sender); err != nil {
		return access.Caller{}, err
	}
	if len(scopes) == 0 || string(scopes) == "null" {
		return access.Caller{ID: sender, CanStartSessions: true}, nil
	}
	var sc macpScopes
	if len(scopes) > maxClaimBytes || json.Unmarshal(scopes, &sc) != nil {
		return access.Caller{}, errors.New("malformed macp_scopes claim")
	}
	e := TokenEntry{Token: "-", Sender: sender, AllowedModes: sc.AllowedModes, CanStartSessions: sc.CanStartSessions,
		MaxOpenSessions: sc.MaxOpenSessions, CanManageModeRegistry: sc.CanManageModeRegistry, IsObserver: sc.IsObserver,
		CanManagePolicies: sc.CanManagePolicies, IsAdmin: sc.IsAdmin}
	if err := checkEntry(e); err != nil {
		return access.Caller{}, fmt.Errorf("malformed macp_scopes claim: %w", err)
	}
	return e.Caller(), nil
}

// numericDate reads a JWT NumericDate (seconds since the epoch).
func numericDate(raw json.RawMessage) (time.Time, bool) {
	var f float64
	if len(raw) == 0 || json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// jwtReason turns a verification error into the reason the caller sees.
func jwtReason(err error, audience string) string {
	msg := err.Error()
	switch {
	case errors.Is(err, errNoKey) || strings.Contains(msg, errNoKey.Error()):
		return "the JWT is signed with a key the issuer does not publish"
	case strings.Contains(msg, errSignature.Error()):
		return "the JWT's signature does not verify"
	case strings.Contains(msg, "different provider"):
		return "the JWT comes from another issuer"
	case strings.Contains(msg, "expected audience"):
		return fmt.Sprintf("the JWT is not meant for this runtime (audience %q)", audience)
	case strings.Contains(msg, "malformed jwt"), strings.Contains(msg, "malformed JWT"):
		return "malformed JWT, or a signing algorithm other than RS256 or ES256 (or HS256 with a configured secret)"
	case strings.Contains(msg, "could not be fetched"):
		return "the issuer's keys are unavailable"
	default:
		return "the JWT is not accepted"
	}
}
