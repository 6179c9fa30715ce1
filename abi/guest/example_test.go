package guest_test

import (
	"fmt"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/abi/guest/internal/poll"
)

// A mode on the Machine: its state and payload types (here those of package
// poll, whose codecs guestgen wrote from their struct tags), a table of who
// may send what in which phase, and one handler per message type.
func ExampleMachine() {
	mode := &guest.Machine[poll.State, *poll.State]{
		Descriptor:      guest.Descriptor{Mode: "ext.example.poll.v1", ModeVersion: "1.0.0", ParticipantModel: "declared"},
		MinParticipants: 1,
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
				for _, v := range s.Votes {
					if v.Voter == req.Envelope.Sender {
						return guest.Invalid("%s already answered", v.Voter)
					}
				}
				s.Votes = append(s.Votes, poll.Vote{Voter: req.Envelope.Sender, Choice: p.Choice})
				return nil
			}).In("Voting"),
		},
		BeforeView: func(s *poll.State, _ *guest.Session) { s.Answered = len(s.Votes) },
	}

	sess := guest.Session{Initiator: "agent://lead", Participants: []string{"agent://ann", "agent://bo"}}
	var state []byte
	for _, m := range []struct{ sender, typ, payload string }{
		{"agent://lead", "SessionStart", ""},
		{"agent://ann", "Answer", `{"choice":"tea"}`}, // too early: INVALID_ENVELOPE
		{"agent://lead", "Ask", `{"question":"tea or coffee?"}`},
		{"agent://eve", "Answer", `{"choice":"tea"}`}, // not a participant: FORBIDDEN
		{"agent://ann", "Answer", `{"choice":"  "}`},  // blank: INVALID_ENVELOPE
		{"agent://ann", "Answer", `{"choice":"tea"}`},
	} {
		res := mode.Step(&guest.StepRequest{State: state, Session: sess,
			Envelope: guest.Envelope{MessageType: m.typ, Sender: m.sender, Payload: []byte(m.payload)}})
		if res.Accepted {
			state = res.State
			fmt.Println(m.typ, "accepted")
		} else {
			fmt.Println(m.typ, "rejected", res.Code)
		}
	}
	view, _ := mode.View(state, &sess)
	fmt.Println(string(view))
	// Output:
	// SessionStart accepted
	// Answer rejected INVALID_ENVELOPE
	// Ask accepted
	// Answer rejected FORBIDDEN
	// Answer rejected INVALID_ENVELOPE
	// Answer accepted
	// {"phase":"Voting","question":"tea or coffee?","votes":[{"voter":"agent://ann","choice":"tea"}],"answered":1,"tags":[],"eligible":{"positive":false,"negative":true},"commitment":null}
}

// Object decodes a flat JSON object strictly, without reflection: an
// unknown key, a wrong type or trailing data is an error.
func ExampleObject() {
	var p struct {
		IntentID string
		Scope    []string
	}
	o := guest.NewObject(`{"intent_id":"i-1","scope":["src","docs"]}`)
	for o.Next([]string{"intent_id", "scope"}) {
		switch o.Field() {
		case 0:
			o.String(&p.IntentID)
		case 1:
			o.Strings(&p.Scope)
		}
	}
	fmt.Println(p.IntentID, p.Scope, o.Err())

	o = guest.NewObject(`{"intent_id":"i-1","scopes":[]}`)
	for o.Next([]string{"intent_id", "scope"}) {
		o.Skip()
	}
	fmt.Println(o.Err())
	// Output:
	// i-1 [src docs] <nil>
	// unknown field "scopes"
}

// ReadRules reads a mode's own key of the bound policy's rules, strictly;
// the host's keys beside it are ignored.
func ExampleReadRules() {
	var ask poll.Ask
	found, err := guest.ReadRules(`{"commitment":{"authority":"any_participant"},"poll":{"question":"why?"}}`, "poll", &ask)
	fmt.Println(found, err, ask.Question)
	_, err = guest.ReadRules(`{"poll":{"question":"why?","extra":1}}`, "poll", &ask)
	fmt.Println(err)
	// Output:
	// true <nil> why?
	// policy rules "poll": unknown field "extra"
}

// FieldReader walks a protobuf-wire record held as a string; values are
// substrings of it.
func ExampleFieldReader() {
	rec := guest.AppendString(guest.AppendVarint(nil, 1, 7), 2, "seven")
	r := guest.FieldReader{Rest: string(rec)}
	for r.Next() {
		fmt.Printf("field %d: %d %q\n", r.Num, r.N, r.S)
	}
	fmt.Println(r.Err())
	// Output:
	// field 1: 7 ""
	// field 2: 0 "seven"
	// <nil>
}

// Commit checks a Commitment envelope against what the state allows and
// returns the record a mode keeps.
func ExampleCommit() {
	env := &guest.Envelope{Sender: "agent://lead", Payload: guest.AppendBool(guest.AppendString(nil, 1, "c-1"), 8, true)}
	_, err := guest.Commit(env, guest.Eligibility{Negative: true}, "votes are missing")
	fmt.Println(err)
	rec, err := guest.Commit(env, guest.Eligibility{Positive: true}, "")
	fmt.Println(rec.CommitmentID, rec.OutcomePositive, rec.Sender, err)
	// Output:
	// INVALID_ENVELOPE: only a negative Commitment (outcome_positive=false) is eligible: votes are missing
	// c-1 true agent://lead <nil>
}
