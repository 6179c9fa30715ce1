package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/fixture"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

const modeTestUsage = `Usage: concord mode test [--cache-dir DIR] [--server URL --as ID] FILE.wasm [FIXTURE.json...]

Runs the module as the server would run an upload (sandboxed, in an
in-memory server of this binary on a loopback port) and plays each
conformance-format fixture through it, printing every step's verdict.
Payloads are protobuf, as in the specification's fixtures, or the JSON text
of the payload object with "payload_type": "json".

With --server the module is uploaded to that running server instead (as
concord mode push does) and the fixtures' sessions run there; each sender
authenticates as itself, so the server must run with dev auth (make run).
`

// modeTest runs `concord mode test`.
func modeTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concord mode test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, modeTestUsage); fs.PrintDefaults() }
	cache := fs.String("cache-dir", defaultCacheDir(), "compiled-module cache of the test server (the built-in modes compile once)")
	remote := fs.String("server", "", "play against this running server (dev auth) instead of an in-process one")
	as := fs.String("as", "mode-test", "identity that uploads the module")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return 2
	}
	failed, err := runModeTest(ctx, *cache, *remote, *as, fs.Arg(0), fs.Args()[1:], stdout)
	if err != nil {
		fmt.Fprintln(stderr, "concord mode test:", err)
		return 1
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// defaultCacheDir is the user's cache folder for compiled modules.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "concord-wasm-cache")
	}
	return filepath.Join(dir, "concord", "wasm-cache")
}

// runModeTest uploads the module into a test server (or the running server
// at remote) as uploader and plays the fixtures, returning how many failed.
func runModeTest(ctx context.Context, cacheDir, remote, uploader, wasmFile string, fixtures []string, out io.Writer) (int, error) {
	wasm, err := os.ReadFile(wasmFile)
	if err != nil {
		return 0, err
	}
	ts := &testServer{url: remote}
	if remote == "" {
		if ts, err = startTestServer(ctx, cacheDir); err != nil {
			return 0, err
		}
		defer ts.stop()
	}
	m, err := ts.upload(ctx, uploader, wasm, out)
	if err != nil {
		return 0, err
	}
	failed := 0
	for _, file := range fixtures {
		if err := ts.play(ctx, file, m.GetMode(), out); err != nil {
			fmt.Fprintf(out, "FAIL %s: %v\n", file, err)
			failed++
			continue
		}
		fmt.Fprintf(out, "ok   %s\n", file)
	}
	if len(fixtures) > 0 {
		fmt.Fprintf(out, "%d passed, %d failed\n", len(fixtures)-failed, failed)
	}
	return failed, nil
}

// upload uploads the module, or finds it on a running server that has it
// already, and prints how long it took to become usable.
func (ts *testServer) upload(ctx context.Context, uploader string, wasm []byte, out io.Writer) (*adminv1.Module, error) {
	admin := ts.flags(uploader).admin()
	began := time.Now()
	up, err := admin.UploadMode(ctx, connect.NewRequest(&adminv1.UploadModeRequest{Wasm: wasm}))
	if err == nil {
		m := up.Msg.GetModule()
		fmt.Fprintf(out, "%s %s: module %s (%d bytes) usable after %s, sandboxed\n",
			m.GetMode(), m.GetModeDescriptor().GetModeVersion(), m.GetDigest()[:12], len(wasm), time.Since(began).Round(time.Millisecond))
		return m, nil
	}
	digest := fmt.Sprintf("%x", sha256.Sum256(wasm))
	if list, lerr := admin.ListModules(ctx, connect.NewRequest(&adminv1.ListModulesRequest{})); lerr == nil {
		for _, m := range list.Msg.GetModules() {
			if m.GetDigest() == digest {
				fmt.Fprintf(out, "%s %s: module %s is already uploaded\n", m.GetMode(), m.GetModeDescriptor().GetModeVersion(), digest[:12])
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("the server refuses the module: %w", err)
}

// testServer is the server the fixtures run on: an in-memory Concord
// server on a loopback port (srv set), or a running one at url.
type testServer struct {
	srv  *server.Server
	url  string
	done chan error
}

func startTestServer(ctx context.Context, cacheDir string) (*testServer, error) {
	srv, err := server.New(ctx, server.Config{
		Addr: "127.0.0.1:0", Memory: true, Dev: true, WasmCacheDir: cacheDir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("start the test server: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Shutdown(ctx)
		return nil, err
	}
	ts := &testServer{srv: srv, url: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ln) }()
	return ts, nil
}

func (ts *testServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ts.srv.Shutdown(ctx)
	<-ts.done
}

// flags returns client flags that talk to the test server as identity.
func (ts *testServer) flags(identity string) *clientFlags {
	return &clientFlags{server: ts.url, identity: identity}
}

func (ts *testServer) client(identity string) macpv1connect.MACPRuntimeServiceClient {
	c := ts.flags(identity)
	return macpv1connect.NewMACPRuntimeServiceClient(c.httpClient(), c.server, c.options()...)
}

// play runs one fixture and prints each step's verdict; it returns the
// first expectation that fails, after playing the rest.
func (ts *testServer) play(ctx context.Context, file, mode string, out io.Writer) error {
	f, err := fixture.Load(file)
	if err != nil {
		return err
	}
	if f.Mode != mode {
		return fmt.Errorf("the fixture is for mode %s, the module serves %s", f.Mode, mode)
	}
	if f.Policy != nil {
		if err := ts.registerPolicy(ctx, f); err != nil {
			return err
		}
	}
	sid := newSessionID()
	ttl := f.TTLMs
	if ttl == 0 {
		ttl = 60_000
	}
	startPayload, err := proto.Marshal(&macpv1.SessionStartPayload{
		Intent: "concord mode test", Participants: f.Participants, ModeVersion: f.ModeVersion,
		ConfigurationVersion: f.ConfigurationVersion, PolicyVersion: f.PolicyVersion, TtlMs: ttl,
	})
	if err != nil {
		return err
	}
	ack, err := ts.send(ctx, f.Initiator, newEnvelope(f.Mode, "SessionStart", "m0", sid, f.Initiator, startPayload))
	if err != nil {
		return err
	}
	if !ack.GetOk() {
		return fmt.Errorf("SessionStart refused: %s %s", ack.GetError().GetCode(), ack.GetError().GetMessage())
	}
	fmt.Fprintf(out, "     %-3d %-18s %-24s accepted\n", 0, "SessionStart", f.Initiator)
	var first error
	for i, msg := range f.Messages {
		payload, err := msg.EncodePayload()
		if err != nil {
			return fmt.Errorf("message %d: %w", i+1, err)
		}
		env := newEnvelope(f.Mode, msg.MessageType, fmt.Sprintf("m%d", i+1), sid, msg.Sender, payload)
		ack, err := ts.send(ctx, msg.Sender, env)
		if err != nil {
			return fmt.Errorf("message %d: %w", i+1, err)
		}
		got := "accepted"
		if !ack.GetOk() {
			got = fmt.Sprintf("rejected %s (%s)", ack.GetError().GetCode(), ack.GetError().GetMessage())
		}
		want := msg.Expect == "accept" && ack.GetOk() ||
			msg.Expect == "reject" && !ack.GetOk() && (msg.ExpectedErrorCode == "" || msg.ExpectedErrorCode == ack.GetError().GetCode())
		mark := "ok  "
		if !want {
			mark = "FAIL"
			expected := "accept"
			if msg.Expect == "reject" {
				expected = strings.TrimSpace("reject " + msg.ExpectedErrorCode)
			}
			got += ", want " + expected
			if first == nil {
				first = fmt.Errorf("message %d (%s from %s): %s", i+1, msg.MessageType, msg.Sender, got)
			}
		}
		fmt.Fprintf(out, "%s %-3d %-18s %-24s %s\n", mark, i+1, msg.MessageType, msg.Sender, got)
	}
	if first != nil {
		return first
	}
	return ts.checkEnd(ctx, f, sid)
}

// checkEnd compares the session's final state and mode state with the
// fixture's expectations.
func (ts *testServer) checkEnd(ctx context.Context, f *fixture.Fixture, sid string) error {
	in, err := ts.flags(f.Initiator).admin().InspectSession(ctx, connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
	if err != nil {
		return err
	}
	if want := "SESSION_STATE_" + strings.ToUpper(f.ExpectedFinalState); f.ExpectedFinalState != "" && in.Msg.GetMetadata().GetState().String() != want {
		return fmt.Errorf("final state %s, want %s", in.Msg.GetMetadata().GetState(), want)
	}
	if len(f.ExpectedModeState) == 0 {
		return nil
	}
	var want, got any
	if err := json.Unmarshal(f.ExpectedModeState, &want); err != nil {
		return fmt.Errorf("expected_mode_state: %w", err)
	}
	if err := json.Unmarshal([]byte(in.Msg.GetModeStateJson()), &got); err != nil {
		return fmt.Errorf("mode state is not JSON: %w", err)
	}
	if err := fixture.Subset(want, got, "$"); err != nil {
		return fmt.Errorf("mode state %s: %w", in.Msg.GetModeStateJson(), err)
	}
	return nil
}

func (ts *testServer) registerPolicy(ctx context.Context, f *fixture.Fixture) error {
	rules, err := f.RulesJSON()
	if err != nil {
		return err
	}
	p := f.Policy
	res, err := ts.client("mode-test").RegisterPolicy(ctx, connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: &macpv1.PolicyDescriptor{
		PolicyId: p.PolicyID, Mode: p.Mode, Description: p.Description, Rules: rules, SchemaVersion: p.SchemaVersion,
	}}))
	if err != nil {
		return fmt.Errorf("register policy %s: %w", p.PolicyID, err)
	}
	if !res.Msg.GetOk() && !strings.Contains(res.Msg.GetError(), "already registered") {
		return fmt.Errorf("policy %s refused: %s", p.PolicyID, res.Msg.GetError())
	}
	return nil
}

func (ts *testServer) send(ctx context.Context, identity string, env *macpv1.Envelope) (*macpv1.Ack, error) {
	res, err := ts.client(identity).Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetAck(), nil
}

func newEnvelope(mode, typ, id, sid, sender string, payload []byte) *macpv1.Envelope {
	return &macpv1.Envelope{MacpVersion: "1.0", Mode: mode, MessageType: typ, MessageId: id, SessionId: sid,
		Sender: sender, TimestampUnixMs: time.Now().UnixMilli(), Payload: payload}
}

// newSessionID returns a fresh lowercase UUID v4.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
