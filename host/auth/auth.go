// Package auth derives the identity of every caller from its credentials.
// The MACP sender of an envelope is this identity, never a value the client
// chose. It holds the resolvers (static bearer tokens, JWT/OIDC, client
// certificates, and dev auth), the chain that picks one per request, and a
// connect interceptor that records the outcome in the request context and
// ends open streams whose credentials stop resolving. Each handler decides
// what a missing identity means for its call.
package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/concord-macp/concord/host/access"
)

// ErrNoCredentials reports a request that presented no credentials.
var ErrNoCredentials = errors.New("no credentials presented")

// Rejected is the error for credentials that were presented and refused.
// Its message is the one every call answers with (UNAUTHENTICATED).
type Rejected struct {
	// Reason says why, without echoing the credential.
	Reason string
}

func (r *Rejected) Error() string { return "credentials refused: " + r.Reason }

// Is makes errors.Is(err, ErrRejected) true for every rejection.
func (r *Rejected) Is(target error) bool { return target == ErrRejected }

// ErrRejected matches every *Rejected with errors.Is.
var ErrRejected = errors.New("credentials refused")

func reject(reason string) error { return &Rejected{Reason: reason} }

// Authenticator turns request headers into a Caller. The context carries
// the connection's TLS state when the server put it there (WithTLSState).
type Authenticator interface {
	Authenticate(ctx context.Context, h http.Header) (access.Caller, error)
}

// Dev is the development authenticator: the bearer token is the sender id
// ("Authorization: Bearer alice" is alice), allowed to start sessions and
// manage registries but not to observe other agents' sessions. It must
// only serve loopback addresses, and never beside another resolver.
type Dev struct{}

// Authenticate implements Authenticator.
func (Dev) Authenticate(_ context.Context, h http.Header) (access.Caller, error) {
	token, err := credential(h)
	if err != nil {
		return access.Caller{}, err
	}
	if token == "" {
		return access.Caller{}, ErrNoCredentials
	}
	if err := checkSender(token); err != nil {
		return access.Caller{}, errMalformed
	}
	return access.Caller{ID: token, CanStartSessions: true, CanManageModes: true, CanManagePolicies: true, Admin: true}, nil
}

// Deny authenticates nobody: every credential is refused. It is what a
// server runs with when no authentication is configured.
type Deny struct{}

// Authenticate implements Authenticator.
func (Deny) Authenticate(_ context.Context, h http.Header) (access.Caller, error) {
	token, err := credential(h)
	if err != nil {
		return access.Caller{}, err
	}
	if token == "" {
		return access.Caller{}, ErrNoCredentials
	}
	return access.Caller{}, reject("no authentication is configured on this server (see concord serve -h)")
}

// MaxSenderLen bounds a sender id derived from any credential.
const MaxSenderLen = 256

// checkSender refuses sender ids that are empty, too long, or carry
// whitespace or control characters.
func checkSender(id string) error {
	if id == "" || len(id) > MaxSenderLen {
		return errors.New("sender id must be 1 to 256 bytes")
	}
	if strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("sender id contains whitespace or control characters")
	}
	return nil
}

type ctxKey struct{}

type result struct {
	id  access.Caller
	err error
}

// FromContext returns the caller's identity, or the reason it has none.
func FromContext(ctx context.Context) (access.Caller, error) {
	r, ok := ctx.Value(ctxKey{}).(result)
	if !ok {
		return access.Caller{}, ErrNoCredentials
	}
	return r.id, r.err
}

// WithResult returns ctx carrying an authentication outcome.
func WithResult(ctx context.Context, id access.Caller, err error) context.Context {
	return context.WithValue(ctx, ctxKey{}, result{id, err})
}
