package rpc

import (
	"log/slog"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/policy"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// Options configure the API handler.
type Options struct {
	Kernel        *kernel.Kernel
	Modes         *modes.Registry
	Policies      *policy.Registry
	PolicyEngine  *policy.Engine
	Authenticator auth.Authenticator
	Logger        *slog.Logger
	// Version is reported in Initialize and the manifest.
	Version string
	// MaxPayloadBytes is the envelope payload cap; requests are read up to
	// this size plus room for the rest of the message, so that an oversized
	// payload is answered with PAYLOAD_TOO_LARGE in the Ack.
	MaxPayloadBytes int
	// CORS is the browser access policy; the zero value allows every
	// origin. It must be valid (CORS.Validate).
	CORS CORS
	// Done, when closed, ends every open stream (server shutdown).
	Done <-chan struct{}
	// Audit records governance actions; nil records nothing and
	// ListAuditRecords answers Unavailable.
	Audit *audit.Log
	// AuthRecheck is how often open streams re-resolve their credentials
	// (0: auth.DefaultRecheck).
	AuthRecheck time.Duration
	// Interceptors wrap every call of both services, outside
	// authentication (tracing, metrics), first one outermost.
	Interceptors []connect.Interceptor
	// Readiness makes health report NOT_SERVING while writes are refused;
	// nil reports SERVING always.
	Readiness Readiness
}

// compressMinBytes is the smallest response worth compressing.
const compressMinBytes = 4096

// requestOverhead is the room left for the envelope around its payload.
const requestOverhead = 64 << 10

// NewHandler returns the http.Handler serving the MACP API, gRPC health and
// reflection on one mux, wrapped in CORS.
func NewHandler(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	svc := &service{kernel: opts.Kernel, modes: opts.Modes, policies: opts.Policies, log: opts.Logger, version: opts.Version, done: opts.Done}
	authn := auth.NewInterceptor(opts.Authenticator, auth.InterceptorOptions{Recheck: opts.AuthRecheck, Public: IsPublic})
	// Tracing and metrics outermost, then authentication, then the audit.
	chain := append(slices.Clone(opts.Interceptors), authn)
	if opts.Audit != nil {
		chain = append(chain, opts.Audit.Interceptor())
	}
	interceptors := connect.WithInterceptors(chain...)
	mux := http.NewServeMux()
	path, h := macpv1connect.NewMACPRuntimeServiceHandler(svc,
		interceptors,
		connect.WithReadMaxBytes(opts.MaxPayloadBytes+requestOverhead),
		// Compressing small messages costs more CPU than it saves bytes.
		connect.WithCompressMinBytes(compressMinBytes),
	)
	mux.Handle(path, h)
	mux.HandleFunc(ManifestPath, svc.serveManifest)
	mux.Handle(adminv1connect.NewAdminServiceHandler(&admin{kernel: opts.Kernel, modes: opts.Modes, policyEngine: opts.PolicyEngine, log: opts.Logger, done: opts.Done, audit: opts.Audit},
		interceptors,
		connect.WithReadMaxBytes(modes.DefaultMaxModuleBytes+requestOverhead),
		connect.WithCompressMinBytes(compressMinBytes)))
	mux.Handle(grpchealth.NewHandler(newHealthChecker(opts.Readiness, macpv1connect.MACPRuntimeServiceName)))
	reflector := grpcreflect.NewStaticReflector(macpv1connect.MACPRuntimeServiceName, adminv1connect.AdminServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	return withCORS(withFlushHolder(mux), opts.CORS)
}
