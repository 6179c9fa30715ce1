// Package guesttest drives a mode natively in its tests, without
// WebAssembly: it builds a session, plays scripts of envelopes checking
// every verdict and code, renders views, and checks that states are
// deterministic and that a corrupt state is refused. Only tests import it.
package guesttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Identities used by the tests of every mode.
const (
	Coord    = "agent://coordinator"
	Alice    = "agent://alice"
	Bob      = "agent://bob"
	Carol    = "agent://carol"
	Dave     = "agent://dave"
	Outsider = "agent://outsider"
)

// Session returns a session of mode started by Coord with participants and
// policy rules ("" means the default policy's "{}").
func Session(mode string, rules string, participants ...string) guest.Session {
	if rules == "" {
		rules = "{}"
	}
	return guest.Session{
		SessionID: "ext-mode-test-session-0001", Mode: mode, ModeVersion: "1.0.0",
		ConfigurationVersion: "cfg-1", PolicyVersion: "policy.default",
		Initiator: Coord, Participants: participants, PolicyRules: rules, PolicySchemaVersion: 3,
	}
}

// Msg is one envelope of a script. Payload is a string or []byte sent as
// is, or any other value encoded with encoding/json. Code "" means the
// envelope must be accepted.
type Msg struct {
	Sender  string
	Type    string
	Payload any
	Code    macperr.Code
}

// Start runs SessionStart and returns the initial state, failing the test
// unless it is accepted.
func Start(t testing.TB, m guest.Mode, sess guest.Session) []byte {
	t.Helper()
	res := m.Step(&guest.StepRequest{
		Envelope: guest.Envelope{MACPVersion: "1.0", Mode: sess.Mode, MessageType: "SessionStart", MessageID: "m0", SessionID: sess.SessionID, Sender: sess.Initiator},
		Session:  sess,
	})
	if !res.Accepted {
		t.Fatalf("SessionStart rejected: %s %s", res.Code, res.Message)
	}
	if len(res.State) == 0 {
		t.Fatal("SessionStart returned an empty state")
	}
	return res.State
}

// StartResult runs SessionStart and returns the verdict.
func StartResult(m guest.Mode, sess guest.Session) guest.Result {
	return m.Step(&guest.StepRequest{
		Envelope: guest.Envelope{MACPVersion: "1.0", Mode: sess.Mode, MessageType: "SessionStart", MessageID: "m0", SessionID: sess.SessionID, Sender: sess.Initiator},
		Session:  sess,
	})
}

// Encode returns the payload bytes of p.
func Encode(t testing.TB, p any) []byte {
	t.Helper()
	switch p := p.(type) {
	case nil:
		return nil
	case string:
		return []byte(p)
	case []byte:
		return p
	case proto.Message:
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Step offers one envelope to m and returns the verdict.
func Step(t testing.TB, m guest.Mode, sess guest.Session, state []byte, i int, msg Msg) guest.Result {
	t.Helper()
	return m.Step(&guest.StepRequest{
		State: state,
		Envelope: guest.Envelope{
			MACPVersion: "1.0", Mode: sess.Mode, MessageType: msg.Type, MessageID: fmt.Sprintf("m%d", i+1),
			SessionID: sess.SessionID, Sender: msg.Sender, TimestampUnixMs: int64(1000 + i), Payload: Encode(t, msg.Payload),
		},
		Session:   sess,
		NowUnixMs: int64(1000 + i),
	})
}

// Play offers msgs in order, checks each verdict and code, and returns the
// state after the last accepted one.
func Play(t testing.TB, m guest.Mode, sess guest.Session, state []byte, msgs []Msg) []byte {
	t.Helper()
	for i, msg := range msgs {
		res := Step(t, m, sess, state, i, msg)
		switch {
		case msg.Code == "" && !res.Accepted:
			t.Fatalf("step %d %s from %s: rejected %s (%s), want accepted", i, msg.Type, msg.Sender, res.Code, res.Message)
		case msg.Code != "" && res.Accepted:
			t.Fatalf("step %d %s from %s: accepted, want %s", i, msg.Type, msg.Sender, msg.Code)
		case msg.Code != "" && res.Code != msg.Code:
			t.Fatalf("step %d %s from %s: %s (%s), want %s", i, msg.Type, msg.Sender, res.Code, res.Message, msg.Code)
		case !res.Accepted && res.Message == "":
			t.Fatalf("step %d %s from %s: rejected without a message", i, msg.Type, msg.Sender)
		}
		if res.Accepted {
			if len(res.State) == 0 {
				t.Fatalf("step %d %s: accepted with an empty state", i, msg.Type)
			}
			state = res.State
		}
	}
	return state
}

// Commitment returns a Commitment envelope from sender.
func Commitment(sender string, positive bool, code macperr.Code) Msg {
	action := "ext.completed"
	if !positive {
		action = "ext.failed"
	}
	return Msg{Sender: sender, Type: "Commitment", Code: code, Payload: &macpv1.CommitmentPayload{
		CommitmentId: "c-1", Action: action, AuthorityScope: "session", Reason: "test",
		ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1", OutcomePositive: positive,
	}}
}

// View renders state and decodes it into a generic JSON value, checking that
// rendering twice gives the same bytes.
func View(t testing.TB, m guest.Mode, sess guest.Session, state []byte) map[string]any {
	t.Helper()
	a, err := m.View(state, &sess)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	b, err := m.View(state, &sess)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("View is not deterministic:\n%s\n%s", a, b)
	}
	var v map[string]any
	if err := json.Unmarshal(a, &v); err != nil {
		t.Fatalf("View is not a JSON object: %v\n%s", err, a)
	}
	return v
}

// Subset reports where got does not contain want: objects by key, arrays
// element-wise with equal length, numbers as float64.
func Subset(t testing.TB, got map[string]any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	if diff := subset("$", got, w); diff != "" {
		g, _ := json.Marshal(got)
		t.Fatalf("view mismatch at %s\nview: %s", diff, g)
	}
}

func subset(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return path + "." + k + " (missing)"
			}
			if d := subset(path+"."+k, gv, wv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path + " (length)"
		}
		for i := range w {
			if d := subset(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		return fmt.Sprintf("%s: got %s, want %s", path, gb, wb)
	}
	return ""
}

// Deterministic plays msgs twice from SessionStart and checks that every
// accepted step yields the same state bytes and view both times, and that
// each state re-encodes to itself through reencode (Unmarshal then Marshal).
func Deterministic(t *testing.T, m guest.Mode, sess guest.Session, msgs []Msg, reencode func([]byte) ([]byte, error)) {
	t.Helper()
	run := func() [][]byte {
		state := Start(t, m, sess)
		states := [][]byte{state}
		for i, msg := range msgs {
			res := Step(t, m, sess, state, i, msg)
			if res.Accepted {
				state = res.State
				states = append(states, state)
			}
		}
		return states
	}
	a, b := run(), run()
	if len(a) != len(b) {
		t.Fatalf("runs accepted %d and %d steps", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("state %d differs between runs:\n%x\n%x", i, a[i], b[i])
		}
		again, err := reencode(a[i])
		if err != nil {
			t.Fatalf("state %d does not decode: %v", i, err)
		}
		if !bytes.Equal(again, a[i]) {
			t.Fatalf("state %d does not re-encode to itself:\n%x\n%x", i, again, a[i])
		}
		View(t, m, sess, a[i])
	}
}

// CorruptState checks that m refuses an envelope of type typ with
// INTERNAL_ERROR when the host hands it a state it cannot decode: empty, of
// an unknown format version, or truncated.
func CorruptState(t testing.TB, m guest.Mode, sess guest.Session, typ string) {
	t.Helper()
	for _, state := range [][]byte{nil, {0x08, 0x09}, {0x0a}} {
		res := Step(t, m, sess, state, 0, Msg{Sender: sess.Participants[0], Type: typ, Payload: "{}"})
		if res.Accepted || res.Code != macperr.InternalError {
			t.Errorf("%s on state %x: accepted=%v %s (%s), want INTERNAL_ERROR", typ, state, res.Accepted, res.Code, res.Message)
		}
	}
}

// Reencode returns a function that decodes a state of m and encodes it
// again, for Deterministic.
func Reencode[S any, SP guest.StateCodec[S]](m *guest.Machine[S, SP]) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		s, c, err := m.Decode(b)
		if err != nil {
			return nil, err
		}
		return m.Encode(s, c), nil
	}
}
