// Package auth derives the identity of every caller from its credentials.
// The MACP sender of an envelope is this identity, never a value the client
// chose. The package holds the authenticators and a connect interceptor that
// records the outcome in the request context; each handler decides what a
// missing identity means for its call.
package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/access"
)

// ErrNoCredentials reports a request that presented no credentials.
var ErrNoCredentials = errors.New("no credentials presented")

// Authenticator turns request headers into a Caller.
type Authenticator interface {
	Authenticate(ctx context.Context, h http.Header) (access.Caller, error)
}

// Dev is the development authenticator: the bearer token is the sender id
// ("Authorization: Bearer alice" is alice), allowed to manage registries
// but not to observe other agents' sessions. It must
// only serve loopback addresses.
type Dev struct{}

// maxSenderLen bounds a dev identity.
const maxSenderLen = 256

// Authenticate implements Authenticator.
func (Dev) Authenticate(_ context.Context, h http.Header) (access.Caller, error) {
	if h.Get("X-Macp-Agent-Id") != "" {
		return access.Caller{}, errors.New("the x-macp-agent-id header is not an accepted credential")
	}
	token := bearer(h)
	if token == "" {
		return access.Caller{}, ErrNoCredentials
	}
	if len(token) > maxSenderLen || strings.ContainsAny(token, " \t\r\n") {
		return access.Caller{}, errors.New("malformed bearer token")
	}
	return access.Caller{ID: token, CanStartSessions: true, CanManageModes: true, CanManagePolicies: true, Admin: true}, nil
}

// bearer returns the credential of a request: an Authorization bearer token
// or, as MACP SDKs also send, an x-macp-token header.
func bearer(h http.Header) string {
	if v := h.Get("Authorization"); v != "" {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
		return ""
	}
	return strings.TrimSpace(h.Get("X-Macp-Token"))
}

// Deny authenticates nobody: every credential is refused. It is what a
// server runs with when no authentication is configured.
type Deny struct{}

// Authenticate implements Authenticator.
func (Deny) Authenticate(context.Context, http.Header) (access.Caller, error) {
	return access.Caller{}, errors.New("no authentication is configured on this server (start it with --dev on loopback)")
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

// NewInterceptor returns a connect interceptor that authenticates every
// unary and streaming call with a and records the outcome in the context.
// It rejects nothing itself.
func NewInterceptor(a Authenticator) connect.Interceptor { return interceptor{a} }

type interceptor struct{ a Authenticator }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		id, err := i.a.Authenticate(ctx, req.Header())
		return next(WithResult(ctx, id, err), req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		id, err := i.a.Authenticate(ctx, conn.RequestHeader())
		return next(WithResult(ctx, id, err), conn)
	}
}

// Bearer returns a client-side interceptor that presents identity as a
// bearer token ("Authorization: Bearer <identity>") on every unary and
// streaming call; an empty identity presents nothing.
func Bearer(identity string) connect.Interceptor { return bearerClient(identity) }

type bearerClient string

func (b bearerClient) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" && req.Spec().IsClient {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearerClient) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if b != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		}
		return conn
	}
}

func (b bearerClient) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
