package quorum

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	quorumv1 "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const (
	coord = "agent://coordinator"
	alice = "agent://alice"
	bob   = "agent://bob"
	carol = "agent://carol"
	out   = "agent://outsider"
)

var (
	IE = macperr.InvalidEnvelope
	FB = macperr.Forbidden
)

func session(rules string, participants ...string) guest.Session {
	if participants == nil {
		participants = []string{alice, bob, carol}
	}
	if rules == "" {
		rules = "{}"
	}
	return guest.Session{
		SessionID: "quorum-test-session-000001", Mode: ModeName, ModeVersion: ModeVersion,
		ConfigurationVersion: "cfg-1", PolicyVersion: "policy.default",
		Initiator: coord, Participants: participants, PolicyRules: rules, PolicySchemaVersion: 3,
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
	payload any // proto.Message or []byte
	code    macperr.Code
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
		res := Mode{}.Step(&guest.StepRequest{
			State:     state,
			Envelope:  guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: m.typ, MessageID: fmt.Sprintf("m%d", i+1), SessionID: sess.SessionID, Sender: m.sender, Payload: marshal(t, m.payload)},
			Session:   sess,
			NowUnixMs: int64(1000 + i),
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

func request(id string, required uint32) msg {
	return msg{sender: coord, typ: "ApprovalRequest", payload: &quorumv1.ApprovalRequestPayload{RequestId: id, Action: "deploy", Summary: "Deploy v2", Details: []byte("d"), RequiredApprovals: required}}
}

func approve(voter string) msg {
	return msg{sender: voter, typ: "Approve", payload: &quorumv1.ApprovePayload{RequestId: "r1", Reason: "lgtm"}}
}

func reject(voter string) msg {
	return msg{sender: voter, typ: "Reject", payload: &quorumv1.RejectPayload{RequestId: "r1", Reason: "no"}}
}

func abstain(voter string) msg {
	return msg{sender: voter, typ: "Abstain", payload: &quorumv1.AbstainPayload{RequestId: "r1", Reason: "pass"}}
}

func commit(positive bool, code macperr.Code) msg {
	action := "quorum.approved"
	if !positive {
		action = "quorum.rejected"
	}
	return msg{sender: coord, typ: "Commitment", code: code, payload: &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "test", Reason: "done",
		ModeVersion: "1.0.0", PolicyVersion: "policy.default", ConfigurationVersion: "cfg-1", OutcomePositive: positive,
	}}
}

func rejected(m msg, code macperr.Code) msg { m.code = code; return m }

func as(m msg, sender string) msg { m.sender = sender; return m }

var garbage = []byte{0x0a, 0xff}

func TestSessionStart(t *testing.T) {
	cases := []struct {
		name         string
		rules        string
		participants []string
		code         macperr.Code
		want         *Threshold
	}{
		{name: "default policy", rules: "{}"},
		{name: "empty rules text", rules: " "},
		{name: "no participants", participants: []string{}},
		{name: "n_of_m", rules: `{"threshold":{"type":"n_of_m","value":2}}`, want: &Threshold{Type: "n_of_m", Value: 2, Applies: true, Required: 2}},
		{name: "type defaults to n_of_m", rules: `{"threshold":{"value":3}}`, want: &Threshold{Type: "n_of_m", Value: 3, Applies: true, Required: 3}},
		{name: "percentage rounds up", rules: `{"threshold":{"type":"percentage","value":50}}`, want: &Threshold{Type: "percentage", Value: 50, Applies: true, Required: 2}},
		{name: "percentage exact", rules: `{"threshold":{"type":"percentage","value":100}}`, want: &Threshold{Type: "percentage", Value: 100, Applies: true, Required: 3}},
		{name: "percentage 1", rules: `{"threshold":{"type":"percentage","value":1}}`, want: &Threshold{Type: "percentage", Value: 1, Applies: true, Required: 1}},
		{name: "percentage 67 of 3", rules: `{"threshold":{"type":"percentage","value":67}}`, want: &Threshold{Type: "percentage", Value: 67, Applies: true, Required: 3}},
		{name: "percentage 66 of 3", rules: `{"threshold":{"type":"percentage","value":66}}`, want: &Threshold{Type: "percentage", Value: 66, Applies: true, Required: 2}},
		{name: "legacy weighted falls back", rules: `{"threshold":{"type":"weighted","value":5}}`, want: &Threshold{Type: "weighted", Value: 5}},
		{name: "legacy zero value falls back", rules: `{"threshold":{"type":"n_of_m","value":0}}`, want: &Threshold{Type: "n_of_m"}},
		{name: "value as float", rules: `{"threshold":{"value":2.0}}`, want: &Threshold{Type: "n_of_m", Value: 2, Applies: true, Required: 2}},
		{name: "other keys ignored", rules: `{"abstention":{"interpretation":"implicit_reject"},"commitment":{"authority":"any_participant"}}`},
		{name: "percentage above 100", rules: `{"threshold":{"type":"percentage","value":101}}`, code: IE},
		{name: "unknown type", rules: `{"threshold":{"type":"count","value":2}}`, code: IE},
		{name: "negative value", rules: `{"threshold":{"value":-2}}`, code: IE},
		{name: "fractional value", rules: `{"threshold":{"type":"percentage","value":0.5}}`, code: IE},
		{name: "rules not JSON", rules: `nope`, code: IE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sess := session(tc.rules, tc.participants...)
			res := Mode{}.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: "SessionStart", Sender: coord}, Session: sess})
			if tc.code != "" {
				if res.Accepted || res.Code != tc.code {
					t.Fatalf("got accepted=%v %s (%s), want %s", res.Accepted, res.Code, res.Message, tc.code)
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
			if s.Electorate != uint64(len(sess.Participants)) || !reflect.DeepEqual(s.Threshold, tc.want) {
				t.Fatalf("state electorate %d threshold %+v, want %+v", s.Electorate, s.Threshold, tc.want)
			}
		})
	}
}

func TestPercentageUsesIntegerCeiling(t *testing.T) {
	for n := uint64(1); n <= 200; n++ {
		for v := uint64(1); v <= 100; v++ {
			th, err := readThreshold(fmt.Sprintf(`{"threshold":{"type":"percentage","value":%d}}`, v), n)
			if err != nil {
				t.Fatal(err)
			}
			want := v * n / 100
			if v*n%100 != 0 {
				want++
			}
			if th.Required != want {
				t.Fatalf("%d%% of %d: %d, want %d", v, n, th.Required, want)
			}
		}
	}
}

func TestRules(t *testing.T) {
	cases := []struct {
		name         string
		rules        string
		participants []string
		msgs         []msg
	}{
		// ApprovalRequest
		{name: "request by participant", msgs: []msg{rejected(as(request("r1", 2), alice), FB)}},
		{name: "request by outsider, malformed", msgs: []msg{{sender: out, typ: "ApprovalRequest", payload: garbage, code: FB}}},
		{name: "request malformed", msgs: []msg{{sender: coord, typ: "ApprovalRequest", payload: garbage, code: IE}}},
		{name: "request invalid UTF-8", msgs: []msg{{sender: coord, typ: "ApprovalRequest", payload: []byte{0x0a, 0x01, 0xc3}, code: IE}}},
		{name: "request empty id", msgs: []msg{rejected(request("", 2), IE)}},
		{name: "request zero required", msgs: []msg{rejected(request("r1", 0), IE)}},
		{name: "request required above electorate", msgs: []msg{rejected(request("r1", 4), IE)}},
		{name: "request required equals electorate", msgs: []msg{request("r1", 3)}},
		{name: "second request", msgs: []msg{request("r1", 2), rejected(request("r2", 1), IE)}},
		{name: "request with no participants", participants: []string{}, msgs: []msg{rejected(request("r1", 1), IE)}},
		{name: "listed coordinator may request and vote", participants: []string{coord, alice}, msgs: []msg{request("r1", 2), approve(coord), approve(alice), commit(true, "")}},
		// Ballots
		{name: "ballot before request", msgs: []msg{rejected(approve(alice), IE)}},
		{name: "ballot by unlisted coordinator", msgs: []msg{request("r1", 2), rejected(approve(coord), FB)}},
		{name: "ballot by outsider, malformed", msgs: []msg{request("r1", 2), {sender: out, typ: "Reject", payload: garbage, code: FB}}},
		{name: "ballot malformed", msgs: []msg{request("r1", 2), {sender: alice, typ: "Abstain", payload: garbage, code: IE}}},
		{name: "ballot wrong request_id", msgs: []msg{request("r1", 2), {sender: alice, typ: "Approve", payload: &quorumv1.ApprovePayload{RequestId: "r2"}, code: IE}}},
		{name: "ballot empty request_id", msgs: []msg{request("r1", 2), {sender: alice, typ: "Approve", payload: &quorumv1.ApprovePayload{}, code: IE}}},
		{name: "duplicate approve", msgs: []msg{request("r1", 2), approve(alice), rejected(approve(alice), IE)}},
		{name: "approve then reject", msgs: []msg{request("r1", 2), approve(alice), rejected(reject(alice), IE)}},
		{name: "reject then abstain", msgs: []msg{request("r1", 2), reject(alice), rejected(abstain(alice), IE)}},
		{name: "abstain then approve", msgs: []msg{request("r1", 2), abstain(alice), rejected(approve(alice), IE)}},
		{name: "ballots after threshold reached", msgs: []msg{request("r1", 1), approve(alice), reject(bob), commit(true, "")}},
		// Commitment eligibility
		{name: "commitment before request", msgs: []msg{commit(true, IE), commit(false, IE)}},
		{name: "commitment with no ballots", msgs: []msg{request("r1", 2), commit(true, IE), commit(false, IE)}},
		{name: "commitment at 1 of 2", msgs: []msg{request("r1", 2), approve(alice), commit(true, IE), commit(false, IE)}},
		{name: "positive at threshold", msgs: []msg{request("r1", 2), approve(alice), approve(bob), commit(true, "")}},
		{name: "negative rejected once threshold reached", msgs: []msg{request("r1", 2), approve(alice), approve(bob), commit(false, IE), commit(true, "")}},
		{name: "negative when unreachable", msgs: []msg{request("r1", 2), reject(alice), abstain(bob), commit(true, IE), commit(false, "")}},
		{name: "abstentions make it unreachable", msgs: []msg{request("r1", 3), abstain(alice), commit(false, "")}},
		{name: "all abstain is negative", msgs: []msg{request("r1", 1), abstain(alice), abstain(bob), commit(false, IE), abstain(carol), commit(false, "")}},
		{name: "reject alone does not decide", msgs: []msg{request("r1", 2), reject(alice), commit(false, IE), approve(bob), commit(false, IE), reject(carol), commit(false, "")}},
		{name: "commitment malformed", msgs: []msg{request("r1", 1), approve(alice), {sender: coord, typ: "Commitment", payload: garbage, code: IE}}},
		{name: "message after commitment", msgs: []msg{request("r1", 1), approve(alice), commit(true, ""), rejected(approve(bob), IE)}},
		// Policy threshold replaces required_approvals
		{name: "n_of_m replaces required_approvals", rules: `{"threshold":{"type":"n_of_m","value":3}}`, msgs: []msg{
			request("r1", 1), approve(alice), commit(true, IE), approve(bob), commit(true, IE), approve(carol), commit(true, ""),
		}},
		{name: "n_of_m lower than required_approvals", rules: `{"threshold":{"type":"n_of_m","value":1}}`, msgs: []msg{
			request("r1", 3), approve(alice), commit(true, ""),
		}},
		{name: "percentage 50 of 3 needs 2", rules: `{"threshold":{"type":"percentage","value":50}}`, msgs: []msg{
			request("r1", 3), approve(alice), commit(true, IE), approve(bob), commit(true, ""),
		}},
		{name: "percentage makes negative reachable", rules: `{"threshold":{"type":"percentage","value":100}}`, msgs: []msg{
			request("r1", 1), approve(alice), commit(true, IE), reject(bob), commit(false, ""),
		}},
		{name: "legacy weighted uses required_approvals", rules: `{"threshold":{"type":"weighted","value":3}}`, msgs: []msg{
			request("r1", 1), approve(alice), commit(true, ""),
		}},
		{name: "threshold above electorate only allows a negative", rules: `{"threshold":{"type":"n_of_m","value":5}}`, msgs: []msg{
			request("r1", 1), commit(true, IE), commit(false, ""),
		}},
		// Unknown types
		{name: "unknown type from participant", msgs: []msg{{sender: alice, typ: "Vote", code: IE}}},
		{name: "unknown type from coordinator", msgs: []msg{{sender: coord, typ: "Vote", code: IE}}},
		{name: "unknown type from outsider", msgs: []msg{{sender: out, typ: "Vote", code: FB}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sess := session(tc.rules, tc.participants...)
			play(t, sess, begin(t, sess), tc.msgs)
		})
	}
}

func history() []msg {
	return []msg{request("r1", 2), approve(alice), abstain(carol), reject(bob)}
}

func TestStateRoundTripAndDeterminism(t *testing.T) {
	sess := session(`{"threshold":{"type":"percentage","value":50}}`)
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
	s.Commitment = &Commitment{CommitmentID: "c", Action: "quorum.approved", OutcomePositive: true, Sender: coord}
	s2, err := Unmarshal(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, s2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", s, s2)
	}
	v1, _ := Mode{}.View(a, &sess)
	v2, _ := Mode{}.View(b, &sess)
	if !bytes.Equal(v1, v2) {
		t.Fatal("view not deterministic")
	}
}

func TestBadState(t *testing.T) {
	sess := session("")
	for _, st := range [][]byte{nil, garbage, {0x08, 0x09}} {
		r := request("r1", 1)
		res := Mode{}.Step(&guest.StepRequest{State: st, Envelope: guest.Envelope{MessageType: r.typ, Sender: coord, Payload: marshal(t, r.payload)}, Session: sess})
		if res.Accepted || res.Code != macperr.InternalError {
			t.Fatalf("state %x: got %v %s", st, res.Accepted, res.Code)
		}
	}
	if _, err := (Mode{}).View(garbage, &sess); err == nil {
		t.Fatal("View accepted a malformed state")
	}
	sess2 := session("")
	res := Mode{}.Step(&guest.StepRequest{State: begin(t, sess2), Envelope: guest.Envelope{MessageType: "SessionStart", Sender: coord}, Session: sess2})
	if res.Accepted || res.Code != IE {
		t.Fatalf("second SessionStart: %v %s", res.Accepted, res.Code)
	}
}

func TestView(t *testing.T) {
	sess := session(`{"threshold":{"type":"percentage","value":50}}`)
	state := begin(t, sess)
	empty, err := Mode{}.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"Pending","request":null,"policy_threshold":{"type":"percentage","value":50,"applies":true,"required_approvals":2},"ballots":{},"ballot_order":[],"counts":{"approve":0,"reject":0,"abstain":0,"cast":0,"electorate":3,"remaining":3},"eligible_outcome":"none","commitment":null}`
	if string(empty) != want {
		t.Fatalf("empty view\n got %s\nwant %s", empty, want)
	}
	phases := []string{PhaseVoting, PhaseVoting, PhaseVoting, PhaseThresholdUnreachable}
	for i, m := range history() {
		state = play(t, sess, state, []msg{m})
		s, _ := Unmarshal(state)
		if s.Phase() != phases[i] {
			t.Fatalf("after step %d phase %s, want %s", i, s.Phase(), phases[i])
		}
	}
	state = play(t, sess, state, []msg{commit(false, "")})
	view, err := Mode{}.View(state, &sess)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"phase":"Committed","request":{"request_id":"r1","action":"deploy","summary":"Deploy v2","details":"ZA==","required_approvals":2,"effective_required_approvals":2,"requested_by":"agent://coordinator"},` +
		`"policy_threshold":{"type":"percentage","value":50,"applies":true,"required_approvals":2},` +
		`"ballots":{"agent://alice":{"ballot":"APPROVE","reason":"lgtm"},"agent://bob":{"ballot":"REJECT","reason":"no"},"agent://carol":{"ballot":"ABSTAIN","reason":"pass"}},` +
		`"ballot_order":["agent://alice","agent://carol","agent://bob"],"counts":{"approve":1,"reject":1,"abstain":1,"cast":3,"electorate":3,"remaining":0},` +
		`"eligible_outcome":"negative","commitment":{"commitment_id":"c1","action":"quorum.rejected","outcome_positive":false,"sender":"agent://coordinator"}}`
	if string(view) != want {
		t.Fatalf("view\n got %s\nwant %s", view, want)
	}
	var anyView map[string]any
	if err := json.Unmarshal(view, &anyView); err != nil {
		t.Fatal(err)
	}
}

func TestReachedPhase(t *testing.T) {
	sess := session("")
	state := play(t, sess, begin(t, sess), []msg{request("r1", 1), approve(bob)})
	s, _ := Unmarshal(state)
	if s.Phase() != PhaseThresholdReached || s.Eligible() != EligiblePositive {
		t.Fatalf("phase %s eligible %s", s.Phase(), s.Eligible())
	}
}

func TestDescriptor(t *testing.T) {
	d := Mode{}.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || d.DeterminismClass != "semantic-deterministic" || d.ParticipantModel != "quorum" {
		t.Fatalf("descriptor %+v", d)
	}
	want := []string{"SessionStart", "ApprovalRequest", "Approve", "Reject", "Abstain", "Commitment"}
	if !reflect.DeepEqual(d.MessageTypes, want) || !reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.SchemaURIs["protobuf"] == "" {
		t.Fatalf("descriptor %+v", d)
	}
}
