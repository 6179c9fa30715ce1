package modes_test

// This test builds every example mode as a WebAssembly module, the way an
// operator would before `concord mode push`, loads it in the host's wazero
// engine, and plays a session through both the module and the native
// package: verdicts, codes, state bytes and views must be identical.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/examples/modes/broadcast"
	"github.com/concord-macp/concord/examples/modes/mpac"
	"github.com/concord-macp/concord/examples/modes/orchestrated"
	"github.com/concord-macp/concord/examples/modes/pair"
	"github.com/concord-macp/concord/examples/modes/roundrobin"
	"github.com/concord-macp/concord/examples/modes/swarm"
	"github.com/concord-macp/concord/host/wasm"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

type example struct {
	dir    string
	mode   guest.Mode
	sess   guest.Session
	script []kt.Msg
}

func examples() []example {
	m := func(sender, typ, payload string) kt.Msg { return kt.Msg{Sender: sender, Type: typ, Payload: payload} }
	return []example{
		{"roundrobin", roundrobin.Mode, kt.Session(roundrobin.ModeName, `{"round_robin":{"rounds":2}}`, kt.Alice, kt.Bob), []kt.Msg{
			m(kt.Alice, "Contribute", `{"content":"a1","turn":1}`), m(kt.Alice, "Contribute", `{"content":"again"}`),
			m(kt.Bob, "Pass", `{}`), m(kt.Alice, "Contribute", `{"content":"a2"}`), m(kt.Bob, "Contribute", `{"content":"b2"}`),
			kt.Commitment(kt.Coord, true, ""),
		}},
		{"orchestrated", orchestrated.Mode, kt.Session(orchestrated.ModeName, "", kt.Alice, kt.Bob), []kt.Msg{
			m(kt.Coord, "Assign", `{"item_id":"i1","assignee":"agent://alice","description":"tests"}`),
			m(kt.Bob, "Report", `{"item_id":"i1","status":"done"}`),
			m(kt.Alice, "Report", `{"item_id":"i1","status":"progress","detail":"half"}`),
			m(kt.Alice, "Report", `{"item_id":"i1","status":"done","detail":"all green"}`),
			kt.Commitment(kt.Coord, true, ""),
		}},
		{"pair", pair.Mode, kt.Session(pair.ModeName, "", kt.Alice, kt.Bob), []kt.Msg{
			m(kt.Alice, "Drive", `{"change_id":"c1","content":"diff"}`), m(kt.Alice, "Review", `{"change_id":"c1","approved":true}`),
			m(kt.Bob, "Review", `{"change_id":"c1","approved":false,"comment":"nit"}`),
			m(kt.Bob, "Drive", `{"change_id":"c2","content":"fix"}`), m(kt.Alice, "Review", `{"change_id":"c2","approved":true}`),
			kt.Commitment(kt.Coord, true, ""),
		}},
		{"broadcast", broadcast.Mode, kt.Session(broadcast.ModeName, "", kt.Alice, kt.Bob), []kt.Msg{
			m(kt.Alice, "Announce", `{"announcement_id":"a","content":"x"}`), m(kt.Coord, "Announce", `{"announcement_id":"a","content":"freeze"}`),
			m(kt.Bob, "Acknowledge", `{"announcement_id":"a"}`), m(kt.Bob, "Acknowledge", `{"announcement_id":"a"}`),
			m(kt.Alice, "Acknowledge", `{"announcement_id":"a","note":"ok"}`), kt.Commitment(kt.Coord, false, ""),
		}},
		{"swarm", swarm.Mode, kt.Session(swarm.ModeName, "", kt.Alice, kt.Bob, kt.Carol), []kt.Msg{
			m(kt.Alice, "Contribute", `{"contribution_id":"x","content":"plan x"}`), m(kt.Outsider, "Endorse", `{"contribution_id":"x"}`),
			m(kt.Bob, "Endorse", `{"contribution_id":"x"}`), kt.Commitment(kt.Coord, true, ""), m(kt.Carol, "Endorse", `{"contribution_id":"x"}`),
			kt.Commitment(kt.Coord, true, ""),
		}},
		{"mpac", mpac.Mode, kt.Session(mpac.ModeName, "", kt.Alice, kt.Bob, kt.Carol), []kt.Msg{
			m(kt.Alice, "AnnounceIntent", `{"intent_id":"i1","scope":["src"]}`), m(kt.Bob, "AnnounceIntent", `{"intent_id":"i2","scope":["src/a"]}`),
			m(kt.Alice, "CommitOperation", `{"intent_id":"i1","watermark":0}`), m(kt.Coord, "ResolveConflict", `{"conflict_id":1,"keep":["i1"]}`),
			m(kt.Alice, "CommitOperation", `{"intent_id":"i1","watermark":0}`), m(kt.Coord, "DeclareCrashed", `{"participant":"agent://alice"}`),
			m(kt.Carol, "Claim", `{"intent_id":"i1"}`), m(kt.Carol, "CommitOperation", `{"intent_id":"i1","watermark":0}`),
			m(kt.Carol, "CommitOperation", `{"intent_id":"i1","watermark":1}`), m(kt.Carol, "Withdraw", `{"intent_id":"i1"}`),
			kt.Commitment(kt.Coord, true, ""),
		}},
	}
}

func TestWasmModulesMatchNative(t *testing.T) {
	if testing.Short() {
		t.Skip("builds WebAssembly modules")
	}
	ctx := context.Background()
	engine, err := wasm.NewEngine(ctx, wasm.Options{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close(ctx)
	dir := t.TempDir()
	for _, ex := range examples() {
		t.Run(ex.dir, func(t *testing.T) {
			mod := build(t, ctx, engine, dir, ex.dir)
			d, want := mod.Descriptor(), ex.mode.Describe()
			if d.GetMode() != want.Mode || d.GetModeVersion() != want.ModeVersion || !slices.Equal(d.GetMessageTypes(), want.MessageTypes) {
				t.Fatalf("descriptor %v, want %+v", d, want)
			}
			play(t, ctx, mod, ex)
		})
	}
}

// build compiles ./<name>/wasm for wasip1 into dir and loads it.
func build(tb testing.TB, ctx context.Context, engine *wasm.Engine, dir, name string) *wasm.Module {
	tb.Helper()
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./"+name+"/wasm")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", name, err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	mod, err := engine.Load(ctx, bin)
	if err != nil {
		tb.Fatalf("load %s: %v", name, err)
	}
	return mod
}

// play runs SessionStart and the script through the module and natively.
func play(t *testing.T, ctx context.Context, mod *wasm.Module, ex example) {
	sess := &abiv1.Session{
		SessionId: ex.sess.SessionID, Mode: ex.sess.Mode, ModeVersion: ex.sess.ModeVersion,
		ConfigurationVersion: ex.sess.ConfigurationVersion, PolicyVersion: ex.sess.PolicyVersion,
		Initiator: ex.sess.Initiator, Participants: ex.sess.Participants,
		PolicyRules: ex.sess.PolicyRules, PolicySchemaVersion: ex.sess.PolicySchemaVersion,
	}
	msgs := append([]kt.Msg{{Sender: ex.sess.Initiator, Type: "SessionStart"}}, ex.script...)
	var state []byte
	accepted := 0
	for i, msg := range msgs {
		payload := kt.Encode(t, msg.Payload)
		env := guest.Envelope{
			MACPVersion: "1.0", Mode: ex.sess.Mode, MessageType: msg.Type, MessageID: fmt.Sprintf("m%d", i),
			SessionID: ex.sess.SessionID, Sender: msg.Sender, TimestampUnixMs: int64(1000 + i), Payload: payload,
		}
		native := ex.mode.Step(&guest.StepRequest{State: state, Envelope: env, Session: ex.sess, NowUnixMs: int64(1000 + i)})
		resp, err := mod.Step(ctx, &abiv1.StepRequest{
			State: state,
			Envelope: &macpv1.Envelope{
				MacpVersion: env.MACPVersion, Mode: env.Mode, MessageType: env.MessageType, MessageId: env.MessageID,
				SessionId: env.SessionID, Sender: env.Sender, TimestampUnixMs: env.TimestampUnixMs, Payload: payload,
			},
			Session: sess, NowUnixMs: int64(1000 + i),
		})
		if err != nil {
			t.Fatalf("step %d %s: %v", i, msg.Type, err)
		}
		gotAccept := resp.GetVerdict() == abiv1.Verdict_VERDICT_ACCEPT
		if gotAccept != native.Accepted || resp.GetErrorCode() != string(native.Code) || !bytes.Equal(resp.GetState(), native.State) {
			t.Fatalf("step %d %s from %s: wasm accept=%v %s %q, native accept=%v %s %q",
				i, msg.Type, msg.Sender, gotAccept, resp.GetErrorCode(), resp.GetErrorMessage(), native.Accepted, native.Code, native.Message)
		}
		if gotAccept {
			state = resp.GetState()
			accepted++
		}
	}
	if accepted == len(msgs) {
		t.Fatal("the script should include rejected envelopes")
	}
	view, err := mod.View(ctx, &abiv1.ViewRequest{State: state, Session: sess})
	if err != nil {
		t.Fatal(err)
	}
	native, err := ex.mode.View(state, &ex.sess)
	if err != nil {
		t.Fatal(err)
	}
	if view.GetJson() != string(native) {
		t.Fatalf("views differ:\nwasm   %s\nnative %s", view.GetJson(), native)
	}
	if !bytes.Contains(native, []byte(`"phase":"Committed"`)) {
		t.Fatalf("the script should end committed: %s", native)
	}
}

// baselineEnv names a folder of example modules built from another
// revision (<name>.wasm, built as build does), which the benchmarks then
// measure side by side with the current ones.
const baselineEnv = "CONCORD_BASELINE_WASM"

// implementations returns the module of example name built from this
// revision ("sdk") and, when baselineEnv is set, the baseline's, each
// loaded in engine.
func implementations(b *testing.B, ctx context.Context, engine *wasm.Engine, name string) map[string]*wasm.Module {
	mods := map[string]*wasm.Module{"sdk": build(b, ctx, engine, b.TempDir(), name)}
	if dir := os.Getenv(baselineEnv); dir != "" {
		bin, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil {
			b.Fatal(err)
		}
		if mods["baseline"], err = engine.Load(ctx, bin); err != nil {
			b.Fatalf("load baseline %s: %v", name, err)
		}
	}
	return mods
}

// BenchmarkExampleStepWasm plays each example's session of wasm_test.go
// (SessionStart and the script, accepted and rejected envelopes) through its
// module, sandboxed as uploads run, and reports the cost per step and the
// module's size. With CONCORD_BASELINE_WASM set it measures the baseline's
// modules in the same run, after checking that they return the same
// verdicts and state bytes:
//
//	go test -run '^$' -bench ExampleStepWasm ./examples/modes/
func BenchmarkExampleStepWasm(b *testing.B) {
	ctx := context.Background()
	engine, err := wasm.NewEngine(ctx, wasm.Options{Sandbox: true})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Close(ctx)
	for _, ex := range examples() {
		reqs := requests(b, ex)
		mods := implementations(b, ctx, engine, ex.dir)
		var want []*abiv1.StepResponse
		for _, impl := range []string{"sdk", "baseline"} {
			mod := mods[impl]
			if mod == nil {
				continue
			}
			got := make([]*abiv1.StepResponse, len(reqs))
			for i, req := range reqs {
				if got[i], err = mod.Step(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			if want == nil {
				want = got
			} else {
				for i := range got {
					if got[i].GetVerdict() != want[i].GetVerdict() || got[i].GetErrorCode() != want[i].GetErrorCode() || !bytes.Equal(got[i].GetState(), want[i].GetState()) {
						b.Fatalf("%s step %d: %s answers %v %s %x, sdk %v %s %x", ex.dir, i, impl,
							got[i].GetVerdict(), got[i].GetErrorCode(), got[i].GetState(), want[i].GetVerdict(), want[i].GetErrorCode(), want[i].GetState())
					}
				}
			}
			b.Run(fmt.Sprintf("mode=%s/impl=%s", ex.dir, impl), func(b *testing.B) {
				for b.Loop() {
					for _, req := range reqs {
						if _, err := mod.Step(ctx, req); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/step")
			})
		}
	}
}

// requests returns the StepRequests of ex's session, each with the state
// the native mode had before it.
func requests(tb testing.TB, ex example) []*abiv1.StepRequest {
	sess := &abiv1.Session{
		SessionId: ex.sess.SessionID, Mode: ex.sess.Mode, ModeVersion: ex.sess.ModeVersion,
		ConfigurationVersion: ex.sess.ConfigurationVersion, PolicyVersion: ex.sess.PolicyVersion,
		Initiator: ex.sess.Initiator, Participants: ex.sess.Participants,
		PolicyRules: ex.sess.PolicyRules, PolicySchemaVersion: ex.sess.PolicySchemaVersion,
	}
	var state []byte
	var out []*abiv1.StepRequest
	for i, msg := range append([]kt.Msg{{Sender: ex.sess.Initiator, Type: "SessionStart"}}, ex.script...) {
		payload := kt.Encode(tb, msg.Payload)
		out = append(out, &abiv1.StepRequest{State: state, Session: sess, NowUnixMs: int64(1000 + i),
			Envelope: &macpv1.Envelope{MacpVersion: "1.0", Mode: ex.sess.Mode, MessageType: msg.Type, MessageId: fmt.Sprintf("m%d", i),
				SessionId: ex.sess.SessionID, Sender: msg.Sender, TimestampUnixMs: int64(1000 + i), Payload: payload}})
		res := ex.mode.Step(&guest.StepRequest{State: state, Session: ex.sess, NowUnixMs: int64(1000 + i), Envelope: guest.Envelope{
			MACPVersion: "1.0", Mode: ex.sess.Mode, MessageType: msg.Type, MessageID: fmt.Sprintf("m%d", i),
			SessionID: ex.sess.SessionID, Sender: msg.Sender, TimestampUnixMs: int64(1000 + i), Payload: payload}})
		if res.Accepted {
			state = res.State
		}
	}
	return out
}

// BenchmarkMPACCycleWasm is mpac's BenchmarkCycle inside the host's engine:
// one announce → commit operation → withdraw cycle through the WebAssembly
// module, on a session of 3 participants with 10 and with 10,000 past
// cycles, and on the state BenchmarkMPACCycleServer's one shared session
// reaches: 32 participants, 30 other live intents of one path each. The
// history is built natively (the state bytes are the same, as the test
// above checks). With CONCORD_BASELINE_WASM set (see
// BenchmarkExampleStepWasm) the baseline's module runs side by side.
//
//	go test -run '^$' -bench MPACCycleWasm ./examples/modes/
func BenchmarkMPACCycleWasm(b *testing.B) {
	ctx := context.Background()
	// The same module in a sandboxed engine (as uploads run) and in a
	// trusted one: the difference is the cost of the per-step deadline.
	mods := map[bool]map[string]*wasm.Module{}
	for _, sandbox := range []bool{true, false} {
		engine, err := wasm.NewEngine(ctx, wasm.Options{Sandbox: sandbox})
		if err != nil {
			b.Fatal(err)
		}
		defer engine.Close(ctx)
		mods[sandbox] = implementations(b, ctx, engine, "mpac")
	}
	agents := make([]string, 32)
	for i := range agents {
		agents[i] = fmt.Sprintf("agent-%d", i)
	}
	for _, c := range []struct {
		name         string
		participants []string
		past, others int
	}{
		{"past=10", []string{kt.Alice, kt.Bob, kt.Carol}, 10, 1},
		{"past=10000", []string{kt.Alice, kt.Bob, kt.Carol}, 10_000, 1},
		{"agents=32/others=30", agents, 10, 30},
	} {
		ex := kt.Session(mpac.ModeName, "", c.participants...)
		sess := &abiv1.Session{SessionId: ex.SessionID, Mode: ex.Mode, ModeVersion: ex.ModeVersion,
			ConfigurationVersion: ex.ConfigurationVersion, PolicyVersion: ex.PolicyVersion,
			Initiator: ex.Initiator, Participants: ex.Participants, PolicyRules: ex.PolicyRules, PolicySchemaVersion: 3}
		type stepper func(state []byte, sender, typ, payload string) []byte
		native := func(state []byte, sender, typ, payload string) []byte {
			res := mpac.Mode.Step(&guest.StepRequest{State: state, Session: ex,
				Envelope: guest.Envelope{Mode: ex.Mode, MessageType: typ, Sender: sender, Payload: []byte(payload)}})
			if !res.Accepted {
				b.Fatalf("%s: %s %s", typ, res.Code, res.Message)
			}
			return res.State
		}
		var mod *wasm.Module
		inWasm := func(state []byte, sender, typ, payload string) []byte {
			resp, err := mod.Step(ctx, &abiv1.StepRequest{State: state, Session: sess,
				Envelope: &macpv1.Envelope{Mode: ex.Mode, MessageType: typ, Sender: sender, Payload: []byte(payload)}})
			if err != nil || resp.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
				b.Fatalf("%s: %v %s %s", typ, err, resp.GetErrorCode(), resp.GetErrorMessage())
			}
			return resp.GetState()
		}
		// The first participant runs the cycles; the next ones each keep
		// one intent live, as the agents of the server benchmark do (one
		// intent of Bob's in the small cases).
		actor := c.participants[0]
		cycle := func(step stepper, state []byte, ops int) []byte {
			state = step(state, actor, "AnnounceIntent", `{"intent_id":"cycle","scope":["src/core"]}`)
			state = step(state, actor, "CommitOperation", fmt.Sprintf(`{"intent_id":"cycle","watermark":%d}`, ops))
			return step(state, actor, "Withdraw", `{"intent_id":"cycle"}`)
		}
		state := native(nil, kt.Coord, "SessionStart", "")
		if c.others == 1 {
			state = native(state, kt.Bob, "AnnounceIntent", `{"intent_id":"docs","scope":["docs"]}`)
		} else {
			for i, owner := range c.participants[1 : 1+c.others] {
				state = native(state, owner, "AnnounceIntent", fmt.Sprintf(`{"intent_id":"%s-%d","scope":["%s/%d"]}`, owner, 100+i, owner, 100+i))
			}
		}
		for i := range c.past {
			state = cycle(native, state, i)
		}
		for _, sandbox := range []bool{true, false} {
			for _, impl := range []string{"sdk", "baseline"} {
				if mod = mods[sandbox][impl]; mod == nil {
					continue
				}
				b.Run(fmt.Sprintf("sandbox=%t/impl=%s/%s", sandbox, impl, c.name), func(b *testing.B) {
					for b.Loop() {
						cycle(inWasm, state, c.past)
					}
					b.ReportMetric(float64(len(state)), "state-bytes")
				})
			}
		}
	}
}
