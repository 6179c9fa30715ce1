package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/access"
)

// ExpiringAuthenticator is an Authenticator whose credentials can carry
// their own end of validity (a JWT's exp, a client certificate's NotAfter).
type ExpiringAuthenticator interface {
	Authenticator
	// AuthenticateUntil is Authenticate plus the moment the identity stops
	// resolving by itself; the zero time means no such moment.
	AuthenticateUntil(ctx context.Context, h http.Header) (access.Caller, time.Time, error)
}

// DefaultRecheck is how often an open stream's credentials are resolved
// again when InterceptorOptions.Recheck is zero.
const DefaultRecheck = 10 * time.Second

// InterceptorOptions configure NewInterceptor.
type InterceptorOptions struct {
	// Recheck is how often an open stream resolves its credentials again;
	// the stream ends UNAUTHENTICATED once they no longer resolve to the
	// same caller. Zero means DefaultRecheck; negative never re-checks
	// (an expiry is still enforced).
	Recheck time.Duration
	// Public reports the procedures that need no identity: their streams
	// are never re-checked, since a refused credential would not stop the
	// client from calling them again.
	Public func(procedure string) bool
}

// ErrRevoked ends a stream whose credentials stopped resolving.
var ErrRevoked = reject("the credentials of this stream were revoked, expired or changed")

// NewInterceptor returns a connect interceptor that authenticates every
// unary and streaming call with a and records the outcome in the context.
// It rejects no call itself; it ends a stream whose caller's credentials
// no longer resolve (revoked token, expired JWT or certificate, changed
// capabilities), within opts.Recheck, by cancelling the handler's context
// and answering UNAUTHENTICATED.
func NewInterceptor(a Authenticator, opts InterceptorOptions) connect.Interceptor {
	if opts.Recheck == 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.Public == nil {
		opts.Public = func(string) bool { return false }
	}
	return interceptor{a: a, opts: opts}
}

type interceptor struct {
	a    Authenticator
	opts InterceptorOptions
}

func (i interceptor) authenticate(ctx context.Context, h http.Header) (access.Caller, time.Time, error) {
	if e, ok := i.a.(ExpiringAuthenticator); ok {
		return e.AuthenticateUntil(ctx, h)
	}
	c, err := i.a.Authenticate(ctx, h)
	return c, time.Time{}, err
}

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		id, _, err := i.authenticate(ctx, req.Header())
		return next(WithResult(ctx, id, err), req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		h := conn.RequestHeader()
		id, until, err := i.authenticate(ctx, h)
		ctx = WithResult(ctx, id, err)
		if err != nil || id.Anonymous() || i.opts.Public(conn.Spec().Procedure) {
			return next(ctx, conn)
		}
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			i.watch(ctx, cancel, h, id, until)
		}()
		herr := next(ctx, conn)
		cancel(nil)
		<-watching
		if errors.Is(context.Cause(ctx), ErrRevoked) {
			return connect.NewError(connect.CodeUnauthenticated, ErrRevoked)
		}
		return herr
	}
}

// watch re-resolves h every Recheck and at the credential's own expiry
// until ctx ends, and cancels with ErrRevoked once it no longer resolves
// to caller.
func (i interceptor) watch(ctx context.Context, cancel context.CancelCauseFunc, h http.Header, caller access.Caller, until time.Time) {
	var tick <-chan time.Time
	if i.opts.Recheck > 0 {
		t := time.NewTicker(i.opts.Recheck)
		defer t.Stop()
		tick = t.C
	}
	// The resolver keeps the connection's TLS state in ctx; the check must
	// not end with the handler's cancellation, only with its own deadline.
	base := context.WithoutCancel(ctx)
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		expiry.Stop()
		var expired <-chan time.Time
		if !until.IsZero() {
			expiry.Reset(time.Until(until))
			expired = expiry.C
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-expired:
		}
		cctx, done := context.WithTimeout(base, 10*time.Second)
		now, nowUntil, err := i.authenticate(cctx, h)
		done()
		if err != nil || !SameCaller(now, caller) {
			cancel(ErrRevoked)
			return
		}
		until = nowUntil
	}
}

// SameCaller reports whether a and b are the same identity with the same
// capabilities.
func SameCaller(a, b access.Caller) bool {
	return a.ID == b.ID && slices.Equal(a.AllowedModes, b.AllowedModes) &&
		a.CanStartSessions == b.CanStartSessions && a.MaxOpenSessions == b.MaxOpenSessions &&
		a.Observer == b.Observer && a.CanManageModes == b.CanManageModes &&
		a.CanManagePolicies == b.CanManagePolicies && a.Admin == b.Admin
}

// Bearer returns a client-side interceptor that presents token as a bearer
// token ("Authorization: Bearer <token>") on every unary and streaming
// call; an empty token presents nothing. With dev auth the token is the
// identity itself.
func Bearer(token string) connect.Interceptor { return bearerClient(token) }

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
