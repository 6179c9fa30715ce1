package handoff

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	handoffv1 "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const (
	owner  = "agent://owner"
	target = "agent://target"
	other  = "agent://other"
	out    = "agent://outsider"
)

func session(rules string, participants ...string) guest.Session {
	if participants == nil {
		participants = []string{owner, target, other}
	}
	return guest.Session{
		SessionID: "handoff-test-session-00001", Mode: ModeName, ModeVersion: "1.0.0",
		ConfigurationVersion: "cfg-1", PolicyVersion: "policy.default",
		Initiator: owner, Participants: participants, PolicyRules: rules, PolicySchemaVersion: 1,
	}
}

func begin(t *testing.T, sess guest.Session) []byte {
	t.Helper()
	res := Mode{}.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: "SessionStart", MessageID: "m0", Sender: owner}, Session: sess})
	if !res.Accepted {
		t.Fatalf("SessionStart rejected: %s %s", res.Code, res.Message)
	}
	return res.State
}

// msg is one envelope of a test script; code "" means it must be accepted.
type msg struct {
	sender  string
	typ     string
	payload any // proto.Message or []byte
	code    macperr.Code
	runtime bool   // written by the runtime (StepRequest.RuntimeWritten)
	id      string // message_id; generated when empty
}

func marshal(t *testing.T, p any) []byte {
	t.Helper()
	switch p := p.(type) {
	case nil:
		return nil
	case []byte:
		return p
	case proto.Message:
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("payload %T", p)
	return nil
}

// play runs msgs in order, checking each verdict, and returns the state.
func play(t *testing.T, sess guest.Session, state []byte, msgs []msg) []byte {
	t.Helper()
	for i, m := range msgs {
		id := m.id
		if id == "" {
			id = "m" + string(rune('a'+i))
		}
		req := &guest.StepRequest{
			State:          state,
			Envelope:       guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: m.typ, MessageID: id, SessionID: sess.SessionID, Sender: m.sender, Payload: marshal(t, m.payload)},
			Session:        sess,
			NowUnixMs:      int64(10_000 + i),
			SessionClockMs: int64(1_000 + i),
			RuntimeWritten: m.runtime,
		}
		res := Mode{}.Step(req)
		switch {
		case m.code == "" && !res.Accepted:
			t.Fatalf("step %d %s from %s: rejected %s (%s), want accept", i, m.typ, m.sender, res.Code, res.Message)
		case m.code != "" && res.Accepted:
			t.Fatalf("step %d %s from %s: accepted, want %s", i, m.typ, m.sender, m.code)
		case m.code != "" && res.Code != m.code:
			t.Fatalf("step %d %s from %s: code %s (%s), want %s", i, m.typ, m.sender, res.Code, res.Message, m.code)
		}
		if res.Accepted {
			if len(res.State) == 0 {
				t.Fatalf("step %d: accepted with empty state", i)
			}
			state = res.State
		}
	}
	return state
}

func offer(id, to string) *handoffv1.HandoffOfferPayload {
	return &handoffv1.HandoffOfferPayload{HandoffId: id, TargetParticipant: to, Scope: "support", Reason: "escalate"}
}

func accept(id, by string) *handoffv1.HandoffAcceptPayload {
	return &handoffv1.HandoffAcceptPayload{HandoffId: id, AcceptedBy: by, Reason: "ready"}
}

func decline(id, by string) *handoffv1.HandoffDeclinePayload {
	return &handoffv1.HandoffDeclinePayload{HandoffId: id, DeclinedBy: by, Reason: "busy"}
}

func context(id string) *handoffv1.HandoffContextPayload {
	return &handoffv1.HandoffContextPayload{HandoffId: id, ContentType: "text/plain", Context: []byte("notes")}
}

func commitment(positive bool) *macpv1.CommitmentPayload {
	action := "handoff.accepted"
	if !positive {
		action = "handoff.declined"
	}
	return &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "test", Reason: "done",
		ModeVersion: "1.0.0", PolicyVersion: "policy.default", ConfigurationVersion: "cfg-1", OutcomePositive: positive,
	}
}

var garbage = []byte{0x0a, 0xff} // length prefix runs past the end

func TestSessionStart(t *testing.T) {
	cases := []struct {
		name         string
		participants []string
		rules        string
		code         macperr.Code
		timeout      int64
	}{
		{name: "default policy", rules: "{}"},
		{name: "empty rules text", rules: ""},
		{name: "timeout", rules: `{"acceptance":{"implicit_accept_timeout_ms":5000}}`, timeout: 5000},
		{name: "timeout written as float", rules: `{"acceptance":{"implicit_accept_timeout_ms":5000.0}}`, timeout: 5000},
		{name: "zero timeout", rules: `{"acceptance":{"implicit_accept_timeout_ms":0}}`},
		{name: "other keys ignored", rules: `{"commitment":{"authority":"any_participant"},"acceptance":{}}`},
		{name: "null acceptance", rules: `{"acceptance":null}`},
		{name: "negative timeout", rules: `{"acceptance":{"implicit_accept_timeout_ms":-1}}`, code: macperr.InvalidEnvelope},
		{name: "fractional timeout", rules: `{"acceptance":{"implicit_accept_timeout_ms":1.5}}`, code: macperr.InvalidEnvelope},
		{name: "string timeout", rules: `{"acceptance":{"implicit_accept_timeout_ms":"soon"}}`, code: macperr.InvalidEnvelope},
		{name: "rules not an object", rules: `[1]`, code: macperr.InvalidEnvelope},
		{name: "rules not JSON", rules: `{`, code: macperr.InvalidEnvelope},
		{name: "initiator not a participant", participants: []string{target, other}, code: macperr.InvalidEnvelope},
		{name: "no participants", participants: []string{}, code: macperr.InvalidEnvelope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sess := session(tc.rules, tc.participants...)
			res := Mode{}.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: "SessionStart", Sender: owner}, Session: sess})
			if tc.code != "" {
				if res.Accepted || res.Code != tc.code {
					t.Fatalf("got accepted=%v code=%s (%s), want %s", res.Accepted, res.Code, res.Message, tc.code)
				}
				return
			}
			if !res.Accepted {
				t.Fatalf("rejected: %s %s", res.Code, res.Message)
			}
			s, err := Unmarshal(res.State)
			if err != nil {
				t.Fatal(err)
			}
			if s.ImplicitAcceptTimeoutMs != tc.timeout {
				t.Fatalf("timeout %d, want %d", s.ImplicitAcceptTimeoutMs, tc.timeout)
			}
		})
	}
}

func TestSecondSessionStartRejected(t *testing.T) {
	sess := session("{}")
	state := begin(t, sess)
	res := Mode{}.Step(&guest.StepRequest{State: state, Envelope: guest.Envelope{MessageType: "SessionStart", Sender: owner}, Session: sess})
	if res.Accepted || res.Code != macperr.InvalidEnvelope {
		t.Fatalf("got %v %s", res.Accepted, res.Code)
	}
}

func TestRules(t *testing.T) {
	IE, FB := macperr.InvalidEnvelope, macperr.Forbidden
	cases := []struct {
		name  string
		rules string
		msgs  []msg
	}{
		// HandoffOffer
		{name: "offer by non-owner participant", msgs: []msg{{sender: target, typ: "HandoffOffer", payload: offer("h1", other), code: FB}}},
		{name: "offer by outsider with malformed payload", msgs: []msg{{sender: out, typ: "HandoffOffer", payload: garbage, code: FB}}},
		{name: "offer malformed", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: garbage, code: IE}}},
		{name: "offer invalid UTF-8", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: []byte{0x0a, 0x01, 0xff}, code: IE}}},
		{name: "offer empty id", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: offer("", target), code: IE}}},
		{name: "offer empty target", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: offer("h1", ""), code: IE}}},
		{name: "offer undeclared target", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: offer("h1", out), code: IE}}},
		{name: "offer to self", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: offer("h1", owner), code: IE}}},
		{name: "offer while another is pending", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: owner, typ: "HandoffOffer", payload: offer("h2", other), code: IE},
		}},
		{name: "offer after an accept", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target)},
			{sender: owner, typ: "HandoffOffer", payload: offer("h2", other), code: IE},
		}},
		{name: "new offer after a decline, any target", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: owner, typ: "HandoffOffer", payload: offer("h2", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h2", "")},
			{sender: owner, typ: "HandoffOffer", payload: offer("h3", other)},
			{sender: other, typ: "HandoffAccept", payload: accept("h3", "")},
		}},
		{name: "reused handoff_id after a decline", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", other), code: IE},
		}},
		// HandoffContext
		{name: "context before and after the answer", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: owner, typ: "HandoffContext", payload: context("h1")},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: owner, typ: "HandoffContext", payload: context("h1")},
		}},
		{name: "context for unknown offer", msgs: []msg{{sender: owner, typ: "HandoffContext", payload: context("h1"), code: IE}}},
		{name: "context by target", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffContext", payload: context("h1"), code: FB},
		}},
		{name: "context by outsider", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: out, typ: "HandoffContext", payload: garbage, code: FB},
		}},
		{name: "context malformed", msgs: []msg{{sender: owner, typ: "HandoffContext", payload: garbage, code: IE}}},
		// HandoffAccept / HandoffDecline
		{name: "accept before offer", msgs: []msg{{sender: target, typ: "HandoffAccept", payload: accept("h1", target), code: IE}}},
		{name: "decline before offer", msgs: []msg{{sender: target, typ: "HandoffDecline", payload: decline("h1", target), code: IE}}},
		{name: "accept by outsider", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: out, typ: "HandoffAccept", payload: garbage, code: FB},
		}},
		{name: "accept by owner", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: owner, typ: "HandoffAccept", payload: accept("h1", owner), code: FB},
		}},
		{name: "accept by non-target participant", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: other, typ: "HandoffAccept", payload: accept("h1", other), code: FB},
		}},
		{name: "decline by non-target participant", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: other, typ: "HandoffDecline", payload: decline("h1", ""), code: FB},
		}},
		{name: "accepted_by differs from sender", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", other), code: IE},
		}},
		{name: "declined_by differs from sender", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", other), code: IE},
		}},
		{name: "accept malformed", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: garbage, code: IE},
		}},
		{name: "client-sent implicit accept", rules: `{"acceptance":{"implicit_accept_timeout_ms":10}}`, msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: &handoffv1.HandoffAcceptPayload{HandoffId: "h1", Implicit: true}, id: "implicit-accept:h1", code: IE},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target)},
		}},
		{name: "second accept", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target), code: IE},
		}},
		{name: "decline after accept", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target), code: IE},
		}},
		{name: "accept after decline", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target), code: IE},
		}},
		// Runtime-written implicit accept
		{name: "implicit accept", rules: `{"acceptance":{"implicit_accept_timeout_ms":10}}`, msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: &handoffv1.HandoffAcceptPayload{HandoffId: "h1", AcceptedBy: target, Implicit: true}, id: "implicit-accept:h1", runtime: true},
			{sender: owner, typ: "Commitment", payload: commitment(true)},
		}},
		{name: "implicit accept without timeout in policy", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: &handoffv1.HandoffAcceptPayload{HandoffId: "h1", Implicit: true}, id: "implicit-accept:h1", runtime: true, code: IE},
		}},
		{name: "implicit accept with wrong message_id", rules: `{"acceptance":{"implicit_accept_timeout_ms":10}}`, msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: &handoffv1.HandoffAcceptPayload{HandoffId: "h1", Implicit: true}, id: "x", runtime: true, code: IE},
		}},
		{name: "runtime accept without implicit flag", rules: `{"acceptance":{"implicit_accept_timeout_ms":10}}`, msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target), id: "implicit-accept:h1", runtime: true, code: IE},
		}},
		{name: "implicit accept loses to an earlier decline", rules: `{"acceptance":{"implicit_accept_timeout_ms":10}}`, msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: &handoffv1.HandoffAcceptPayload{HandoffId: "h1", Implicit: true}, id: "implicit-accept:h1", runtime: true, code: IE},
		}},
		{name: "runtime-written offer", msgs: []msg{{sender: owner, typ: "HandoffOffer", payload: offer("h1", target), runtime: true, code: IE}}},
		// Commitment
		{name: "commitment before any offer", msgs: []msg{{sender: owner, typ: "Commitment", payload: commitment(true), code: IE}}},
		{name: "commitment while offer pending", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: owner, typ: "HandoffContext", payload: context("h1")},
			{sender: owner, typ: "Commitment", payload: commitment(false), code: IE},
		}},
		{name: "commitment after accept", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target)},
			{sender: owner, typ: "Commitment", payload: commitment(true)},
		}},
		{name: "commitment after decline", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: owner, typ: "Commitment", payload: commitment(false)},
		}},
		{name: "commitment after decline with a new offer pending", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: owner, typ: "HandoffOffer", payload: offer("h2", other)},
			{sender: owner, typ: "Commitment", payload: commitment(false)},
		}},
		{name: "commitment malformed", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffAccept", payload: accept("h1", target)},
			{sender: owner, typ: "Commitment", payload: garbage, code: IE},
		}},
		{name: "message after commitment", msgs: []msg{
			{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
			{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
			{sender: owner, typ: "Commitment", payload: commitment(false)},
			{sender: owner, typ: "HandoffContext", payload: context("h1"), code: IE},
		}},
		// Unknown types
		{name: "unknown type from participant", msgs: []msg{{sender: target, typ: "Vote", payload: nil, code: IE}}},
		{name: "unknown type from outsider", msgs: []msg{{sender: out, typ: "Vote", payload: nil, code: FB}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules := tc.rules
			if rules == "" {
				rules = "{}"
			}
			sess := session(rules)
			play(t, sess, begin(t, sess), tc.msgs)
		})
	}
}

func history() []msg {
	return []msg{
		{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
		{sender: owner, typ: "HandoffContext", payload: context("h1")},
		{sender: target, typ: "HandoffDecline", payload: decline("h1", target)},
		{sender: owner, typ: "HandoffOffer", payload: offer("h2", other)},
		{sender: other, typ: "HandoffAccept", payload: accept("h2", other)},
		{sender: owner, typ: "HandoffContext", payload: context("h2")},
		{sender: owner, typ: "Commitment", payload: commitment(true)},
	}
}

func TestStateRoundTripAndDeterminism(t *testing.T) {
	sess := session(`{"acceptance":{"implicit_accept_timeout_ms":300}}`)
	a := play(t, sess, begin(t, sess), history())
	b := play(t, sess, begin(t, sess), history())
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
	s2, err := Unmarshal(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, s2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", s, s2)
	}
	if len(s.Offers) != 2 || len(s.Contexts) != 2 || s.Commitment == nil || s.ImplicitAcceptTimeoutMs != 300 {
		t.Fatalf("unexpected state %+v", s)
	}
	v1, err := Mode{}.View(a, &sess)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := Mode{}.View(b, &sess)
	if !bytes.Equal(v1, v2) {
		t.Fatal("view not deterministic")
	}
}

func TestBadState(t *testing.T) {
	sess := session("{}")
	for _, st := range [][]byte{nil, garbage, {0x08, 0x07}} {
		res := Mode{}.Step(&guest.StepRequest{State: st, Envelope: guest.Envelope{MessageType: "HandoffOffer", Sender: owner, Payload: marshal(t, offer("h1", target))}, Session: sess})
		if res.Accepted || res.Code != macperr.InternalError {
			t.Fatalf("state %x: got %v %s", st, res.Accepted, res.Code)
		}
	}
	if _, err := (Mode{}).View(garbage, &sess); err == nil {
		t.Fatal("View accepted a malformed state")
	}
}

func TestView(t *testing.T) {
	sess := session(`{"acceptance":{"implicit_accept_timeout_ms":300}}`)
	state := begin(t, sess)
	empty, err := Mode{}.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"Pending","implicit_accept_timeout_ms":300,"offers":{},"offer_order":[],"contexts":{},"commitment":null}`
	if string(empty) != want {
		t.Fatalf("empty view\n got %s\nwant %s", empty, want)
	}
	phases := []string{PhaseOfferPending, PhaseOfferPending, PhaseDeclined, PhaseOfferPending, PhaseAccepted, PhaseAccepted, PhaseCommitted}
	for i, m := range history() {
		state = play(t, sess, state, []msg{m})
		s, _ := Unmarshal(state)
		if s.Phase() != phases[i] {
			t.Fatalf("after step %d phase %s, want %s", i, s.Phase(), phases[i])
		}
	}
	view, err := Mode{}.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Phase  string
		Offers map[string]struct {
			HandoffID         string `json:"handoff_id"`
			TargetParticipant string `json:"target_participant"`
			Scope             string `json:"scope"`
			OfferedBy         string `json:"offered_by"`
			Disposition       string `json:"disposition"`
			AcceptedBy        string `json:"accepted_by"`
			DeclinedBy        string `json:"declined_by"`
		}
		OfferOrder []string `json:"offer_order"`
		Contexts   map[string][]struct {
			ContentType string `json:"content_type"`
			Context     []byte `json:"context"`
			Sender      string `json:"sender"`
		}
		Commitment *struct {
			Action          string `json:"action"`
			OutcomePositive bool   `json:"outcome_positive"`
		}
	}
	if err := json.Unmarshal(view, &got); err != nil {
		t.Fatal(err)
	}
	h1, h2 := got.Offers["h1"], got.Offers["h2"]
	switch {
	case got.Phase != PhaseCommitted,
		h1.Disposition != "Declined" || h1.DeclinedBy != target || h1.AcceptedBy != "" || h1.OfferedBy != owner || h1.Scope != "support",
		h2.Disposition != "Accepted" || h2.AcceptedBy != other || h2.TargetParticipant != other || h2.HandoffID != "h2",
		strings.Join(got.OfferOrder, ",") != "h1,h2",
		len(got.Contexts["h1"]) != 1 || string(got.Contexts["h1"][0].Context) != "notes" || got.Contexts["h2"][0].Sender != owner,
		got.Commitment == nil || !got.Commitment.OutcomePositive || got.Commitment.Action != "handoff.accepted":
		t.Fatalf("unexpected view %s", view)
	}
}

func TestImplicitAcceptView(t *testing.T) {
	sess := session(`{"acceptance":{"implicit_accept_timeout_ms":10}}`)
	state := play(t, sess, begin(t, sess), []msg{
		{sender: owner, typ: "HandoffOffer", payload: offer("h1", target)},
		{sender: target, typ: "HandoffAccept", payload: &handoffv1.HandoffAcceptPayload{HandoffId: "h1", AcceptedBy: target, Implicit: true}, id: ImplicitAcceptIDPrefix + "h1", runtime: true},
	})
	view, err := Mode{}.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{`"disposition":"Accepted"`, `"implicit":true`, `"accepted_by":"agent://target"`, `"offered_at_unix_ms":10000`} {
		if !strings.Contains(string(view), frag) {
			t.Fatalf("view %s lacks %s", view, frag)
		}
	}
}

func TestDescriptor(t *testing.T) {
	d := Mode{}.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || d.DeterminismClass != "context-frozen" || d.ParticipantModel != "delegated" {
		t.Fatalf("descriptor %+v", d)
	}
	if !reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.MessageTypes[0] != "SessionStart" || len(d.MessageTypes) != 6 {
		t.Fatalf("message types %v / %v", d.MessageTypes, d.TerminalMessageTypes)
	}
	if d.SchemaURIs["protobuf"] == "" {
		t.Fatal("no protobuf schema URI")
	}
}

// TestImplicitAcceptTimer checks the timer the mode asks the runtime for:
// set by an offer under a timeout policy, due at the offer's session clock
// plus the timeout, carrying the synthetic accept, kept while the offer is
// pending and withdrawn once it is answered. Played back as a runtime-written
// envelope, the timer's own envelope is accepted as an implicit accept.
func TestImplicitAcceptTimer(t *testing.T) {
	sess := session(`{"acceptance":{"implicit_accept_timeout_ms":5000}}`)
	step := func(state []byte, sender, typ string, payload any, clock int64, runtime bool, id string) guest.Result {
		t.Helper()
		return Mode{}.Step(&guest.StepRequest{State: state, Session: sess, SessionClockMs: clock, RuntimeWritten: runtime,
			Envelope: guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: typ, MessageID: id, SessionID: sess.SessionID,
				Sender: sender, Payload: marshal(t, payload)}})
	}
	res := step(nil, owner, "SessionStart", nil, 0, false, "m0")
	if !res.Accepted || len(res.Timers) != 0 {
		t.Fatalf("SessionStart: %+v", res)
	}
	res = step(res.State, owner, "HandoffOffer", offer("h1", target), 1_200, false, "m1")
	if !res.Accepted || len(res.Timers) != 1 {
		t.Fatalf("offer: accepted %t, %d timers", res.Accepted, len(res.Timers))
	}
	timer := res.Timers[0]
	if timer.DueSessionClockMs != 6_200 || timer.MessageType != "HandoffAccept" || timer.MessageID != "implicit-accept:h1" || timer.Sender != target {
		t.Fatalf("timer %+v", timer)
	}
	var p handoffv1.HandoffAcceptPayload
	if err := proto.Unmarshal(timer.Payload, &p); err != nil || p.HandoffId != "h1" || p.AcceptedBy != target || !p.Implicit {
		t.Fatalf("timer payload %v, %v", &p, err)
	}
	// Context keeps the timer pending, unchanged.
	res = step(res.State, owner, "HandoffContext", context("h1"), 3_000, false, "m2")
	if !res.Accepted || len(res.Timers) != 1 || res.Timers[0].DueSessionClockMs != 6_200 {
		t.Fatalf("context: %+v", res.Timers)
	}
	pending := res.State

	fired := step(pending, timer.Sender, timer.MessageType, timer.Payload, 6_200, true, timer.MessageID)
	if !fired.Accepted || len(fired.Timers) != 0 {
		t.Fatalf("synthetic accept: %s %s, %d timers", fired.Code, fired.Message, len(fired.Timers))
	}
	if s, _ := Unmarshal(fired.State); !s.Offers[0].Implicit || s.Offers[0].Disposition != Accepted {
		t.Fatalf("after the synthetic accept: %+v", s.Offers[0])
	}
	declined := step(pending, target, "HandoffDecline", decline("h1", target), 4_000, false, "m3")
	if !declined.Accepted || len(declined.Timers) != 0 {
		t.Fatalf("decline: %s, %d timers", declined.Code, len(declined.Timers))
	}
	if late := step(declined.State, timer.Sender, timer.MessageType, timer.Payload, 6_200, true, timer.MessageID); late.Accepted {
		t.Fatal("a synthetic accept after the decline was accepted")
	}
}
