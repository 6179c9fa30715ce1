package rpc

import (
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/rs/cors"

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
	// AllowedOrigins for browsers; empty allows every origin (credentials
	// travel in headers, never cookies).
	AllowedOrigins []string
	// Done, when closed, ends every open stream (server shutdown).
	Done <-chan struct{}
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
	svc := &service{kernel: opts.Kernel, modes: opts.Modes, policies: opts.Policies, version: opts.Version, done: opts.Done}
	mux := http.NewServeMux()
	path, h := macpv1connect.NewMACPRuntimeServiceHandler(svc,
		connect.WithInterceptors(auth.NewInterceptor(opts.Authenticator)),
		connect.WithReadMaxBytes(opts.MaxPayloadBytes+requestOverhead),
		// Compressing small messages costs more CPU than it saves bytes.
		connect.WithCompressMinBytes(compressMinBytes),
	)
	mux.Handle(path, h)
	mux.HandleFunc(ManifestPath, svc.serveManifest)
	mux.Handle(adminv1connect.NewAdminServiceHandler(&admin{kernel: opts.Kernel, modes: opts.Modes, policyEngine: opts.PolicyEngine},
		connect.WithInterceptors(auth.NewInterceptor(opts.Authenticator)),
		connect.WithReadMaxBytes(modes.DefaultMaxModuleBytes+requestOverhead),
		connect.WithCompressMinBytes(compressMinBytes)))
	mux.Handle(grpchealth.NewHandler(newHealthChecker(opts.Readiness, macpv1connect.MACPRuntimeServiceName)))
	reflector := grpcreflect.NewStaticReflector(macpv1connect.MACPRuntimeServiceName, adminv1connect.AdminServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	return withCORS(withFlushHolder(mux), opts.AllowedOrigins)
}

func withCORS(h http.Handler, origins []string) http.Handler {
	c := cors.New(cors.Options{
		AllowedOrigins:  origins,
		AllowOriginFunc: func(string) bool { return len(origins) == 0 },
		AllowedMethods:  connectcors.AllowedMethods(),
		AllowedHeaders:  append(connectcors.AllowedHeaders(), "Authorization", "X-Macp-Token"),
		ExposedHeaders:  append(connectcors.ExposedHeaders(), CodeHeader, DetailsHeader),
		MaxAge:          7200,
	})
	return c.Handler(h)
}
