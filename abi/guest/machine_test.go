package guest_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	kt "github.com/concord-macp/concord/abi/guest/guesttest"
	"github.com/concord-macp/concord/abi/guest/internal/poll"
	"github.com/concord-macp/concord/macperr"
)

const (
	FB = macperr.Forbidden
	IE = macperr.InvalidEnvelope
	IN = macperr.InternalError
)

// pollMode is a Machine over package poll's types that uses every part of
// the table: senders, phases, a role, a guard, JSON and protobuf payloads.
func pollMode() *guest.Machine[poll.State, *poll.State] {
	return &guest.Machine[poll.State, *poll.State]{
		Descriptor:      guest.Descriptor{Mode: "ext.test.poll.v1", ModeVersion: "1.0.0"},
		MinParticipants: 1,
		MaxParticipants: 3,
		Start: func(s *poll.State, req *guest.StepRequest) error {
			if req.Session.PolicyRules == `{"refuse":true}` {
				return errors.New("refused by the rules")
			}
			return nil
		},
		Status: func(s *poll.State, sess *guest.Session) guest.Status {
			switch {
			case s.Question == "":
				return guest.Status{Phase: "Asking", Why: "nothing was asked"}
			case len(s.Votes) < len(sess.Participants):
				return guest.Status{Phase: "Voting", Eligible: guest.Eligibility{Negative: true}, Why: "votes are missing"}
			}
			return guest.Status{Phase: "Done", Eligible: guest.Eligibility{Positive: true, Negative: true}}
		},
		Messages: []guest.Message[*poll.State]{
			guest.On("Ask", guest.Initiator, func(s *poll.State, _ *guest.StepRequest, p *poll.Ask) error {
				s.Question, s.Tags = p.Question, p.Tags
				return nil
			}).In("Asking"),
			guest.On("Answer", guest.Participants, func(s *poll.State, req *guest.StepRequest, p *poll.Answer) error {
				if slices.ContainsFunc(s.Votes, func(v poll.Vote) bool { return v.Voter == req.Envelope.Sender }) {
					return guest.Invalid("%s already answered", req.Envelope.Sender)
				}
				s.Votes = append(s.Votes, poll.Vote{Voter: req.Envelope.Sender, Choice: p.Choice})
				return nil
			}).In("Voting").Where(func(s *poll.State, req *guest.StepRequest) error {
				if req.Envelope.Sender == req.Session.Initiator {
					return guest.Forbidden("the initiator asks, it does not answer")
				}
				return nil
			}),
			// Ballot: a protobuf payload, only from the first participant.
			guest.On("Ballot", guest.Members, func(s *poll.State, req *guest.StepRequest, p *poll.Ballot) error {
				s.Votes = append(s.Votes, poll.Vote{Voter: req.Envelope.Sender, Choice: p.Choice})
				return nil
			}).By(func(_ *poll.State, sess *guest.Session) string { return sess.Participants[0] }),
			guest.On("Nobody", 0, func(*poll.State, *guest.StepRequest, *poll.Ballot) error { return nil }),
		},
	}
}

func ballot(choice string) []byte { return guest.AppendString(nil, 1, choice) }

func TestMachineChecks(t *testing.T) {
	m := pollMode()
	sess := kt.Session("ext.test.poll.v1", "", kt.Alice, kt.Bob)
	ask := kt.Msg{Sender: kt.Coord, Type: "Ask", Payload: `{"question":"q?","tags":["a","b"]}`}
	answer := func(who string, code macperr.Code) kt.Msg {
		return kt.Msg{Sender: who, Type: "Answer", Payload: `{"choice":"x"}`, Code: code}
	}
	for _, tc := range []struct {
		name   string
		script []kt.Msg
	}{
		{"unknown type: member INVALID_ENVELOPE, outsider FORBIDDEN", []kt.Msg{
			{Sender: kt.Alice, Type: "Vote", Payload: "{}", Code: IE}, {Sender: kt.Coord, Type: "Vote", Payload: "{}", Code: IE},
			{Sender: kt.Outsider, Type: "Vote", Payload: "{}", Code: FB},
		}},
		{"sender before phase before payload", []kt.Msg{
			{Sender: kt.Outsider, Type: "Answer", Payload: "not json", Code: FB},
			{Sender: kt.Alice, Type: "Answer", Payload: "not json", Code: IE}, // wrong phase
			{Sender: kt.Alice, Type: "Ask", Payload: `{"question":"q?"}`, Code: FB},
			ask,
			{Sender: kt.Alice, Type: "Answer", Payload: "not json", Code: IE},
			{Sender: kt.Alice, Type: "Answer", Payload: `{"choice":"x","more":1}`, Code: IE},
			{Sender: kt.Alice, Type: "Answer", Payload: `{"choice":" "}`, Code: IE},
			{Sender: kt.Alice, Type: "Answer", Payload: `{"choice":"x","weight":11}`, Code: IE},
			{Sender: kt.Alice, Type: "Answer", Payload: `{"choice":"x","weight":10}`},
			answer(kt.Alice, IE),
		}},
		{"guard before payload", []kt.Msg{ask, {Sender: kt.Coord, Type: "Answer", Payload: "not json", Code: FB}}},
		{"role", []kt.Msg{
			{Sender: kt.Bob, Type: "Ballot", Payload: ballot("x"), Code: FB},
			{Sender: kt.Coord, Type: "Ballot", Payload: ballot("x"), Code: FB},
			{Sender: kt.Alice, Type: "Ballot", Payload: []byte{0x0a, 0x05}, Code: IE},
			{Sender: kt.Alice, Type: "Ballot", Payload: ballot("x")},
		}},
		{"zero senders admit nobody", []kt.Msg{{Sender: kt.Coord, Type: "Nobody", Payload: ballot("x"), Code: FB}}},
		{"commitment eligibility and the end", []kt.Msg{
			kt.Commitment(kt.Coord, false, IE), ask, kt.Commitment(kt.Coord, true, IE),
			{Sender: kt.Coord, Type: "Commitment", Payload: []byte{0x0a, 0x09}, Code: IE},
			answer(kt.Alice, ""), answer(kt.Bob, ""), answer(kt.Bob, IE),
			kt.Commitment(kt.Coord, true, ""), kt.Commitment(kt.Coord, false, IE),
			{Sender: kt.Outsider, Type: "Vote", Payload: "{}", Code: IE}, // committed comes first
			{Sender: kt.Coord, Type: "SessionStart", Code: IE},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kt.Play(t, m, sess, kt.Start(t, m, sess), tc.script)
		})
	}
}

func TestMachineSessionStart(t *testing.T) {
	m := pollMode()
	for _, tc := range []struct {
		name  string
		rules string
		who   []string
		code  macperr.Code
	}{
		{"ok", "", []string{kt.Alice}, ""},
		{"too few", "", nil, IE},
		{"too many", "", []string{kt.Alice, kt.Bob, kt.Carol, kt.Dave}, IE},
		{"start refuses", `{"refuse":true}`, []string{kt.Alice}, IE},
	} {
		res := kt.StartResult(m, kt.Session("ext.test.poll.v1", tc.rules, tc.who...))
		if res.Code != tc.code || res.Accepted != (tc.code == "") || (!res.Accepted && res.Message == "") {
			t.Errorf("%s: %+v, want %q", tc.name, res, tc.code)
		}
	}
	kt.CorruptState(t, m, kt.Session("ext.test.poll.v1", "", kt.Alice), "Answer")
	d := m.Describe()
	if !reflect.DeepEqual(d.MessageTypes, []string{"SessionStart", "Ask", "Answer", "Ballot", "Nobody", "Commitment"}) ||
		!reflect.DeepEqual(d.TerminalMessageTypes, []string{"Commitment"}) || d.DeterminismClass != "semantic-deterministic" {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestMachineStateAndView(t *testing.T) {
	m := pollMode()
	sess := kt.Session("ext.test.poll.v1", "", kt.Alice)
	state := kt.Play(t, m, sess, kt.Start(t, m, sess), []kt.Msg{
		{Sender: kt.Coord, Type: "Ask", Payload: `{"question":"q \"quoted\" ✓"}`},
		{Sender: kt.Alice, Type: "Answer", Payload: `{"choice":"yes"}`},
	})
	kt.Subset(t, kt.View(t, m, sess, state), `{"phase":"Done","question":"q \"quoted\" ✓","votes":[{"voter":"agent://alice","choice":"yes"}],
		"tags":[],"eligible":{"positive":true,"negative":true},"commitment":null}`)
	s, c, err := m.Decode(state)
	if err != nil || c != nil || s.Question != `q "quoted" ✓` || len(s.Votes) != 1 {
		t.Fatalf("Decode: %+v %v %v", s, c, err)
	}
	if again := m.Encode(s, nil); !bytes.Equal(again, state) {
		t.Fatalf("Encode(Decode(state)) = %x, want %x", again, state)
	}
	state = kt.Play(t, m, sess, state, []kt.Msg{kt.Commitment(kt.Coord, false, "")})
	kt.Subset(t, kt.View(t, m, sess, state), `{"phase":"Committed","eligible":{"positive":false,"negative":false},
		"commitment":{"commitment_id":"c-1","action":"ext.failed","outcome_positive":false,"sender":"agent://coordinator"}}`)
	if _, c, err := m.Decode(state); err != nil || c == nil || c.Sender != kt.Coord {
		t.Fatalf("Decode of a committed state: %+v %v", c, err)
	}
	kt.Deterministic(t, m, sess, []kt.Msg{{Sender: kt.Coord, Type: "Ask", Payload: `{"question":"q","tags":["x"]}`}}, kt.Reencode(m))
}

// TestMachinePooledStatesDoNotLeak interleaves two sessions on one Machine
// and checks that every verdict and state equals that of a Machine used for
// one session only: the pooled states and arenas keep nothing between
// steps.
func TestMachinePooledStatesDoNotLeak(t *testing.T) {
	shared := pollMode()
	a := kt.Session("ext.test.poll.v1", "", kt.Alice, kt.Bob, kt.Carol)
	b := kt.Session("ext.test.poll.v1", "", kt.Dave)
	scriptA := []kt.Msg{
		{Sender: kt.Coord, Type: "Ask", Payload: `{"question":"long question for a","tags":["t1","t2","t3","t4"]}`},
		{Sender: kt.Alice, Type: "Answer", Payload: `{"choice":"a1"}`}, {Sender: kt.Bob, Type: "Answer", Payload: `{"choice":"b1"}`},
		{Sender: kt.Carol, Type: "Answer", Payload: `{"choice":"c1"}`},
	}
	scriptB := []kt.Msg{
		{Sender: kt.Coord, Type: "Ask", Payload: `{"question":"b?"}`}, {Sender: kt.Dave, Type: "Ballot", Payload: ballot("d")},
		{Sender: kt.Dave, Type: "Answer", Payload: `{"choice":"d2"}`, Code: IE}, kt.Commitment(kt.Coord, true, ""),
	}
	stA, stB := kt.Start(t, shared, a), kt.Start(t, shared, b)
	refA, refB := pollMode(), pollMode()
	rA, rB := kt.Start(t, refA, a), kt.Start(t, refB, b)
	for i := range scriptA {
		for _, x := range []struct {
			m, ref *guest.Machine[poll.State, *poll.State]
			sess   guest.Session
			st, r  *[]byte
			msg    kt.Msg
		}{{shared, refA, a, &stA, &rA, scriptA[i]}, {shared, refB, b, &stB, &rB, scriptB[i]}} {
			got, want := kt.Step(t, x.m, x.sess, *x.st, i, x.msg), kt.Step(t, x.ref, x.sess, *x.r, i, x.msg)
			if got.Accepted != want.Accepted || got.Code != want.Code || !bytes.Equal(got.State, want.State) {
				t.Fatalf("step %d %s: shared machine %+v, own machine %+v", i, x.msg.Type, got, want)
			}
			if got.Accepted {
				*x.st, *x.r = got.State, want.State
			}
			if va, vb := kt.View(t, x.m, x.sess, *x.st), kt.View(t, x.ref, x.sess, *x.r); !reflect.DeepEqual(va, vb) {
				t.Fatalf("step %d: views differ\n%v\n%v", i, va, vb)
			}
		}
	}
}

// TestMachineStateOwnsItsBytes checks that a step's new state does not
// alias its request: the host reuses the request's buffers.
func TestMachineStateOwnsItsBytes(t *testing.T) {
	m := pollMode()
	sess := kt.Session("ext.test.poll.v1", "", kt.Alice)
	payload := []byte(`{"question":"before","tags":["x"]}`)
	res := m.Step(&guest.StepRequest{State: kt.Start(t, m, sess), Session: sess,
		Envelope: guest.Envelope{MessageType: "Ask", Sender: kt.Coord, Payload: payload}})
	if !res.Accepted {
		t.Fatal(res.Message)
	}
	copy(payload, bytes.Repeat([]byte("z"), len(payload)))
	s, _, err := m.Decode(res.State)
	if err != nil || s.Question != "before" || !reflect.DeepEqual(s.Tags, []string{"x"}) {
		t.Fatalf("state after the payload buffer changed: %+v %v", s, err)
	}
}
