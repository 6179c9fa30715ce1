// Package rpc serves the MACP runtime API (macp.v1.MACPRuntimeService) over
// one http.Handler that speaks gRPC, gRPC-web and the Connect protocol, with
// CORS for browsers, gRPC health checking and server reflection.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// RuntimeID is the agent_id of Concord's own manifest.
const RuntimeID = "concord"

// EnvelopeContentType is the media type of a protobuf MACP envelope.
const EnvelopeContentType = "application/macp-envelope+proto"

// service implements macpv1connect.MACPRuntimeServiceHandler. Calls that a
// later version implements answer Unimplemented through the embedded
// handler.
type service struct {
	macpv1connect.UnimplementedMACPRuntimeServiceHandler
	kernel   *kernel.Kernel
	modes    *modes.Registry
	policies *policy.Registry
	log      *slog.Logger
	version  string
	// done closes when the server shuts down: long-lived streams end then,
	// so that shutdown does not wait for clients to hang up.
	done <-chan struct{}
}

var _ macpv1connect.MACPRuntimeServiceHandler = (*service)(nil)

// Initialize negotiates the protocol version and advertises capabilities.
// It needs no credentials.
func (s *service) Initialize(_ context.Context, req *connect.Request[macpv1.InitializeRequest]) (*connect.Response[macpv1.InitializeResponse], error) {
	versions := req.Msg.GetSupportedProtocolVersions()
	if len(versions) == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("supported_protocol_versions must list at least one version"))
	}
	if !slices.Contains(versions, kernel.ProtocolVersion) {
		return nil, withMACPCode(connect.NewError(connect.CodeFailedPrecondition,
			errors.New("UNSUPPORTED_PROTOCOL_VERSION: this runtime speaks MACP "+kernel.ProtocolVersion)),
			macperr.UnsupportedProtocolVersion)
	}
	return connect.NewResponse(&macpv1.InitializeResponse{
		SelectedProtocolVersion: kernel.ProtocolVersion,
		RuntimeInfo: &macpv1.RuntimeInfo{
			Name:        RuntimeID,
			Title:       "Concord",
			Version:     s.version,
			Description: "MACP runtime whose modes are WebAssembly modules and whose log is durable.",
		},
		Capabilities:   s.capabilities(),
		SupportedModes: s.modes.Names(),
		Instructions:   "Send a SessionStart to open a session; authenticate with a bearer token on every session call.",
	}), nil
}

// capabilities advertises exactly what this server does, flag by flag
// (host/server/capabilities_test.go checks each against behaviour). The
// roots are fixed (there are none), so roots.list_changed is false.
func (s *service) capabilities() *macpv1.Capabilities {
	return &macpv1.Capabilities{
		Sessions:       &macpv1.SessionsCapability{Stream: true, ListSessions: true, WatchSessions: true},
		Cancellation:   &macpv1.CancellationCapability{CancelSession: true},
		Progress:       &macpv1.ProgressCapability{Progress: true},
		Manifest:       &macpv1.ManifestCapability{GetManifest: true},
		ModeRegistry:   &macpv1.ModeRegistryCapability{ListModes: true, ListChanged: true},
		Roots:          &macpv1.RootsCapability{ListRoots: true},
		PolicyRegistry: &macpv1.PolicyRegistryCapability{RegisterPolicy: true, ListPolicies: true, ListChanged: true},
	}
}

// Send runs one envelope through the kernel. Every outcome, including a
// failed authentication, is reported in the Ack.
func (s *service) Send(ctx context.Context, req *connect.Request[macpv1.SendRequest]) (*connect.Response[macpv1.SendResponse], error) {
	env := req.Msg.GetEnvelope()
	if env == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("SendRequest.envelope is required"))
	}
	return connect.NewResponse(&macpv1.SendResponse{Ack: s.send(ctx, env)}), nil
}

// send runs env through the kernel as the request's caller.
func (s *service) send(ctx context.Context, env *macpv1.Envelope) *macpv1.Ack {
	c, err := auth.FromContext(ctx)
	if err != nil {
		return s.kernel.SendUnauthenticated(ctx, err, env)
	}
	return s.kernel.Send(ctx, c, env)
}

// GetSession returns a session's metadata to its initiator, participants
// and observers.
func (s *service) GetSession(ctx context.Context, req *connect.Request[macpv1.GetSessionRequest]) (*connect.Response[macpv1.GetSessionResponse], error) {
	c, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	sid := req.Msg.GetSessionId()
	if sid == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	md, err := s.kernel.As(c).Session(ctx, sid)
	if err != nil {
		return nil, statusError(s.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&macpv1.GetSessionResponse{Metadata: md}), nil
}

// GetManifest returns this runtime's manifest. It needs no credentials.
func (s *service) GetManifest(_ context.Context, req *connect.Request[macpv1.GetManifestRequest]) (*connect.Response[macpv1.GetManifestResponse], error) {
	if a := req.Msg.GetAgentId(); a != "" && a != RuntimeID {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no manifest for agent "+a+"; this runtime is "+RuntimeID))
	}
	return connect.NewResponse(&macpv1.GetManifestResponse{Manifest: s.manifest()}), nil
}

// manifest is the runtime's own AgentManifest (RFC-MACP-0005 §2.3).
func (s *service) manifest() *macpv1.AgentManifest {
	return &macpv1.AgentManifest{
		AgentId:            RuntimeID,
		Title:              "Concord MACP runtime",
		Description:        "Runs MACP coordination sessions; every mode is a WebAssembly module, every accepted message is durable.",
		SupportedModes:     s.modes.Names(),
		InputContentTypes:  []string{EnvelopeContentType},
		OutputContentTypes: []string{EnvelopeContentType},
		Metadata:           map[string]string{"version": s.version},
	}
}

// ManifestPath is where the runtime publishes its manifest over plain HTTP.
const ManifestPath = "/.well-known/macp.json"

// manifestContentType is the media type of a published manifest.
const manifestContentType = "application/macp-manifest+json"

// serveManifest answers GET /.well-known/macp.json with the manifest as
// JSON with the wire's field names. It needs no credentials.
func (s *service) serveManifest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s.manifest())
	if err != nil {
		http.Error(w, "cannot render the manifest", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", manifestContentType)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// ListModes lists the standards-track modes. It needs no credentials.
func (s *service) ListModes(context.Context, *connect.Request[macpv1.ListModesRequest]) (*connect.Response[macpv1.ListModesResponse], error) {
	return connect.NewResponse(&macpv1.ListModesResponse{Modes: s.modes.Standard()}), nil
}

// ListExtModes lists the extension modes. It needs no credentials.
func (s *service) ListExtModes(context.Context, *connect.Request[macpv1.ListExtModesRequest]) (*connect.Response[macpv1.ListExtModesResponse], error) {
	return connect.NewResponse(&macpv1.ListExtModesResponse{Modes: s.modes.Extensions()}), nil
}

// authenticated returns the caller, or an UNAUTHENTICATED status that says
// why it has no identity.
func authenticated(ctx context.Context) (access.Caller, error) {
	c, err := auth.FromContext(ctx)
	if err != nil {
		return access.Caller{}, withMACPCode(connect.NewError(connect.CodeUnauthenticated, err), macperr.Unauthenticated)
	}
	return c, nil
}

// administrator returns the caller if it may use the AdminService.
func administrator(ctx context.Context) (access.Caller, error) {
	return require(ctx, func(c access.Caller) bool { return c.Admin }, "is not an administrator of this server")
}

// require returns the authenticated caller if it holds a capability, and a
// PERMISSION_DENIED status saying what it lacks otherwise.
func require(ctx context.Context, holds func(access.Caller) bool, lacks string) (access.Caller, error) {
	c, err := authenticated(ctx)
	if err != nil {
		return c, err
	}
	if !holds(c) {
		return c, withMACPCode(connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%.64q %s", c.ID, lacks)), macperr.Forbidden)
	}
	return c, nil
}
