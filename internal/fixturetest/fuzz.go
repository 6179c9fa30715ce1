package fixturetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/internal/fixture"
	"github.com/concord-macp/concord/macperr"
)

// Registered reports whether code is in the MACP error registry.
func Registered(code string) bool { return macperr.Code(code).Known() }

// message is one envelope of a fixture, encoded.
type message struct {
	sender, typ string
	payload     []byte
}

// script loads fixture file (a name in Dir) as the bound session and its
// messages, encoded as the host would send them.
func script(t testing.TB, name string) (guest.Session, []message) {
	t.Helper()
	f, err := fixture.Load(filepath.Join(Dir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	sess := fixtureSession(t, f)
	var msgs []message
	for _, m := range f.Messages {
		payload, err := m.EncodePayload()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, message{m.Sender, m.MessageType, payload})
	}
	return sess, msgs
}

// FuzzStep fuzzes m.Step natively after a prefix of the fixture's history
// (name, e.g. "task_happy_path.json"): the fuzzer picks how many of the
// fixture's messages are applied first, then one envelope of any type,
// sender (the initiator, a participant or an outsider) and payload, as an
// agent's or as a runtime-written envelope, at any session clock. The
// fixture's messages are the seed corpus beside the one in testdata.
//
// Properties: Step never panics; a rejection carries a code of the MACP
// registry and a message; an accepted state renders a JSON object view;
// every timer uses a message id reserved for the runtime; the strings that
// cross the ABI are UTF-8; Step does not
// modify its input; and the same request gives the same result.
func FuzzStep(f *testing.F, m guest.Mode, name string) {
	sess, msgs := script(f, name)
	senders := append(append([]string{sess.Initiator}, sess.Participants...), "agent://outsider")
	for i, msg := range msgs {
		f.Add(uint8(i), msg.typ, uint8(slices.Index(senders, msg.sender)), msg.payload, false, int64(1_000+i))
	}
	f.Fuzz(func(t *testing.T, prefix uint8, typ string, who uint8, payload []byte, runtime bool, clock int64) {
		state := start(t, m, sess)
		for i, msg := range msgs[:int(prefix)%(len(msgs)+1)] {
			res := m.Step(request(sess, state, msg, i+1, false, int64(1_000+i)))
			if res.Accepted {
				state = res.State
			}
		}
		// The host passes only UTF-8 message types (the protobuf decoder
		// of the API refuses anything else); payloads are any bytes.
		msg := message{senders[int(who)%len(senders)], strings.ToValidUTF8(typ, "\uFFFD"), payload}
		checkStep(t, m, sess, state, msg, runtime, clock)
	})
}

func start(t *testing.T, m guest.Mode, sess guest.Session) []byte {
	t.Helper()
	res := m.Step(&guest.StepRequest{
		Envelope:  guest.Envelope{MACPVersion: "1.0", Mode: sess.Mode, MessageType: "SessionStart", MessageID: "m0", SessionID: sess.SessionID, Sender: sess.Initiator},
		Session:   sess,
		NowUnixMs: 1_000,
	})
	if !res.Accepted {
		t.Fatalf("SessionStart rejected: %s %s", res.Code, res.Message)
	}
	return res.State
}

func request(sess guest.Session, state []byte, msg message, n int, runtime bool, clock int64) *guest.StepRequest {
	id := fmt.Sprintf("m%d", n)
	if runtime {
		id = "runtime:fuzz"
	}
	return &guest.StepRequest{
		State: state,
		Envelope: guest.Envelope{MACPVersion: "1.0", Mode: sess.Mode, MessageType: msg.typ, MessageID: id,
			SessionID: sess.SessionID, Sender: msg.sender, TimestampUnixMs: 1_000 + int64(n), Payload: msg.payload},
		Session:        sess,
		NowUnixMs:      1_000 + int64(n),
		RuntimeWritten: runtime,
		SessionClockMs: clock,
	}
}

func checkStep(t *testing.T, m guest.Mode, sess guest.Session, state []byte, msg message, runtime bool, clock int64) {
	t.Helper()
	stateCopy, payloadCopy := bytes.Clone(state), bytes.Clone(msg.payload)
	res := m.Step(request(sess, state, msg, 99, runtime, clock))
	if !bytes.Equal(state, stateCopy) || !bytes.Equal(msg.payload, payloadCopy) {
		t.Fatalf("%s from %s: Step modified its input", msg.typ, msg.sender)
	}
	again := m.Step(request(sess, bytes.Clone(state), message{msg.sender, msg.typ, bytes.Clone(msg.payload)}, 99, runtime, clock))
	if !reflect.DeepEqual(res, again) {
		t.Fatalf("%s from %s: the same request gave\n%+v\nthen\n%+v", msg.typ, msg.sender, res, again)
	}
	if !res.Accepted {
		if !Registered(string(res.Code)) || strings.TrimSpace(res.Message) == "" {
			t.Fatalf("%s from %s rejected with code %q, message %q: want a registry code and a message", msg.typ, msg.sender, res.Code, res.Message)
		}
		// The message crosses the ABI as a protobuf string, which the host
		// refuses to decode unless it is UTF-8.
		if !utf8.ValidString(res.Message) {
			t.Fatalf("%s from %s rejected with a message that is not UTF-8: %q", msg.typ, msg.sender, res.Message)
		}
		return
	}
	if res.Code != "" {
		t.Fatalf("%s from %s accepted with code %q", msg.typ, msg.sender, res.Code)
	}
	view, err := m.View(res.State, &sess)
	if err != nil {
		t.Fatalf("%s from %s accepted, but its state does not render: %v", msg.typ, msg.sender, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(view, &obj); err != nil {
		t.Fatalf("view %q is not a JSON object: %v", view, err)
	}
	for _, tm := range res.Timers {
		if !strings.HasPrefix(tm.MessageID, "runtime:") && !strings.HasPrefix(tm.MessageID, "implicit-accept:") {
			t.Fatalf("timer message id %q is not reserved for the runtime", tm.MessageID)
		}
		if !utf8.ValidString(tm.MessageType) || !utf8.ValidString(tm.MessageID) || !utf8.ValidString(tm.Sender) {
			t.Fatalf("timer %+v has a string field that is not UTF-8", tm)
		}
	}
}
