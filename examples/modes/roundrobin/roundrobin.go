// Package roundrobin is the MPLP round-robin collaboration pattern as a
// Concord extension mode, ext.mplp.round_robin.v1, written on abi/guest's
// Machine.
//
// The declared participants take turns in SessionStart order, for a number
// of rounds (1 unless the bound policy's rules say {"round_robin":
// {"rounds": N}}, 1 ≤ N ≤ 1000). The turn holder has exclusive write: only
// it may Contribute, and it ends its turn either by contributing (the turn
// passes to the next participant) or by passing explicitly. When every
// participant has had its turn in every round the pattern is complete and
// the session awaits its Commitment: a negative one always, a positive one
// if at least one Contribute was made.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Contribute {"content": string, non-blank; "turn": optional 1-based turn number}
//	Pass       {"reason": optional string; "turn": optional turn number}
//
// An optional "turn" must equal the current turn number. Refusals:
// FORBIDDEN for a sender who is not a declared participant or not the turn
// holder; INVALID_ENVELOPE once all rounds are done, for a malformed
// payload, blank content, a stale "turn" or an ineligible Commitment.
// Phases: InProgress, Complete, Committed.
package roundrobin

import "github.com/concord-macp/concord/abi/guest"

//go:generate go tool guestgen

// ModeName is the mode's id.
const ModeName = "ext.mplp.round_robin.v1"

// State is a session's state; fields without a wire tag are only in the view.
type State struct {
	Order         []string       `json:"order"`
	Rounds        uint64         `wire:"2" json:"rounds"`
	Round         *uint64        `json:"round"`
	Turn          *uint64        `json:"turn"`
	Holder        *string        `json:"holder"`
	Turns         uint64         `wire:"3" json:"turns_taken"`
	Passes        uint64         `json:"passes"`
	Contributions []Contribution `wire:"4" json:"contributions"`
}

// Contribution is an accepted Contribute; Turn is the 1-based turn it ended.
type Contribution struct {
	Turn    uint64 `wire:"1" json:"turn"`
	Round   uint64 `json:"round"`
	Sender  string `wire:"2" json:"sender"`
	Content string `wire:"3" json:"content"`
}

type contributePayload struct {
	Content string  `json:"content" guest:"nonblank"`
	Turn    *uint64 `json:"turn"`
}

type passPayload struct {
	Reason string  `json:"reason"`
	Turn   *uint64 `json:"turn"`
}

type rules struct {
	Rounds uint64 `json:"rounds" guest:"min=1,max=1000"`
}

// Mode is the round-robin mode.
var Mode = &guest.Machine[State, *State]{
	Descriptor: guest.Descriptor{Mode: ModeName, ModeVersion: "1.0.0", Title: "MPLP Round-Robin", ParticipantModel: "declared",
		Description: "Declared participants take turns in order with exclusive write; each turn ends with a Contribute or a Pass; complete after the configured rounds.",
		SchemaURIs:  map[string]string{"docs": "examples/modes/README.md#round-robin"}},
	CommitmentField: 5,
	MinParticipants: 1,
	Start:           start,
	Status:          status,
	BeforeView:      view,
	Messages: []guest.Message[*State]{
		guest.On("Contribute", guest.Participants, onContribute).In("InProgress").By(holder),
		guest.On("Pass", guest.Participants, onPass).In("InProgress").By(holder),
	},
}

func start(s *State, req *guest.StepRequest) error {
	r := rules{Rounds: 1}
	_, err := guest.ReadRules(req.Session.PolicyRules, "round_robin", &r)
	s.Rounds = r.Rounds
	return err
}

func onContribute(s *State, req *guest.StepRequest, p *contributePayload) error {
	s.Contributions = append(s.Contributions, Contribution{Turn: s.Turns + 1, Sender: req.Envelope.Sender, Content: p.Content})
	return s.take(p.Turn)
}

func onPass(s *State, _ *guest.StepRequest, p *passPayload) error { return s.take(p.Turn) }

// take ends the current turn, checking the turn number the sender gave.
func (s *State) take(turn *uint64) error {
	if turn != nil && *turn != s.Turns+1 {
		return guest.Invalid("turn %d is not the current turn %d", *turn, s.Turns+1)
	}
	s.Turns++
	return nil
}

func status(s *State, sess *guest.Session) guest.Status {
	if s.Turns < s.Rounds*uint64(len(sess.Participants)) {
		return guest.Status{Phase: "InProgress", Why: "turns are still to be taken"}
	}
	return guest.Status{Phase: "Complete", Eligible: guest.Eligibility{Positive: len(s.Contributions) > 0, Negative: true}, Why: "no participant contributed"}
}

func holder(s *State, sess *guest.Session) string {
	return sess.Participants[s.Turns%uint64(len(sess.Participants))]
}

func view(s *State, sess *guest.Session) {
	n := uint64(max(len(sess.Participants), 1))
	s.Order, s.Passes = append([]string{}, sess.Participants...), s.Turns-uint64(len(s.Contributions))
	if s.Turns < s.Rounds*n {
		turn, round, h := s.Turns+1, s.Turns/n+1, holder(s, sess)
		s.Turn, s.Round, s.Holder = &turn, &round, &h
	}
	for i := range s.Contributions {
		s.Contributions[i].Round = (s.Contributions[i].Turn-1)/n + 1
	}
}
