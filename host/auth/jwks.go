package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on key sets.
const (
	maxJWKSBytes   = 1 << 20
	maxJWKSKeys    = 64
	minRSABits     = 2048
	jwksFetchLimit = 10 * time.Second
)

var (
	errSignature = errors.New("no key of the issuer verifies the signature")
	errNoKey     = errors.New("the token names a key the issuer does not publish")
)

// keySet verifies JWT signatures for go-oidc (it implements oidc.KeySet):
// a fixed set of keys, or a remote JWKS cached for a TTL and fetched again
// at most once per minRefresh when a token names an unknown key id. Each
// algorithm verifies only with keys of its own type: RS256 with RSA keys,
// ES256 with P-256 keys, HS256 only with symmetric keys configured inline.
type keySet struct {
	algs       []jose.SignatureAlgorithm
	url        string
	client     *http.Client
	ttl        time.Duration
	minRefresh time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch, successful or not
	fetching  chan struct{}
	gen       atomic.Uint64 // counts successful fetches
}

// generation changes whenever a fetched key set replaces the keys.
func (k *keySet) generation() uint64 { return k.gen.Load() }

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed JWT: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a JWT has exactly one signature")
	}
	h := jws.Signatures[0].Header
	alg := jose.SignatureAlgorithm(h.Algorithm)
	keys, err := k.current(ctx, false)
	if err != nil && len(keys) == 0 {
		return nil, err
	}
	cands := usable(keys, alg, h.KeyID)
	if len(cands) == 0 && h.KeyID != "" && k.url != "" {
		// An unknown key id: the issuer may have rotated its keys.
		keys, _ = k.current(ctx, true)
		cands = usable(keys, alg, h.KeyID)
	}
	if len(cands) == 0 {
		return nil, errNoKey
	}
	for _, key := range cands {
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errSignature
}

// usable returns the keys that may verify a token of alg naming kid.
func usable(keys []jose.JSONWebKey, alg jose.SignatureAlgorithm, kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != string(alg) {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		switch pub := key.Key.(type) {
		case *rsa.PublicKey:
			if alg != jose.RS256 || pub.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey:
			if alg != jose.ES256 || pub.Curve != elliptic.P256() {
				continue
			}
		case []byte:
			if alg != jose.HS256 || len(pub) < 32 {
				continue
			}
		default:
			continue
		}
		out = append(out, key)
	}
	return out
}

// current returns the keys, fetching the remote set when it is older than
// the TTL, or when refresh is set and no fetch happened for minRefresh.
// On a failed fetch the keys fetched before stay in use.
func (k *keySet) current(ctx context.Context, refresh bool) ([]jose.JSONWebKey, error) {
	for {
		k.mu.Lock()
		if k.url == "" {
			keys := k.keys
			k.mu.Unlock()
			return keys, nil
		}
		now := k.now()
		stale := k.fetched.IsZero() || now.Sub(k.fetched) >= k.ttl
		due := (stale || refresh) && (k.attempted.IsZero() || now.Sub(k.attempted) >= k.minRefresh)
		if !due {
			keys := k.keys
			k.mu.Unlock()
			if len(keys) == 0 {
				return nil, errors.New("the issuer's key set could not be fetched")
			}
			return keys, nil
		}
		if wait := k.fetching; wait != nil {
			// Another call is fetching: wait for it, then look again.
			k.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			refresh = false
			continue
		}
		k.fetching = make(chan struct{})
		k.attempted = now
		k.mu.Unlock()

		keys, err := k.fetch(ctx)

		k.mu.Lock()
		if err == nil {
			k.keys, k.fetched = keys, k.now()
			k.gen.Add(1)
		} else {
			k.log.Warn("cannot fetch the issuer's key set; the keys fetched before stay in use", "url", k.url, "err", err)
		}
		close(k.fetching)
		k.fetching = nil
		keys = k.keys
		k.mu.Unlock()
		if len(keys) == 0 {
			return nil, fmt.Errorf("the issuer's key set could not be fetched: %w", err)
		}
		return keys, nil
	}
}

// fetch reads the remote key set.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", k.url, res.Status)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	// A remote key set never supplies symmetric keys: a published shared
	// secret is no secret.
	return parseJWKS(body, false, k.log)
}

// parseJWKS parses a JWK Set, keeping the public part of every key it
// can use and skipping the others. Symmetric keys are kept only when
// allowSecret is set (a key set configured inline by the operator).
func parseJWKS(data []byte, allowSecret bool, log *slog.Logger) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("key set has %d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	var keys []jose.JSONWebKey
	for i, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			log.Debug("key set: key skipped", "index", i, "err", err)
			continue
		}
		switch key.Key.(type) {
		case []byte:
			if !allowSecret {
				log.Warn("key set: a symmetric key is ignored (HS256 keys are accepted only in an inline key set)", "kid", key.KeyID)
				continue
			}
		default:
			if !key.Valid() {
				continue
			}
			key = key.Public()
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("key set has no usable key (RS256, ES256, or HS256 inline)")
	}
	return keys, nil
}
