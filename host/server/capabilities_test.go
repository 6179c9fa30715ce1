package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// capabilityCheck exercises the behaviour one Initialize capability flag
// stands for and reports whether the server has it. A check that claims the
// behaviour must fail the test when the behaviour is missing.
type capabilityCheck func(t *testing.T, srv *servertest.Server) bool

// capabilityChecks has one entry per boolean flag of macpv1.Capabilities,
// by its path of proto field names.
var capabilityChecks = map[string]capabilityCheck{
	"sessions.stream":                 streamsSessions,
	"sessions.list_sessions":          listsSessions,
	"sessions.watch_sessions":         watchesSessions,
	"cancellation.cancel_session":     cancelsSessions,
	"progress.progress":               relaysProgress,
	"manifest.get_manifest":           servesManifest,
	"mode_registry.list_modes":        listsModes,
	"mode_registry.list_changed":      announcesModeChanges,
	"roots.list_roots":                listsRoots,
	"roots.list_changed":              changesRoots,
	"policy_registry.register_policy": registersPolicies,
	"policy_registry.list_policies":   listsPolicies,
	"policy_registry.list_changed":    announcesPolicyChanges,
}

// TestCapabilitiesAreHonest checks every capability flag Initialize reports
// against what the server does: a flag is true exactly when the behaviour
// works. A flag added to the protocol without a check here fails the test.
func TestCapabilitiesAreHonest(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	res, err := srv.Client(servertest.GRPC, "").Initialize(context.Background(),
		connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
	if err != nil {
		t.Fatal(err)
	}
	caps := res.Msg.GetCapabilities()
	if f := caps.GetExperimental().GetFeatures(); len(f) != 0 {
		t.Errorf("experimental features %v advertised; each needs a behaviour check here", f)
	}
	flags := capabilityFlags(caps.ProtoReflect(), "")
	for path := range capabilityChecks {
		if _, ok := flags[path]; !ok {
			t.Errorf("check for %s, which is no capability flag", path)
		}
	}
	for path, advertised := range flags {
		t.Run(path, func(t *testing.T) {
			check, ok := capabilityChecks[path]
			if !ok {
				t.Fatalf("capability %s (advertised %v) has no behaviour check", path, advertised)
			}
			if does := check(t, srv); does != advertised {
				t.Fatalf("%s advertised %v, but the server's behaviour says %v", path, advertised, does)
			}
		})
	}
}

// capabilityFlags returns every boolean field under the Capabilities
// message, set or not, by path ("sessions.stream"). Experimental features
// are a map and checked apart.
func capabilityFlags(m protoreflect.Message, prefix string) map[string]bool {
	out := map[string]bool{}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		path := prefix + string(f.Name())
		switch {
		case f.Kind() == protoreflect.BoolKind:
			out[path] = m.Get(f).Bool()
		case f.Kind() == protoreflect.MessageKind && !f.IsMap() && !f.IsList() && f.Name() != "experimental":
			// An unset sub-message reads as an empty one: all false.
			for k, v := range capabilityFlags(m.Get(f).Message(), path+".") {
				out[k] = v
			}
		}
	}
	return out
}

func capCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openDecision starts a Decision session initiated by coordinator.
func openDecision(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	sid := servertest.NewSessionID()
	send(t, srv.Client(servertest.GRPC, ""), sid, decisionScript()[0])
	return sid
}

func streamsSessions(t *testing.T, srv *servertest.Server) bool {
	stream := srv.Client(servertest.GRPC, "coordinator").StreamSession(capCtx(t))
	sid := servertest.NewSessionID()
	env := servertest.Envelope(decisionMode, "SessionStart", "m0", sid, start())
	if err := stream.Send(&macpv1.StreamSessionRequest{Envelope: env}); err != nil {
		t.Fatalf("StreamSession send: %v", err)
	}
	res, err := stream.Receive()
	if err != nil || res.GetEnvelope().GetMessageId() != "m0" || res.GetEnvelope().GetSessionId() != sid {
		t.Fatalf("StreamSession did not stream the accepted SessionStart back: %v %v", res, err)
	}
	_ = stream.CloseRequest()
	return true
}

func listsSessions(t *testing.T, srv *servertest.Server) bool {
	sid := openDecision(t, srv)
	res, err := srv.Client(servertest.GRPC, "coordinator").ListSessions(capCtx(t), connect.NewRequest(&macpv1.ListSessionsRequest{PageSize: 1000}))
	if err != nil {
		t.Fatalf("ListSessions: %v", err)
	}
	for _, md := range res.Msg.GetSessions() {
		if md.GetSessionId() == sid {
			return true
		}
	}
	t.Fatalf("ListSessions lacks the caller's session %s", sid)
	return false
}

func watchesSessions(t *testing.T, srv *servertest.Server) bool {
	first := openDecision(t, srv)
	watch, err := srv.Client(servertest.GRPC, "coordinator").WatchSessions(capCtx(t), connect.NewRequest(&macpv1.WatchSessionsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	// The listing on connect includes the first session; once it has come,
	// the watch is live and sees the second one created.
	second := ""
	for watch.Receive() {
		ev := watch.Msg().GetEvent()
		switch {
		case ev.GetSession().GetSessionId() == first && second == "":
			second = openDecision(t, srv)
		case ev.GetSession().GetSessionId() == second && ev.GetEventType() == macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED:
			return true
		}
	}
	t.Fatalf("WatchSessions ended before the second session's CREATED: %v", watch.Err())
	return false
}

func cancelsSessions(t *testing.T, srv *servertest.Server) bool {
	sid := openDecision(t, srv)
	c := srv.Client(servertest.GRPC, "coordinator")
	res, err := c.CancelSession(capCtx(t), connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid, Reason: "capability check"}))
	if err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("CancelSession: %v %v", res, err)
	}
	md, err := c.GetSession(capCtx(t), connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
	if err != nil || md.Msg.GetMetadata().GetState() != macpv1.SessionState_SESSION_STATE_CANCELLED {
		t.Fatalf("after CancelSession the session is %v (%v)", md, err)
	}
	return true
}

// relaysProgress sends an ambient Progress and expects it on WatchSignals.
// WatchSignals has no greeting (and a connect-go client's call returns only
// with the first message), so the Progress is sent again and again until
// the watch, subscribed at some point, delivers one.
func relaysProgress(t *testing.T, srv *servertest.Server) bool {
	ctx := capCtx(t)
	sendCtx, stop := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; sendCtx.Err() == nil; i++ {
			env := servertest.Envelope("", "Progress", "progress-"+itoa(i), "", &macpv1.ProgressPayload{ProgressToken: "cap", Progress: 1, Total: 2})
			res, err := srv.Client(servertest.GRPC, "alice").Send(sendCtx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
			if err != nil || !res.Msg.GetAck().GetOk() {
				if sendCtx.Err() == nil {
					t.Errorf("Progress refused: %v %v", res, err)
				}
				return
			}
			select {
			case <-sendCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	watch, err := srv.Client(servertest.GRPC, "alice").WatchSignals(ctx, connect.NewRequest(&macpv1.WatchSignalsRequest{}))
	received := err == nil && watch.Receive()
	stop()
	<-sent
	if !received {
		t.Fatalf("WatchSignals delivered nothing: %v", err)
	}
	if got := watch.Msg().GetEnvelope(); got.GetMessageType() != "Progress" || got.GetSender() != "alice" {
		t.Fatalf("WatchSignals delivered %v, want alice's Progress", got)
	}
	return true
}

func servesManifest(t *testing.T, srv *servertest.Server) bool {
	res, err := srv.Client(servertest.GRPC, "").GetManifest(capCtx(t), connect.NewRequest(&macpv1.GetManifestRequest{}))
	if err != nil || res.Msg.GetManifest().GetAgentId() == "" || len(res.Msg.GetManifest().GetSupportedModes()) == 0 {
		t.Fatalf("GetManifest: %v %v", res, err)
	}
	return true
}

func listsModes(t *testing.T, srv *servertest.Server) bool {
	res, err := srv.Client(servertest.GRPC, "").ListModes(capCtx(t), connect.NewRequest(&macpv1.ListModesRequest{}))
	if err != nil || !hasMode(res.Msg.GetModes(), decisionMode) {
		t.Fatalf("ListModes: %v %v", res, err)
	}
	return true
}

func announcesModeChanges(t *testing.T, srv *servertest.Server) bool {
	ctx := capCtx(t)
	watch, err := srv.Client(servertest.GRPC, "").WatchModeRegistry(ctx, connect.NewRequest(&macpv1.WatchModeRegistryRequest{}))
	if err != nil || !watch.Receive() {
		t.Fatalf("WatchModeRegistry greeting: %v %v", err, watch.Err())
	}
	d := &macpv1.ModeDescriptor{Mode: "ext.capcheck.v1", ModeVersion: "1.0.0", MessageTypes: []string{"Note", "Commitment"}}
	if res := registerExtMode(t, srv, d); !res.GetOk() {
		t.Fatalf("RegisterExtMode: %s", res.GetError())
	}
	if !watch.Receive() || watch.Msg().GetChange().GetRegistry() != "modes" {
		t.Fatalf("no change hint after a registration: %v", watch.Err())
	}
	return true
}

func listsRoots(t *testing.T, srv *servertest.Server) bool {
	res, err := srv.Client(servertest.GRPC, "").ListRoots(capCtx(t), connect.NewRequest(&macpv1.ListRootsRequest{}))
	if err != nil {
		t.Fatalf("ListRoots: %v", err)
	}
	if len(res.Msg.GetRoots()) != 0 {
		t.Fatalf("ListRoots = %v; Concord exposes no roots", res.Msg.GetRoots())
	}
	return true
}

// changesRoots reports whether the roots can change. They cannot: Concord
// exposes none, no call or configuration adds one (listsRoots checks that
// the list is empty), so WatchRoots has nothing to announce after its
// greeting and the flag must be false.
func changesRoots(t *testing.T, srv *servertest.Server) bool {
	res, err := srv.Client(servertest.GRPC, "").ListRoots(capCtx(t), connect.NewRequest(&macpv1.ListRootsRequest{}))
	if err != nil || len(res.Msg.GetRoots()) != 0 {
		t.Fatalf("ListRoots: %v %v", res, err)
	}
	return false
}

func registersPolicies(t *testing.T, srv *servertest.Server) bool {
	res, err := srv.Client(servertest.GRPC, "operator").RegisterPolicy(capCtx(t),
		connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.capcheck.register")}))
	if err != nil || !res.Msg.GetOk() {
		t.Fatalf("RegisterPolicy: %v %v", res, err)
	}
	return true
}

func listsPolicies(t *testing.T, srv *servertest.Server) bool {
	res, err := srv.Client(servertest.GRPC, "operator").ListPolicies(capCtx(t), connect.NewRequest(&macpv1.ListPoliciesRequest{}))
	if err != nil {
		t.Fatalf("ListPolicies: %v", err)
	}
	for _, d := range res.Msg.GetDescriptors() {
		if d.GetPolicyId() == "policy.default" {
			return true
		}
	}
	t.Fatalf("ListPolicies lacks policy.default: %v", res.Msg.GetDescriptors())
	return false
}

func announcesPolicyChanges(t *testing.T, srv *servertest.Server) bool {
	ctx := capCtx(t)
	op := srv.Client(servertest.GRPC, "operator")
	watch, err := op.WatchPolicies(ctx, connect.NewRequest(&macpv1.WatchPoliciesRequest{}))
	if err != nil || !watch.Receive() {
		t.Fatalf("WatchPolicies greeting: %v %v", err, watch.Err())
	}
	res, err := op.RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.capcheck.watch")}))
	if err != nil || !res.Msg.GetOk() {
		t.Fatalf("RegisterPolicy: %v %v", res, err)
	}
	if !watch.Receive() {
		t.Fatalf("no WatchPolicies message after a registration: %v", watch.Err())
	}
	for _, d := range watch.Msg().GetDescriptors() {
		if strings.HasPrefix(d.GetPolicyId(), "policy.capcheck.watch") {
			return true
		}
	}
	t.Fatalf("WatchPolicies after a registration lacks it: %v", watch.Msg().GetDescriptors())
	return false
}
