package multiround

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const (
	coord = "agent://coordinator"
	alice = "agent://alice"
	bob   = "agent://bob"
	out   = "agent://outsider"
)

var (
	IE = macperr.InvalidEnvelope
	FB = macperr.Forbidden
)

func session(participants ...string) guest.Session {
	if participants == nil {
		participants = []string{alice, bob}
	}
	return guest.Session{
		SessionID: "multiround-test-session-01", Mode: ModeName, ModeVersion: ModeVersion,
		ConfigurationVersion: "cfg-1", PolicyVersion: "policy.default",
		Initiator: coord, Participants: participants, PolicyRules: "{}", PolicySchemaVersion: 1,
	}
}

func begin(t *testing.T, sess guest.Session) []byte {
	t.Helper()
	res := Mode{}.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: "SessionStart", MessageID: "m0", Sender: coord}, Session: sess})
	if !res.Accepted {
		t.Fatalf("SessionStart rejected: %s %s", res.Code, res.Message)
	}
	return res.State
}

// msg is one envelope of a test script; code "" means it must be accepted.
type msg struct {
	sender  string
	typ     string
	payload []byte
	code    macperr.Code
}

// play runs msgs in order, checking each verdict, and returns the state.
func play(t *testing.T, sess guest.Session, state []byte, msgs []msg) []byte {
	t.Helper()
	for i, m := range msgs {
		res := Mode{}.Step(&guest.StepRequest{
			State:    state,
			Envelope: guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: m.typ, MessageID: fmt.Sprintf("m%d", i+1), SessionID: sess.SessionID, Sender: m.sender, Payload: m.payload},
			Session:  sess,
		})
		switch {
		case m.code == "" && !res.Accepted:
			t.Fatalf("step %d %s from %s: rejected %s (%s), want accept", i, m.typ, m.sender, res.Code, res.Message)
		case m.code != "" && res.Accepted:
			t.Fatalf("step %d %s from %s: accepted, want %s", i, m.typ, m.sender, m.code)
		case m.code != "" && res.Code != m.code:
			t.Fatalf("step %d %s from %s: code %s (%s), want %s", i, m.typ, m.sender, res.Code, res.Message, m.code)
		}
		if res.Accepted {
			state = res.State
		}
	}
	return state
}

func protoValue(v string) []byte {
	b, err := proto.Marshal(&multiroundv1.ContributePayload{Value: v})
	if err != nil {
		panic(err)
	}
	return b
}

func contribute(sender, value string) msg {
	return msg{sender: sender, typ: "Contribute", payload: protoValue(value)}
}

func contributeJSON(sender, value string) msg {
	return msg{sender: sender, typ: "Contribute", payload: []byte(fmt.Sprintf(`{"value":%q}`, value))}
}

func raw(sender string, payload []byte, code macperr.Code) msg {
	return msg{sender: sender, typ: "Contribute", payload: payload, code: code}
}

func commit(sender string, positive bool, code macperr.Code) msg {
	b, err := proto.Marshal(&macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: "multi_round.converged", AuthorityScope: "test", Reason: "done",
		ModeVersion: "1.0.0", PolicyVersion: "policy.default", ConfigurationVersion: "cfg-1", OutcomePositive: positive,
	})
	if err != nil {
		panic(err)
	}
	return msg{sender: sender, typ: "Commitment", payload: b, code: code}
}

func withCode(m msg, code macperr.Code) msg { m.code = code; return m }

func TestDecodeContribute(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		want    string
		wantErr bool
	}{
		{name: "proto", payload: protoValue("option_a"), want: "option_a"},
		{name: "proto value starting with brace", payload: protoValue(`{"value":"x"}`), want: `{"value":"x"}`},
		{name: "proto repeated field, last wins", payload: append(protoValue("a"), protoValue("b")...), want: "b"},
		{name: "proto non-ASCII", payload: protoValue("Grüße ☃"), want: "Grüße ☃"},
		{name: "json", payload: []byte(`{"value":"option_a"}`), want: "option_a"},
		{name: "json with other keys", payload: []byte(`{"round":3,"value":"x"}`), want: "x"},
		{name: "json with leading white space", payload: []byte(" \t{\"value\": \"x\"}"), want: "x"},
		{name: "json with leading newline", payload: []byte("\n{\"value\":\"x\"}"), want: "x"},
		{name: "json escapes", payload: []byte(`{"value":"a\u00e9\n"}`), want: "a\u00e9\n"},
		{name: "empty payload", payload: nil, wantErr: true},
		{name: "proto empty value", payload: []byte{0x0a, 0x00}, wantErr: true},
		{name: "json empty value", payload: []byte(`{"value":""}`), wantErr: true},
		{name: "json value not a string", payload: []byte(`{"value":3}`), wantErr: true},
		{name: "json value null", payload: []byte(`{"value":null}`), wantErr: true},
		{name: "json without value", payload: []byte(`{"val":"x"}`), wantErr: true},
		{name: "json key case differs", payload: []byte(`{"Value":"x"}`), wantErr: true},
		{name: "json array", payload: []byte(`["x"]`), wantErr: true},
		{name: "json broken", payload: []byte(`{"value":"x"`), wantErr: true},
		{name: "json invalid UTF-8", payload: []byte("{\"value\":\"\xff\"}"), wantErr: true},
		{name: "proto truncated", payload: []byte{0x0a, 0x05, 'a'}, wantErr: true},
		{name: "proto unknown field", payload: append(protoValue("a"), 0x10, 0x01), wantErr: true},
		{name: "proto wrong wire type", payload: []byte{0x08, 0x01}, wantErr: true},
		{name: "proto invalid UTF-8", payload: []byte{0x0a, 0x01, 0xff}, wantErr: true},
		{name: "plain text", payload: []byte("option_a"), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeContribute(tc.payload)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("decoded %q, want error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestRules(t *testing.T) {
	cases := []struct {
		name         string
		participants []string
		msgs         []msg
	}{
		{name: "contribute by outsider", msgs: []msg{withCode(contribute(out, "a"), FB)}},
		{name: "contribute by outsider, malformed", msgs: []msg{raw(out, []byte("junk"), FB)}},
		{name: "contribute by unlisted coordinator", msgs: []msg{withCode(contribute(coord, "a"), FB)}},
		{name: "contribute empty payload", msgs: []msg{raw(alice, nil, IE)}},
		{name: "contribute malformed", msgs: []msg{raw(alice, []byte{0x0a, 0x09}, IE)}},
		{name: "contribute empty value", msgs: []msg{withCode(contributeJSON(alice, ""), IE)}},
		{name: "converges with mixed encodings", msgs: []msg{contribute(alice, "a"), contributeJSON(bob, "a"), commit(coord, true, "")}},
		{name: "contribute after convergence", msgs: []msg{contribute(alice, "a"), contribute(bob, "a"), withCode(contribute(bob, "b"), IE), withCode(contribute(alice, "a"), IE)}},
		{name: "resubmitting the same value is accepted", msgs: []msg{contribute(alice, "a"), contribute(alice, "a"), contribute(bob, "b")}},
		{name: "commitment before contributions", msgs: []msg{commit(coord, true, IE)}},
		{name: "commitment before everyone contributed", msgs: []msg{contribute(alice, "a"), commit(coord, true, IE)}},
		{name: "commitment while values differ", msgs: []msg{contribute(alice, "a"), contribute(bob, "b"), commit(coord, true, IE), commit(coord, false, IE)}},
		{name: "commitment by participant", msgs: []msg{contribute(alice, "a"), contribute(bob, "a"), commit(alice, true, FB)}},
		{name: "commitment by outsider before convergence", msgs: []msg{commit(out, true, FB)}},
		{name: "commitment malformed", msgs: []msg{contribute(alice, "a"), contribute(bob, "a"), {sender: coord, typ: "Commitment", payload: []byte{0x0a, 0x09}, code: IE}}},
		{name: "negative commitment after convergence", msgs: []msg{contribute(alice, "a"), contribute(bob, "a"), commit(coord, false, "")}},
		{name: "message after commitment", msgs: []msg{contribute(alice, "a"), contribute(bob, "a"), commit(coord, true, ""), withCode(contribute(bob, "a"), IE)}},
		{name: "single participant converges alone", participants: []string{alice}, msgs: []msg{contribute(alice, "x"), commit(coord, true, "")}},
		{name: "no participants never converge", participants: []string{}, msgs: []msg{withCode(contribute(alice, "x"), FB), commit(coord, true, IE)}},
		{name: "listed initiator contributes and commits", participants: []string{coord, alice}, msgs: []msg{contribute(coord, "x"), contribute(alice, "x"), commit(coord, true, "")}},
		{name: "unknown type from participant", msgs: []msg{{sender: alice, typ: "Vote", code: IE}}},
		{name: "unknown type from initiator", msgs: []msg{{sender: coord, typ: "Vote", code: IE}}},
		{name: "unknown type from outsider", msgs: []msg{{sender: out, typ: "Vote", code: FB}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sess := session(tc.participants...)
			play(t, sess, begin(t, sess), tc.msgs)
		})
	}
}

func TestRounds(t *testing.T) {
	sess := session(alice, bob, "agent://carol")
	steps := []struct {
		m     msg
		round uint64
		conv  bool
	}{
		{contribute(alice, "a"), 1, false},
		{contribute(alice, "a"), 1, false}, // same value: no new round
		{contribute(bob, "b"), 2, false},
		{contributeJSON(alice, "b"), 3, false},
		{contribute("agent://carol", "a"), 4, false},
		{contribute("agent://carol", "b"), 5, true},
	}
	state := begin(t, sess)
	for i, st := range steps {
		state = play(t, sess, state, []msg{st.m})
		s, err := Unmarshal(state)
		if err != nil {
			t.Fatal(err)
		}
		if s.Round != st.round || s.Converged != st.conv {
			t.Fatalf("after step %d: round %d converged %v, want %d %v", i, s.Round, s.Converged, st.round, st.conv)
		}
	}
	view, err := Mode{}.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"Converged","converged_value":"b","round":5,"final":{"agent://alice":"b","agent://bob":"b","agent://carol":"b"},"converged":true,"commitment":null}`
	if string(view) != want {
		t.Fatalf("view\n got %s\nwant %s", view, want)
	}
}

func TestStateRoundTripAndDeterminism(t *testing.T) {
	sess := session()
	h := []msg{contribute(alice, "<a&b>"), contribute(bob, "x"), contribute(bob, "<a&b>"), commit(coord, true, "")}
	a := play(t, sess, begin(t, sess), h)
	b := play(t, sess, begin(t, sess), h)
	if !bytes.Equal(a, b) {
		t.Fatal("same history gave different state bytes")
	}
	s, err := Unmarshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Marshal(), a) {
		t.Fatal("Marshal(Unmarshal(state)) != state")
	}
	s2, _ := Unmarshal(s.Marshal())
	if !reflect.DeepEqual(s, s2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", s, s2)
	}
	view, err := Mode{}.View(a, &sess)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(view), `"converged_value":"<a&b>"`) || !strings.Contains(string(view), `"phase":"Committed"`) ||
		!strings.Contains(string(view), `"commitment":{"commitment_id":"c1","action":"multi_round.converged","outcome_positive":true,"sender":"agent://coordinator"}`) {
		t.Fatalf("view %s", view)
	}
	empty, _ := Mode{}.View(begin(t, sess), &sess)
	if string(empty) != `{"phase":"Contributing","converged_value":"","round":0,"final":{},"converged":false,"commitment":null}` {
		t.Fatalf("empty view %s", empty)
	}
}

func TestBadState(t *testing.T) {
	sess := session()
	for _, st := range [][]byte{nil, {0x0a, 0xff}, {0x08, 0x02}} {
		res := Mode{}.Step(&guest.StepRequest{State: st, Envelope: guest.Envelope{MessageType: "Contribute", Sender: alice, Payload: protoValue("a")}, Session: sess})
		if res.Accepted || res.Code != macperr.InternalError {
			t.Fatalf("state %x: got %v %s", st, res.Accepted, res.Code)
		}
	}
	if _, err := (Mode{}).View([]byte{0x0a, 0xff}, &sess); err == nil {
		t.Fatal("View accepted a malformed state")
	}
	res := Mode{}.Step(&guest.StepRequest{State: begin(t, sess), Envelope: guest.Envelope{MessageType: "SessionStart", Sender: coord}, Session: sess})
	if res.Accepted || res.Code != IE {
		t.Fatalf("second SessionStart: %v %s", res.Accepted, res.Code)
	}
}

func TestDescriptor(t *testing.T) {
	d := Mode{}.Describe()
	if d.Mode != "ext.multi_round.v1" || d.ModeVersion != "1.0.0" || d.DeterminismClass != "semantic-deterministic" || d.ParticipantModel != "peer" {
		t.Fatalf("descriptor %+v", d)
	}
	if !reflect.DeepEqual(d.MessageTypes, []string{"SessionStart", "Contribute", "Commitment"}) || !reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.SchemaURIs["protobuf"] == "" {
		t.Fatalf("descriptor %+v", d)
	}
}
