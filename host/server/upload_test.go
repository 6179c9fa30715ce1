package server_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// extModules builds testdata/extmode into several modules once per test
// binary: name -> wasm bytes.
var extModules = sync.OnceValues(func() (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "concord-extmode")
	if err != nil {
		return nil, err
	}
	builds := map[string]string{
		"counter":   "-X main.modeName=ext.test.counter.v1",
		"counter2":  "-X main.modeName=ext.test.counter.v1 -X main.step=2",
		"hostile":   "-X main.modeName=ext.test.hostile.v1",
		"shadow":    "-X main.modeName=macp.mode.decision.v1",
		"badname":   "-X main.modeName=Not_A_Mode",
		"vendor":    "-X main.modeName=com.example.counter.v1",
		"noversion": "-X main.modeName=ext.test.noversion.v1 -X main.version=",
	}
	out := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(builds))
	for name, ldflags := range builds {
		wg.Go(func() {
			file := filepath.Join(dir, name+".wasm")
			cmd := exec.Command("go", "build", "-buildmode=c-shared", "-ldflags", ldflags, "-o", file, "./testdata/extmode")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if b, err := cmd.CombinedOutput(); err != nil {
				errs <- &buildError{name, string(b), err}
				return
			}
			b, err := os.ReadFile(file)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			out[name] = b
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return out, nil
})

type buildError struct {
	name, out string
	err       error
}

func (e *buildError) Error() string { return "build " + e.name + ": " + e.err.Error() + "\n" + e.out }

func module(t *testing.T, name string) []byte {
	t.Helper()
	mods, err := extModules()
	if err != nil {
		t.Fatal(err)
	}
	return mods[name]
}

func upload(t *testing.T, srv *servertest.Server, wasm []byte) (*adminv1.Module, error) {
	t.Helper()
	res, err := srv.Admin("operator").UploadMode(context.Background(), connect.NewRequest(&adminv1.UploadModeRequest{Wasm: wasm}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetModule(), nil
}

func extStart(t *testing.T, srv *servertest.Server, mode, sid string) *macpv1.Ack {
	t.Helper()
	return srv.Send(t, "coordinator", servertest.Envelope(mode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000}))
}

func tick(t *testing.T, srv *servertest.Server, mode, sid, id string) *macpv1.Ack {
	t.Helper()
	return srv.Send(t, "alice", servertest.Envelope(mode, "Tick", id, sid, nil))
}

func inspect(t *testing.T, srv *servertest.Server, sid string) *adminv1.InspectSessionResponse {
	t.Helper()
	res, err := srv.Admin("coordinator").InspectSession(context.Background(), connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg
}

func TestUploadPinningAndRestart(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	ctx := context.Background()
	const mode = "ext.test.counter.v1"
	watchCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	watch, err := srv.Client(servertest.GRPC, "").WatchModeRegistry(watchCtx, connect.NewRequest(&macpv1.WatchModeRegistryRequest{}))
	if err != nil || !watch.Receive() {
		t.Fatalf("watch: %v %v", err, watch.Err())
	}

	v1, err := upload(t, srv, module(t, "counter"))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if !watch.Receive() || watch.Msg().GetChange().GetRegistry() != "modes" {
		t.Fatalf("no registry change hint after the upload: %v", watch.Err())
	}
	ext, _ := srv.Client(servertest.GRPC, "").ListExtModes(ctx, connect.NewRequest(&macpv1.ListExtModesRequest{}))
	if !hasMode(ext.Msg.GetModes(), mode) {
		t.Fatalf("ListExtModes lacks the upload: %v", ext.Msg.GetModes())
	}
	old := servertest.NewSessionID()
	if ack := extStart(t, srv, mode, old); !ack.GetOk() {
		t.Fatalf("start on the uploaded mode: %v", ack)
	}
	tick(t, srv, mode, old, "t1")

	// A new version of the mode: new sessions bind it, the open one keeps v1.
	v2, err := upload(t, srv, module(t, "counter2"))
	if err != nil || v2.GetDigest() == v1.GetDigest() {
		t.Fatalf("upload v2: %v %v", v2, err)
	}
	fresh := servertest.NewSessionID()
	extStart(t, srv, mode, fresh)
	tick(t, srv, mode, fresh, "t1")
	tick(t, srv, mode, old, "t2")
	if a, b := inspect(t, srv, old), inspect(t, srv, fresh); a.GetModuleDigest() != v1.GetDigest() || b.GetModuleDigest() != v2.GetDigest() ||
		a.GetModeStateJson() != `{"count":2}` || b.GetModeStateJson() != `{"count":2}` {
		t.Fatalf("pinning: old %s %s, fresh %s %s", a.GetModuleDigest()[:8], a.GetModeStateJson(), b.GetModuleDigest()[:8], b.GetModeStateJson())
	}

	// Unregistering stops new sessions only.
	un, err := srv.Client(servertest.GRPC, "operator").UnregisterExtMode(ctx, connect.NewRequest(&macpv1.UnregisterExtModeRequest{Mode: mode}))
	if err != nil || !un.Msg.GetOk() {
		t.Fatalf("unregister: %v %v", un, err)
	}
	if ack := extStart(t, srv, mode, servertest.NewSessionID()); ack.GetError().GetCode() != "MODE_NOT_SUPPORTED" {
		t.Fatalf("start after unregister: %v", ack)
	}
	if ack := tick(t, srv, mode, old, "t3"); !ack.GetOk() {
		t.Fatalf("pinned session after unregister: %v", ack)
	}

	// Everything survives a restart: the pinned module, the log, replay.
	srv.Restart()
	if ack := tick(t, srv, mode, old, "t4"); !ack.GetOk() {
		t.Fatalf("pinned session after restart: %v", ack)
	}
	if got := inspect(t, srv, old).GetModeStateJson(); got != `{"count":4}` {
		t.Fatalf("old session after restart = %s", got)
	}
	expectExactReplay(t, srv, "coordinator", old, 5)
	expectExactReplay(t, srv, "coordinator", fresh, 2)

	// Registering the descriptor again binds the module last bound to the
	// name, v2, at once (the binding survived the restart).
	reg, err := srv.Client(servertest.GRPC, "operator").RegisterExtMode(ctx, connect.NewRequest(&macpv1.RegisterExtModeRequest{
		ModeDescriptor: v2.GetModeDescriptor()}))
	if err != nil || !reg.Msg.GetOk() {
		t.Fatalf("RegisterExtMode: %v %v", reg, err)
	}
	again := servertest.NewSessionID()
	if ack := extStart(t, srv, mode, again); !ack.GetOk() {
		t.Fatalf("start after RegisterExtMode: %v", ack)
	}
	if got := inspect(t, srv, again).GetModuleDigest(); got != v2.GetDigest() {
		t.Fatalf("RegisterExtMode bound module %s, want the last one bound, %s", got, v2.GetDigest())
	}

	// Promotion lists the mode among the standards-track ones.
	pr, err := srv.Client(servertest.GRPC, "operator").PromoteMode(ctx, connect.NewRequest(&macpv1.PromoteModeRequest{Mode: mode}))
	if err != nil || !pr.Msg.GetOk() {
		t.Fatalf("promote: %v %v", pr, err)
	}
	std, _ := srv.Client(servertest.GRPC, "").ListModes(ctx, connect.NewRequest(&macpv1.ListModesRequest{}))
	if !hasMode(std.Msg.GetModes(), mode) {
		t.Fatal("promoted mode not in ListModes")
	}
	pr, _ = srv.Client(servertest.GRPC, "operator").PromoteMode(ctx, connect.NewRequest(&macpv1.PromoteModeRequest{Mode: mode, PromotedModeName: "macp.mode.counter.v1"}))
	if pr.Msg.GetOk() {
		t.Fatal("promotion into macp.mode.* accepted")
	}
	un, _ = srv.Client(servertest.GRPC, "operator").UnregisterExtMode(ctx, connect.NewRequest(&macpv1.UnregisterExtModeRequest{Mode: "macp.mode.decision.v1"}))
	if un.Msg.GetOk() {
		t.Fatal("a built-in mode was unregistered")
	}
}

func hasMode(ds []*macpv1.ModeDescriptor, mode string) bool {
	for _, d := range ds {
		if d.GetMode() == mode {
			return true
		}
	}
	return false
}

func TestUploadRefusals(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true, MaxModuleBytes: 8 << 20})
	ctx := context.Background()
	before, _ := srv.Admin("operator").ListModules(ctx, connect.NewRequest(&adminv1.ListModulesRequest{}))
	for name, wasm := range map[string][]byte{
		"empty":               nil,
		"not wasm":            []byte("#!/bin/sh\necho hello\n"),
		"wasm without ABI":    {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
		"truncated module":    module(t, "counter")[:1000],
		"shadows a spec mode": module(t, "shadow"),
		"bad mode name":       module(t, "badname"),
		"no mode_version":     module(t, "noversion"),
		"over the size limit": append(module(t, "counter"), make([]byte, 8<<20)...),
	} {
		_, err := upload(t, srv, wasm)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
	if _, err := srv.Admin("").UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: module(t, "counter")})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("anonymous upload: %v", err)
	}
	after, _ := srv.Admin("operator").ListModules(ctx, connect.NewRequest(&adminv1.ListModulesRequest{}))
	if len(after.Msg.GetModules()) != len(before.Msg.GetModules()) {
		t.Fatalf("a refused upload registered something: %d -> %d modules", len(before.Msg.GetModules()), len(after.Msg.GetModules()))
	}
	// A reverse-domain name is fine.
	if m, err := upload(t, srv, module(t, "vendor")); err != nil || m.GetMode() != "com.example.counter.v1" {
		t.Fatalf("vendor upload: %v %v", m, err)
	}
}

// TestHostileModulesAreContained runs a module that loops, traps, panics,
// exhausts memory and returns oversized output. Each such message is
// rejected on its own, the module keeps serving, and a Decision session
// keeps running meanwhile.
func TestHostileModulesAreContained(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	const mode = "ext.test.hostile.v1"
	if _, err := upload(t, srv, module(t, "hostile")); err != nil {
		t.Fatal(err)
	}
	sid := servertest.NewSessionID()
	if ack := extStart(t, srv, mode, sid); !ack.GetOk() {
		t.Fatal(ack)
	}
	// A Decision session runs next to the hostile one.
	stop := make(chan struct{})
	var decisionSends int
	var wg sync.WaitGroup
	wg.Go(func() {
		dsid := servertest.NewSessionID()
		send(t, srv.Client(servertest.GRPC, ""), dsid, decisionScript()[0])
		send(t, srv.Client(servertest.GRPC, ""), dsid, decisionScript()[1])
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			env := servertest.Envelope(decisionMode, "Objection", "o"+itoa(i), dsid, nil)
			env.Payload = []byte("\n\x02p1\x12\x01x") // ObjectionPayload{proposal_id:"p1", reason:"x"}
			if ack := srv.Send(t, "bob", env); !ack.GetOk() {
				t.Errorf("decision session disturbed: %v", ack)
				return
			}
			decisionSends++
		}
	})
	for i, typ := range []string{"Loop", "Trap", "Panic", "Bomb", "Big", "Loop"} {
		began := time.Now()
		ack := srv.Send(t, "alice", servertest.Envelope(mode, typ, "h"+itoa(i), sid, nil))
		if ack.GetOk() || ack.GetError().GetCode() != "INTERNAL_ERROR" {
			t.Fatalf("%s: %v, want INTERNAL_ERROR", typ, ack)
		}
		t.Logf("%s rejected in %v: %s", typ, time.Since(began).Round(time.Millisecond), ack.GetError().GetMessage())
		// The module still serves the session.
		if ack := tick(t, srv, mode, sid, "ok"+itoa(i)); !ack.GetOk() {
			t.Fatalf("after %s the module no longer serves: %v", typ, ack)
		}
	}
	close(stop)
	wg.Wait()
	if decisionSends == 0 {
		t.Fatal("the decision session made no progress while the hostile module misbehaved")
	}
	t.Logf("decision session sends meanwhile: %d (GOMAXPROCS %d)", decisionSends, runtime.GOMAXPROCS(0))
	if got := inspect(t, srv, sid).GetModeStateJson(); got != `{"count":6}` {
		t.Fatalf("hostile session state = %s, want 6 ticks and nothing else", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
