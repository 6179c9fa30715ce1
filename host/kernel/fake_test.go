package kernel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage/memory"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The kernel's unit tests run it against a fake mode, catalog and clock,
// with the real in-memory store, so that each rule of the pipeline can be
// driven directly. The wire-level behaviour is tested against real servers
// and the real Wasm modes in host/server and conformance.

const testMode = "ext.counter.v1"

// counter is a fake mode module. Its state is {"n": count}. Messages:
//
//	Note       n++ (participants and the initiator only, else FORBIDDEN)
//	Big        answers a state over the kernel's cap
//	Weird      rejects with a code outside the registry
//	Chatty     rejects FORBIDDEN with a 5000-byte message
//	Arm        sets a timer writing Fire after the payload's milliseconds
//	Fire       n += 100, only when the runtime writes it
//	Done       a terminal type
//	Commitment eligible once n ≥ 1
type counter struct{ digest string }

type counterState struct {
	N     int    `json:"n"`
	Armed int64  `json:"armed,omitempty"`
	Pad   string `json:"pad,omitempty"`
}

func (c *counter) Digest() string { return c.digest }

func (c *counter) Descriptor() *macpv1.ModeDescriptor {
	return &macpv1.ModeDescriptor{Mode: testMode, ModeVersion: "1.0.0",
		MessageTypes: []string{"Note", "Done", "Commitment"}, TerminalMessageTypes: []string{"Done"}}
}

func reject(code macperr.Code, msg string) *abiv1.StepResponse {
	return &abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_REJECT, ErrorCode: string(code), ErrorMessage: msg}
}

func (c *counter) Step(_ context.Context, req *abiv1.StepRequest) (*abiv1.StepResponse, error) {
	env, sess := req.GetEnvelope(), req.GetSession()
	var st counterState
	if env.GetMessageType() != "SessionStart" {
		if err := json.Unmarshal(req.GetState(), &st); err != nil {
			return nil, fmt.Errorf("counter: state: %w", err)
		}
	}
	member := env.GetSender() == sess.GetInitiator() || slices.Contains(sess.GetParticipants(), env.GetSender())
	var timers []*abiv1.Timer
	switch env.GetMessageType() {
	case "SessionStart", "Done":
	case "Note":
		if !member {
			return reject(macperr.Forbidden, "only members may note"), nil
		}
		st.N++
	case "Pad": // grows the state by the payload
		st.Pad += string(env.GetPayload())
	case "Big":
		return &abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_ACCEPT, State: make([]byte, maxModeStateBytes+1)}, nil
	case "Weird":
		return reject("NOT_A_REAL_CODE", "secret module text"), nil
	case "Chatty":
		return reject(macperr.Forbidden, string(make([]byte, 5000))), nil
	case "Arm":
		ms, _ := strconv.ParseInt(string(env.GetPayload()), 10, 64)
		st.Armed = req.GetSessionClockMs() + ms
	case "Fire":
		if !req.GetRuntimeWritten() {
			return reject(macperr.Forbidden, "Fire is the runtime's"), nil
		}
		st.N += 100
		st.Armed = 0
	case "Commitment":
		if st.N < 1 {
			return reject(macperr.InvalidEnvelope, "nothing to commit yet"), nil
		}
	default:
		return reject(macperr.InvalidEnvelope, "unknown message type"), nil
	}
	if st.Armed > 0 {
		timers = []*abiv1.Timer{{DueSessionClockMs: st.Armed, MessageType: "Fire", MessageId: "runtime:fire", Sender: sess.GetInitiator()}}
	}
	b, _ := json.Marshal(st)
	return &abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_ACCEPT, State: b, Timers: timers}, nil
}

func (c *counter) View(_ context.Context, req *abiv1.ViewRequest) (*abiv1.ViewResponse, error) {
	return &abiv1.ViewResponse{Json: string(req.GetState())}, nil
}

// catalog serves the counter (strictly validated or not).
type catalog struct {
	m      mode.Module
	strict bool
}

func (c catalog) Lookup(name string) (mode.Module, bool, error) {
	if name != testMode {
		return nil, false, macperr.New(macperr.ModeNotSupported, "no such mode here")
	}
	return c.m, c.strict, nil
}

func (c catalog) Pinned(digest string) (mode.Module, bool) { return c.m, digest == c.m.Digest() }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fixture is a kernel over a fresh in-memory store.
type fixture struct {
	t     testing.TB
	k     *Kernel
	st    *memory.Store
	clock *clock
	mode  *counter
}

type fixtureOptions struct {
	governor policy.Governor
	limits   limits.Options
	payload  int
	idle     time.Duration
	// st, when set, is the store to run over (a restart).
	st *memory.Store
	// clock, when set, is the clock to keep.
	clock *clock
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, clk := o.st, o.clock
	if st == nil {
		st = memory.New()
	}
	if clk == nil {
		clk = &clock{t: time.UnixMilli(1_700_000_000_000)}
	}
	if o.idle == 0 {
		o.idle = -1
	}
	f := &fixture{t: t, st: st, clock: clk, mode: &counter{digest: "counter-digest"}}
	if o.governor == nil {
		o.governor = policy.Default{}
	}
	var err error
	f.k, err = New(ctx, Options{
		Store: st, Catalog: catalog{m: f.mode}, Governor: o.governor, Logger: quiet,
		Now: f.clock.Now, SweepInterval: -1, IdleEviction: o.idle, MaxPayloadBytes: o.payload, Limits: limits.New(o.limits),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.k.Close)
	return f
}

// agent is a caller with the rights an ordinary agent has.
func agent(id string) access.Caller { return access.Caller{ID: id, CanStartSessions: true} }

const sid = "s-0123456789abcdefghijkl" // a valid token session id

func env(sender, typ, id string, payload []byte) *macpv1.Envelope {
	return &macpv1.Envelope{MacpVersion: ProtocolVersion, Mode: testMode, MessageType: typ, MessageId: id,
		SessionId: sid, Sender: sender, Payload: payload}
}

func startPayload(participants ...string) []byte {
	b, _ := proto.Marshal(&macpv1.SessionStartPayload{TtlMs: 60_000, ModeVersion: "1.0.0",
		ConfigurationVersion: "c1", Participants: participants})
	return b
}

func commitmentPayload() []byte {
	b, _ := proto.Marshal(&macpv1.CommitmentPayload{CommitmentId: "c1", Action: "counter.done", AuthorityScope: "team",
		Reason: "enough", ModeVersion: "1.0.0", ConfigurationVersion: "c1", OutcomePositive: true})
	return b
}

// start opens the session sid as alice with bob as participant.
func (f *fixture) start() {
	f.t.Helper()
	f.mustSend(agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob")))
}

func (f *fixture) send(c access.Caller, e *macpv1.Envelope) *macpv1.Ack {
	return f.k.Send(context.Background(), c, e)
}

func (f *fixture) mustSend(c access.Caller, e *macpv1.Envelope) *macpv1.Ack {
	f.t.Helper()
	ack := f.send(c, e)
	if !ack.GetOk() {
		f.t.Fatalf("%s %s from %s refused: %v", e.GetMessageType(), e.GetMessageId(), c.ID, ack.GetError())
	}
	return ack
}

// wantCode asserts a refused Ack with code.
func wantCode(t testing.TB, ack *macpv1.Ack, code macperr.Code) {
	t.Helper()
	if ack.GetOk() || ack.GetError().GetCode() != string(code) {
		t.Fatalf("ack = ok:%v %v, want %s", ack.GetOk(), ack.GetError(), code)
	}
}

func operator() access.Caller { return access.Operator("op") }
