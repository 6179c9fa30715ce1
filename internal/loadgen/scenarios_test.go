package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// TestRunFindsTheLocalServerAndReports runs the decision scenario through
// Run against a real server in this process: Run must find the server's
// process from its port, and the report must print as text and JSON.
func TestRunFindsTheLocalServerAndReports(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	r, err := Run(context.Background(), Options{Scenario: "decision", Target: Target{URL: srv.URL},
		Clients: 2, Duration: 50 * time.Millisecond, Runs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.ServerPID != os.Getpid() || !strings.Contains(r.ServerPIDFrom, "listening on port") {
		t.Fatalf("server pid %d (%s), want this process %d found by its port", r.ServerPID, r.ServerPIDFrom, os.Getpid())
	}
	if len(r.Throughput) != 2 || len(r.Summary) != 1 || r.Summary[0].Runs != 2 || len(r.Summary[0].Ratios) != 2 {
		t.Fatalf("throughput %d runs, summary %+v; want 2 runs of one mode", len(r.Throughput), r.Summary)
	}
	if r.Summary[0].MedianRatio <= 0 || r.Throughput[0].Concord.ServerCPUPerSend < 0 {
		t.Fatalf("summary %+v", r.Summary[0])
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ceiling", "concord", "ratio", ModeDecision, "load average"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Summary[0].MedianRatio != r.Summary[0].MedianRatio {
		t.Fatalf("JSON round trip: %v, %+v", err, back.Summary)
	}
}

func TestRunRefusesUnknownScenarioAndMissingModule(t *testing.T) {
	if _, err := Run(context.Background(), Options{Scenario: "everything"}); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Fatalf("unknown scenario: %v", err)
	}
	if _, err := Run(context.Background(), Options{Scenario: "mpac"}); err == nil || !strings.Contains(err.Error(), "--mpac-wasm") {
		t.Fatalf("mpac without a module: %v", err)
	}
}

func TestScriptsNeedingAPeerAreRefusedWithOneToken(t *testing.T) {
	if _, err := Scripts([]string{ModeHandoff}, Target{Token: "t", Identity: "ops"}); err == nil {
		t.Fatal("handoff accepted with one shared identity")
	}
	if got := ModesWithoutPeer(BuiltinModes); len(got) != len(BuiltinModes)-1 || strings.Contains(strings.Join(got, ","), ModeHandoff) {
		t.Fatalf("ModesWithoutPeer = %v", got)
	}
	if _, err := ScriptFor("ext.nope.v1"); err == nil {
		t.Fatal("a script for an unknown mode")
	}
}

// TestLongSession grows a session to its last checkpoint and window; the
// server must have logged every message the scenario counted.
func TestLongSession(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	res, err := LongSession(context.Background(), LongSessionConfig{Target: Target{URL: srv.URL}, Server: Meter{PID: os.Getpid()},
		Checkpoints: []int{3, 20}, Window: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 24 || len(res.Checkpoints) != 2 || res.Checkpoints[1].At != 20 || res.Checkpoints[1].Latency.Count != 5 {
		t.Fatalf("result %+v, want 24 messages and windows at 3 and 20 of 5 each", res)
	}
	// The log holds the 24 messages: a stream from the start replays them.
	stream := srv.Client(servertest.GRPC, "bench-long").StreamSession(context.Background())
	if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: res.SessionID}); err != nil {
		t.Fatal(err)
	}
	for i := range 24 {
		msg, err := stream.Receive()
		if err != nil || msg.GetEnvelope() == nil {
			t.Fatalf("message %d of the log: %v %v", i+1, msg, err)
		}
	}
	_ = stream.CloseRequest()
	if _, err := LongSession(context.Background(), LongSessionConfig{Target: Target{URL: srv.URL}, Checkpoints: []int{10, 12}, Window: 5}); err == nil {
		t.Fatal("overlapping windows accepted")
	}
}

// TestIdle opens sessions and finds them open on the server.
func TestIdle(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	res, err := Idle(context.Background(), IdleConfig{Target: Target{URL: srv.URL}, Server: Meter{PID: os.Getpid()},
		Sessions: 30, Clients: 3, Window: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sessions != 30 || res.RSSBefore <= 0 || res.RSSAfterIdle <= 0 || res.IdleCPUSeconds < 0 {
		t.Fatalf("result %+v", res)
	}
	open := 0
	for w := range 3 {
		req := connect.NewRequest(&macpv1.ListSessionsRequest{})
		list, err := srv.Client(servertest.GRPC, "bench-idle-"+strconv.Itoa(w)).ListSessions(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.Msg.GetSessions() {
			if s.GetState() == macpv1.SessionState_SESSION_STATE_OPEN {
				open++
			}
		}
	}
	if open != 30 {
		t.Fatalf("%d open sessions listed, want 30", open)
	}
	if _, err := Idle(context.Background(), IdleConfig{Target: Target{URL: srv.URL}, Sessions: 1, Clients: 1, Window: time.Millisecond}); err == nil {
		t.Fatal("idle ran without the server's process")
	}
}

// TestMPAC uploads the example mode, built here, and runs cycles on it.
func TestMPAC(t *testing.T) {
	wasm := filepath.Join(t.TempDir(), "mpac.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", wasm, "../../examples/modes/mpac/wasm")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the mpac mode: %v\n%s", err, out)
	}
	module, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, server.Config{})
	res, err := MPAC(context.Background(), MPACConfig{Target: Target{URL: srv.URL}, Server: Meter{PID: os.Getpid()},
		Wasm: module, Agents: 3, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Cycles < 1 || res.Steps != 3*res.Cycles {
		t.Fatalf("result %+v: want error-free cycles of three steps", res)
	}
	// A second run finds the mode served and uses it.
	again, err := MPAC(context.Background(), MPACConfig{Target: Target{URL: srv.URL}, Wasm: module, Agents: 2, Duration: 20 * time.Millisecond})
	if err != nil || again.Cycles < 1 || again.SessionID == res.SessionID {
		t.Fatalf("second run: %+v, %v", again, err)
	}
	// Every step of the window reached all three agents' streams.
	if res.Delivered < 3*res.Steps {
		t.Fatalf("%d envelopes streamed for %d steps to 3 agents", res.Delivered, res.Steps)
	}
	if _, err := MPAC(context.Background(), MPACConfig{Target: Target{URL: srv.URL, Token: "t", Identity: "ops"}, Wasm: module, Agents: 2, Duration: time.Millisecond}); err == nil {
		t.Fatal("mpac ran with one shared identity")
	}
}

// TestCeilingAnswersCannedAcks checks the ceiling with a plain client.
func TestCeilingAnswersCannedAcks(t *testing.T) {
	c, err := StartCeiling()
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(Target{URL: c.URL})
	defer conn.close()
	if err := conn.initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.send(context.Background(), "a", envelope(ModeDecision, "Vote", "m9", "s", "a", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.session(context.Background(), "a", "s"); connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("GetSession on the ceiling: %v, want unimplemented", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
