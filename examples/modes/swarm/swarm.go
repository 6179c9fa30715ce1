// Package swarm is the MPLP swarm collaboration pattern as a Concord
// extension mode, ext.mplp.swarm.v1.
//
// Any declared participant may contribute, any number of times, and each
// participant endorses exactly one contribution (its own included); an
// endorsement is final. The swarm converges when a quorum of participants
// endorse the same contribution, and is deadlocked when no contribution can
// reach the quorum any more (the most endorsed contribution plus the
// participants yet to endorse fall short). Either way it accepts nothing
// more but the Commitment.
//
// The quorum is a majority of the declared participants (⌊N/2⌋+1) unless
// the bound policy's rules say {"swarm": {"quorum": Q}} (1 ≤ Q ≤ N) or
// {"swarm": {"quorum_percent": P}} (1 ≤ P ≤ 100, Q = ⌈P·N/100⌉), read once
// at SessionStart.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Contribute {"contribution_id": string, "content": string}
//	Endorse    {"contribution_id": string, "comment": string}
//	Commitment macp.v1.CommitmentPayload
//
// contribution_id and content are required and non-blank, contribution ids
// are unique in the session; comment is optional.
//
// Errors, in the order they are checked:
//
//   - FORBIDDEN: a sender who is not a declared participant.
//   - INVALID_ENVELOPE: a payload that is not a JSON object of the
//     message's shape; a blank required field; a reused contribution id; an
//     endorsement of an unknown contribution or a second endorsement; any
//     Contribute or Endorse once converged or deadlocked; a Commitment that
//     is not eligible; an unknown message type from a member.
//
// A Commitment is eligible once converged (positive only) or deadlocked
// (negative only).
//
// SessionStart is refused with INVALID_ENVELOPE without participants or
// with bad rules. Phases: Open, Converged, Deadlocked, Committed.
package swarm

import (
	"fmt"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// Identity of the mode.
const (
	ModeName    = "ext.mplp.swarm.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgContribute   = "Contribute"
	MsgEndorse      = "Endorse"
	MsgCommitment   = "Commitment"
)

// RulesKey is the key of the mode's object in the bound policy's rules.
const RulesKey = "swarm"

// Mode is the swarm mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		Title:                "MPLP Swarm",
		Description:          "Declared participants contribute freely and each endorses one contribution; converged when a quorum endorses the same one.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "quorum",
		MessageTypes:         []string{MsgSessionStart, MsgContribute, MsgEndorse, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs:           map[string]string{"docs": "examples/modes/README.md#swarm"},
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
	case MsgContribute:
		return s.onContribute(req)
	case MsgEndorse:
		return s.onEndorse(req)
	case MsgCommitment:
		return s.onCommitment(req)
	}
	if !kit.IsMember(&req.Session, env.Sender) {
		return kit.Forbidden("%s is not a member of the session", env.Sender)
	}
	return kit.Invalid("unknown message type %q", env.MessageType)
}

type rules struct {
	Quorum        *uint64 `json:"quorum"`
	QuorumPercent *uint64 `json:"quorum_percent"`
}

func start(sess *guest.Session) guest.Result {
	n := uint64(len(sess.Participants))
	if n == 0 {
		return kit.Invalid("a swarm needs at least one declared participant")
	}
	var r rules
	if _, err := kit.ReadRules(sess.PolicyRules, RulesKey, &r); err != nil {
		return kit.Invalid("%v", err)
	}
	s := &State{Quorum: n/2 + 1}
	switch {
	case r.Quorum != nil && r.QuorumPercent != nil:
		return kit.Invalid("policy rules %s: set quorum or quorum_percent, not both", RulesKey)
	case r.Quorum != nil:
		if *r.Quorum < 1 || *r.Quorum > n {
			return kit.Invalid("policy rules %s.quorum must be between 1 and the %d declared participants, got %d", RulesKey, n, *r.Quorum)
		}
		s.Quorum = *r.Quorum
	case r.QuorumPercent != nil:
		if *r.QuorumPercent < 1 || *r.QuorumPercent > 100 {
			return kit.Invalid("policy rules %s.quorum_percent must be between 1 and 100, got %d", RulesKey, *r.QuorumPercent)
		}
		s.Quorum = (*r.QuorumPercent*n + 99) / 100
	}
	return guest.Accept(s.Marshal())
}

type contributePayload struct {
	ContributionID string `json:"contribution_id"`
	Content        string `json:"content"`
}

func (s *State) onContribute(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if !req.Session.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not a declared participant", env.Sender)
	}
	var p contributePayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Contribute payload: %v", err)
	}
	switch {
	case kit.Blank(p.ContributionID):
		return kit.Invalid("contribution_id must not be blank")
	case kit.Blank(p.Content):
		return kit.Invalid("content must not be blank")
	}
	if res, closed := s.closed(len(req.Session.Participants)); closed {
		return res
	}
	if s.contribution(p.ContributionID) != nil {
		return kit.Invalid("contribution_id %q is already taken", p.ContributionID)
	}
	s.Contributions = append(s.Contributions, Contribution{ID: p.ContributionID, Sender: env.Sender, Content: p.Content})
	return guest.Accept(s.Marshal())
}

type endorsePayload struct {
	ContributionID string `json:"contribution_id"`
	Comment        string `json:"comment"`
}

func (s *State) onEndorse(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if !req.Session.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not a declared participant", env.Sender)
	}
	var p endorsePayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Endorse payload: %v", err)
	}
	if res, closed := s.closed(len(req.Session.Participants)); closed {
		return res
	}
	switch {
	case s.contribution(p.ContributionID) == nil:
		return kit.Invalid("unknown contribution %q", p.ContributionID)
	case s.endorsement(env.Sender) != nil:
		return kit.Invalid("%s already endorsed %q; endorsements are final", env.Sender, s.endorsement(env.Sender).ContributionID)
	}
	s.Endorsements = append(s.Endorsements, Endorsement{Endorser: env.Sender, ContributionID: p.ContributionID, Comment: p.Comment})
	return guest.Accept(s.Marshal())
}

// closed refuses Contribute and Endorse once the swarm converged or is
// deadlocked.
func (s *State) closed(n int) (guest.Result, bool) {
	if id, ok := s.ConvergedOn(); ok {
		return kit.Invalid("the swarm converged on %q; only the Commitment remains", id), true
	}
	if s.Deadlocked(n) {
		return kit.Invalid("no contribution can reach the quorum of %d any more; only a negative Commitment remains", s.Quorum), true
	}
	return guest.Result{}, false
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	n := len(req.Session.Participants)
	why := fmt.Sprintf("no contribution has the quorum of %d endorsements yet and %d participants have still to endorse", s.Quorum, n-len(s.Endorsements))
	if id, ok := s.ConvergedOn(); ok {
		why = fmt.Sprintf("the swarm converged on %q", id)
	} else if s.Deadlocked(n) {
		why = fmt.Sprintf("no contribution can reach the quorum of %d", s.Quorum)
	}
	c, res, ok := kit.Commit(&req.Envelope, s.Eligible(n), why)
	if !ok {
		return res
	}
	s.Commitment = c
	return guest.Accept(s.Marshal())
}
