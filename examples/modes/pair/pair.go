// Package pair is the MPLP pair collaboration pattern as a Concord
// extension mode, ext.mplp.pair.v1.
//
// Exactly two declared participants work as a pair. The first listed starts
// as the driver, the second as the navigator. The driver proposes a change
// (Drive); the navigator reviews it (Review), approving or rejecting it; the
// review swaps the roles, so the two alternate as driver and navigator
// change after change. At most one change awaits review at a time.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Drive      {"change_id": string, "content": string}          the driver
//	Review     {"change_id": string, "approved": bool, "comment": string}  the navigator
//	Commitment macp.v1.CommitmentPayload
//
// change_id and content are required and non-blank, change ids are unique
// in the session; approved is required; comment is optional.
//
// Errors, in the order they are checked:
//
//   - FORBIDDEN: a sender who is not one of the pair; Drive from the
//     navigator; Review from the driver.
//   - INVALID_ENVELOPE: a payload that is not a JSON object of the
//     message's shape; a blank or missing required field; a reused change
//     id; a Drive while a change awaits review; a Review with no change
//     awaiting review or naming another change; a Commitment that is not
//     eligible; an unknown message type from a member.
//
// A Commitment is eligible when no change awaits review and at least one
// change was reviewed; its outcome must follow the last review: positive if
// it approved, negative if it rejected.
//
// SessionStart is refused with INVALID_ENVELOPE unless there are exactly two
// declared participants. Phases: Driving, Reviewing, Committed.
package pair

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// Identity of the mode.
const (
	ModeName    = "ext.mplp.pair.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgDrive        = "Drive"
	MsgReview       = "Review"
	MsgCommitment   = "Commitment"
)

// Mode is the pair mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		Title:                "MPLP Pair",
		Description:          "Two declared participants alternate as driver and navigator: the driver proposes a change, the navigator reviews it, and the roles swap.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "peer",
		MessageTypes:         []string{MsgSessionStart, MsgDrive, MsgReview, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs:           map[string]string{"docs": "examples/modes/README.md#pair"},
	}
}

// Step decides on one envelope.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.MessageType == MsgSessionStart {
		if len(req.State) != 0 {
			return kit.Invalid("the session has already started")
		}
		if n := len(req.Session.Participants); n != 2 {
			return kit.Invalid("a pair needs exactly two declared participants, got %d", n)
		}
		return guest.Accept((&State{}).Marshal())
	}
	s, err := Unmarshal(req.State)
	if err != nil {
		return kit.Internal("%v", err)
	}
	if s.Commitment != nil {
		return kit.Invalid("the session is already committed")
	}
	switch env.MessageType {
	case MsgDrive:
		return s.onDrive(req)
	case MsgReview:
		return s.onReview(req)
	case MsgCommitment:
		return s.onCommitment(req)
	}
	if !kit.IsMember(&req.Session, env.Sender) {
		return kit.Forbidden("%s is not a member of the session", env.Sender)
	}
	return kit.Invalid("unknown message type %q", env.MessageType)
}

type drivePayload struct {
	ChangeID string `json:"change_id"`
	Content  string `json:"content"`
}

func (s *State) onDrive(req *guest.StepRequest) guest.Result {
	env, sess := &req.Envelope, &req.Session
	if !sess.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not one of the pair", env.Sender)
	}
	if driver := s.Driver(sess.Participants); env.Sender != driver {
		return kit.Forbidden("%s is the navigator; only the driver %s may Drive", env.Sender, driver)
	}
	var p drivePayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Drive payload: %v", err)
	}
	switch {
	case kit.Blank(p.ChangeID):
		return kit.Invalid("change_id must not be blank")
	case kit.Blank(p.Content):
		return kit.Invalid("content must not be blank")
	case s.change(p.ChangeID) != nil:
		return kit.Invalid("change_id %q is already taken", p.ChangeID)
	}
	if c := s.Pending(); c != nil {
		return kit.Invalid("change %q still awaits review", c.ID)
	}
	s.Changes = append(s.Changes, Change{ID: p.ChangeID, Driver: env.Sender, Content: p.Content})
	return guest.Accept(s.Marshal())
}

type reviewPayload struct {
	ChangeID string `json:"change_id"`
	Approved *bool  `json:"approved"`
	Comment  string `json:"comment"`
}

func (s *State) onReview(req *guest.StepRequest) guest.Result {
	env, sess := &req.Envelope, &req.Session
	if !sess.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not one of the pair", env.Sender)
	}
	if driver := s.Driver(sess.Participants); env.Sender == driver {
		return kit.Forbidden("%s is the driver; only the navigator may Review", env.Sender)
	}
	var p reviewPayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Review payload: %v", err)
	}
	if p.Approved == nil {
		return kit.Invalid("approved is required")
	}
	c := s.Pending()
	switch {
	case c == nil:
		return kit.Invalid("no change awaits review")
	case c.ID != p.ChangeID:
		return kit.Invalid("change %q is not the one awaiting review (%q)", p.ChangeID, c.ID)
	}
	c.Reviewed, c.Approved, c.Comment = true, *p.Approved, p.Comment
	return guest.Accept(s.Marshal())
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	why := "no change was reviewed yet"
	if c := s.Pending(); c != nil {
		why = "change " + c.ID + " awaits review"
	} else if c := s.LastReviewed(); c != nil && c.Approved {
		why = "the last review approved change " + c.ID
	} else if c != nil {
		why = "the last review rejected change " + c.ID
	}
	c, res, ok := kit.Commit(&req.Envelope, s.Eligible(), why)
	if !ok {
		return res
	}
	s.Commitment = c
	return guest.Accept(s.Marshal())
}
