// Package roundrobin is the MPLP round-robin collaboration pattern as a
// Concord extension mode, ext.mplp.round_robin.v1.
//
// The declared participants take turns in SessionStart order, for a number
// of rounds (1 unless the bound policy's rules say {"round_robin":
// {"rounds": N}}, 1 ≤ N ≤ 1000). The turn holder has exclusive write: only
// it may Contribute, and it ends its turn either by contributing (the turn
// passes to the next participant) or by passing explicitly. When every
// participant has had its turn in every round the pattern is complete and
// the session awaits its Commitment.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Contribute {"content": string, non-blank; "turn": optional 1-based turn number}
//	Pass       {"reason": optional string; "turn": optional turn number}
//	Commitment macp.v1.CommitmentPayload (protobuf, as in every mode)
//
// An optional "turn" must equal the current turn number; a client uses it
// to make sure its write lands in the turn it thinks it holds.
//
// Errors, in the order they are checked:
//
//   - FORBIDDEN: the sender is not a declared participant; the sender is a
//     participant but not the turn holder (out of turn).
//   - INVALID_ENVELOPE: all rounds are done (wrong phase); the payload is
//     not a JSON object of the message's shape; blank content; a "turn" that
//     is not the current one; a Commitment that is not eligible; an unknown
//     message type from a member.
//
// A Commitment is eligible only once the pattern is complete; then a
// negative one always is, and a positive one if at least one Contribute was
// made (a session in which everybody passed has nothing to commit). Who may
// commit is the host's business (the policy's commitment authority, the
// initiator by default).
//
// SessionStart is refused with INVALID_ENVELOPE without participants or
// with bad rules. Phases: InProgress, Complete, Committed.
package roundrobin

import (
	"fmt"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// Identity of the mode.
const (
	ModeName    = "ext.mplp.round_robin.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgContribute   = "Contribute"
	MsgPass         = "Pass"
	MsgCommitment   = "Commitment"
)

// RulesKey is the key of the mode's object in the bound policy's rules.
const RulesKey = "round_robin"

// MaxRounds bounds the rounds a policy may ask for.
const MaxRounds = 1000

// Mode is the round-robin mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		Title:                "MPLP Round-Robin",
		Description:          "Declared participants take turns in order with exclusive write; each turn ends with a Contribute or a Pass; complete after the configured rounds.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "declared",
		MessageTypes:         []string{MsgSessionStart, MsgContribute, MsgPass, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs:           map[string]string{"docs": "examples/modes/README.md#round-robin"},
	}
}

// Step decides on one envelope.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.MessageType == MsgSessionStart {
		if len(req.State) != 0 {
			return kit.Invalid("the session has already started")
		}
		return start(&req.Session)
	}
	s, err := Unmarshal(req.State)
	if err != nil {
		return kit.Internal("%v", err)
	}
	if s.Commitment != nil {
		return kit.Invalid("the session is already committed")
	}
	switch env.MessageType {
	case MsgContribute, MsgPass:
		return s.onTurn(req)
	case MsgCommitment:
		return s.onCommitment(req)
	}
	if !kit.IsMember(&req.Session, env.Sender) {
		return kit.Forbidden("%s is not a member of the session", env.Sender)
	}
	return kit.Invalid("unknown message type %q", env.MessageType)
}

type rules struct {
	Rounds *uint64 `json:"rounds"`
}

func start(sess *guest.Session) guest.Result {
	if len(sess.Participants) == 0 {
		return kit.Invalid("round-robin needs at least one declared participant")
	}
	s := &State{Rounds: 1}
	var r rules
	if _, err := kit.ReadRules(sess.PolicyRules, RulesKey, &r); err != nil {
		return kit.Invalid("%v", err)
	}
	if r.Rounds != nil {
		if *r.Rounds < 1 || *r.Rounds > MaxRounds {
			return kit.Invalid("policy rules %s.rounds must be between 1 and %d, got %d", RulesKey, MaxRounds, *r.Rounds)
		}
		s.Rounds = *r.Rounds
	}
	return guest.Accept(s.Marshal())
}

type contributePayload struct {
	Content string  `json:"content"`
	Turn    *uint64 `json:"turn"`
}

type passPayload struct {
	Reason string  `json:"reason"`
	Turn   *uint64 `json:"turn"`
}

func (s *State) onTurn(req *guest.StepRequest) guest.Result {
	env, sess := &req.Envelope, &req.Session
	if !sess.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not a declared participant", env.Sender)
	}
	if s.Complete(len(sess.Participants)) {
		return kit.Invalid("all %d rounds are done; only the Commitment remains", s.Rounds)
	}
	if holder := s.Holder(sess.Participants); env.Sender != holder {
		return kit.Forbidden("out of turn: turn %d belongs to %s", s.Turns+1, holder)
	}
	var (
		contribute = env.MessageType == MsgContribute
		content    string
		turn       *uint64
		err        error
	)
	if contribute {
		var p contributePayload
		err = kit.DecodePayload(env.Payload, &p)
		content, turn = p.Content, p.Turn
	} else {
		var p passPayload
		err = kit.DecodePayload(env.Payload, &p)
		turn = p.Turn
	}
	switch {
	case err != nil:
		return kit.Invalid("%s payload: %v", env.MessageType, err)
	case turn != nil && *turn != s.Turns+1:
		return kit.Invalid("turn %d is not the current turn %d", *turn, s.Turns+1)
	case contribute && kit.Blank(content):
		return kit.Invalid("Contribute needs a non-blank content")
	}
	s.Turns++
	if contribute {
		s.Contributions = append(s.Contributions, Contribution{Turn: s.Turns, Sender: env.Sender, Content: content})
	}
	return guest.Accept(s.Marshal())
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	n := len(req.Session.Participants)
	why := "no participant contributed"
	if !s.Complete(n) {
		why = fmt.Sprintf("%d of %d turns are still to be taken", s.Rounds*uint64(n)-s.Turns, s.Rounds*uint64(n))
	}
	c, res, ok := kit.Commit(&req.Envelope, s.Eligible(n), why)
	if !ok {
		return res
	}
	s.Commitment = c
	return guest.Accept(s.Marshal())
}
