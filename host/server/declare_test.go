package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// counterDescriptor is what an SDK user registers for the test counter
// mode (host/server/testdata/extmode), as register_ext_mode sends it:
// SessionStart listed among the message types, as the reference runtime's
// descriptors do.
func counterDescriptor() *macpv1.ModeDescriptor {
	return &macpv1.ModeDescriptor{
		Mode: "ext.test.counter.v1", ModeVersion: "1.0.0", Title: "test counter",
		MessageTypes:         []string{"SessionStart", "Tick", "Panic", "Trap", "Loop", "Bomb", "Big", "Commitment"},
		TerminalMessageTypes: []string{"Commitment"},
	}
}

func registerExtMode(t *testing.T, srv *servertest.Server, d *macpv1.ModeDescriptor) *macpv1.RegisterExtModeResponse {
	t.Helper()
	res, err := srv.Client(servertest.GRPC, "operator").RegisterExtMode(context.Background(),
		connect.NewRequest(&macpv1.RegisterExtModeRequest{ModeDescriptor: d}))
	if err != nil {
		t.Fatalf("RegisterExtMode: %v", err)
	}
	return res.Msg
}

func listModules(t *testing.T, srv *servertest.Server) map[string]*adminv1.Module {
	t.Helper()
	res, err := srv.Admin("operator").ListModules(context.Background(), connect.NewRequest(&adminv1.ListModulesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*adminv1.Module{}
	for _, m := range res.Msg.GetModules() {
		out[m.GetMode()] = m
	}
	return out
}

// TestDescriptorOnlyRegistration follows an SDK user who registers a mode's
// descriptor before its module exists: the declaration is listed, announced
// and survives a restart; SessionStart says which module is missing; a
// module that disagrees with the declaration is refused, one that agrees
// fills it.
func TestDescriptorOnlyRegistration(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const mode = "ext.test.counter.v1"
	anon := srv.Client(servertest.GRPC, "")
	watch, err := anon.WatchModeRegistry(ctx, connect.NewRequest(&macpv1.WatchModeRegistryRequest{}))
	if err != nil || !watch.Receive() {
		t.Fatalf("watch: %v %v", err, watch.Err())
	}

	// The SDK's first call: a descriptor and no module.
	declaredWrong := counterDescriptor()
	declaredWrong.ModeVersion = "2.0.0"
	if res := registerExtMode(t, srv, declaredWrong); !res.GetOk() {
		t.Fatalf("descriptor-only RegisterExtMode refused: %s", res.GetError())
	}
	if !watch.Receive() || watch.Msg().GetChange().GetRegistry() != "modes" {
		t.Fatalf("no registry change hint after the declaration: %v", watch.Err())
	}
	ext, err := anon.ListExtModes(ctx, connect.NewRequest(&macpv1.ListExtModesRequest{}))
	if err != nil || !hasMode(ext.Msg.GetModes(), mode) {
		t.Fatalf("ListExtModes lacks the declaration: %v %v", ext, err)
	}
	for _, d := range ext.Msg.GetModes() {
		if d.GetMode() == mode && !proto.Equal(d, declaredWrong) {
			t.Fatalf("ListExtModes shows %v, want the declared descriptor %v", d, declaredWrong)
		}
	}
	init, err := anon.Initialize(ctx, connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range init.Msg.GetSupportedModes() {
		if m == mode {
			t.Fatal("Initialize lists a declared mode no module implements among supported_modes")
		}
	}
	if m := listModules(t, srv)[mode]; !m.GetDeclared() || m.GetDigest() != "" || m.GetModeDescriptor().GetModeVersion() != "2.0.0" {
		t.Fatalf("ListModules shows the declaration as %v", m)
	}
	expectMissingModule := func(when string) {
		t.Helper()
		ack := extStart(t, srv, mode, servertest.NewSessionID())
		msg := ack.GetError().GetMessage()
		if ack.GetOk() || ack.GetError().GetCode() != "MODE_NOT_SUPPORTED" || !strings.Contains(msg, "no module implements it") ||
			!strings.Contains(msg, mode+" 2.0.0") {
			t.Fatalf("%s: SessionStart in a declared mode = %v, want MODE_NOT_SUPPORTED naming the missing module", when, ack)
		}
	}
	expectMissingModule("declared")

	// Declarations are durable.
	srv.Restart()
	expectMissingModule("after a restart")
	if m := listModules(t, srv)[mode]; !m.GetDeclared() {
		t.Fatalf("declaration lost in the restart: %v", m)
	}

	// The module says 1.0.0: it does not fill a 2.0.0 declaration.
	_, err = upload(t, srv, module(t, "counter"))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "declared") ||
		!strings.Contains(err.Error(), `mode_version is "2.0.0" in the declaration, "1.0.0" in the module`) {
		t.Fatalf("upload disagreeing with the declaration: %v, want InvalidArgument saying what disagrees", err)
	}
	expectMissingModule("after the refused upload")

	// Withdraw it, declare what the module is, and upload it.
	watch2, err := anon.WatchModeRegistry(ctx, connect.NewRequest(&macpv1.WatchModeRegistryRequest{}))
	if err != nil || !watch2.Receive() {
		t.Fatalf("watch: %v %v", err, watch2.Err())
	}
	un, err := srv.Client(servertest.GRPC, "operator").UnregisterExtMode(ctx, connect.NewRequest(&macpv1.UnregisterExtModeRequest{Mode: mode}))
	if err != nil || !un.Msg.GetOk() {
		t.Fatalf("withdraw the declaration: %v %v", un, err)
	}
	if !watch2.Receive() {
		t.Fatalf("no hint after the withdrawal: %v", watch2.Err())
	}
	if _, ok := listModules(t, srv)[mode]; ok {
		t.Fatal("withdrawn declaration still listed")
	}
	if res := registerExtMode(t, srv, counterDescriptor()); !res.GetOk() {
		t.Fatalf("declare: %s", res.GetError())
	}
	if res := registerExtMode(t, srv, counterDescriptor()); !res.GetOk() {
		t.Fatalf("declaring the same descriptor again: %s", res.GetError())
	}
	if res := registerExtMode(t, srv, declaredWrong); res.GetOk() || !strings.Contains(res.GetError(), "already declared") {
		t.Fatalf("declaring another descriptor over a declaration: %v", res)
	}
	m, err := upload(t, srv, module(t, "counter"))
	if err != nil {
		t.Fatalf("upload of the declared module: %v", err)
	}
	listed := listModules(t, srv)[mode]
	if listed.GetDeclared() || listed.GetDigest() != m.GetDigest() {
		t.Fatalf("after the upload ListModules shows %v, want the module %s", listed, m.GetDigest())
	}
	sid := servertest.NewSessionID()
	if ack := extStart(t, srv, mode, sid); !ack.GetOk() {
		t.Fatalf("SessionStart once the declaration is filled: %v", ack)
	}
	if ack := tick(t, srv, mode, sid, "t1"); !ack.GetOk() {
		t.Fatalf("Tick: %v", ack)
	}
	// Filled for good: a restart does not bring the declaration back.
	srv.Restart()
	if listed := listModules(t, srv)[mode]; listed.GetDeclared() || listed.GetDigest() != m.GetDigest() {
		t.Fatalf("after a restart ListModules shows %v", listed)
	}
	if ack := extStart(t, srv, mode, servertest.NewSessionID()); !ack.GetOk() {
		t.Fatalf("SessionStart after a restart: %v", ack)
	}

	// A descriptor for a mode already served is refused, and only an
	// operator may declare.
	if res := registerExtMode(t, srv, counterDescriptor()); res.GetOk() || !strings.Contains(res.GetError(), "already registered") {
		t.Fatalf("declaring a served mode: %v", res)
	}
	_, err = srv.Client(servertest.GRPC, "").RegisterExtMode(ctx, connect.NewRequest(&macpv1.RegisterExtModeRequest{ModeDescriptor: counterDescriptor()}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous RegisterExtMode: %v", err)
	}
}
