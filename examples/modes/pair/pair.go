// Package pair is the MPLP pair collaboration pattern as a Concord
// extension mode, ext.mplp.pair.v1, written on abi/guest's Machine.
//
// Exactly two declared participants work as a pair. The first listed starts
// as the driver, the second as the navigator. The driver proposes a change
// (Drive); the navigator reviews it (Review), approving or rejecting it; the
// review swaps the roles. At most one change awaits review at a time. A
// Commitment is eligible when no change awaits review and at least one was
// reviewed; its outcome must follow the last review.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Drive   {"change_id", "content"}                 the driver
//	Review  {"change_id", "approved": bool, "comment"?}  the navigator
//
// Refusals: FORBIDDEN for a sender who is not one of the pair, Drive from
// the navigator, Review from the driver; INVALID_ENVELOPE for a malformed
// payload, a blank or missing field, a reused change id, a Drive while a
// change awaits review, a Review of no or another change. Phases: Driving,
// Reviewing, Committed.
package pair

import "github.com/concord-macp/concord/abi/guest"

//go:generate go tool guestgen

// ModeName is the mode's id.
const ModeName = "ext.mplp.pair.v1"

// State is a session's state; fields without a wire tag are only in the view.
type State struct {
	Driver    string   `json:"driver"`
	Navigator string   `json:"navigator"`
	Pending   *string  `json:"pending_change"`
	Swaps     int      `json:"swaps"`
	Changes   []Change `wire:"2" json:"changes"`
}

// Change is a driven change and its review.
type Change struct {
	ID       string `wire:"1" json:"change_id"`
	Driver   string `wire:"2" json:"driver"`
	Content  string `wire:"3" json:"content"`
	Reviewed bool   `wire:"4"`
	Approved bool   `wire:"5"`
	Status   string `json:"status"`
	Comment  string `wire:"6" json:"comment"`
}

type drivePayload struct {
	ChangeID string `json:"change_id" guest:"nonblank"`
	Content  string `json:"content" guest:"nonblank"`
}

type reviewPayload struct {
	ChangeID string `json:"change_id"`
	Approved *bool  `json:"approved" guest:"required"`
	Comment  string `json:"comment"`
}

// Mode is the pair mode.
var Mode = &guest.Machine[State, *State]{
	Descriptor: guest.Descriptor{Mode: ModeName, ModeVersion: "1.0.0", Title: "MPLP Pair", ParticipantModel: "peer",
		Description: "Two declared participants alternate as driver and navigator: the driver proposes a change, the navigator reviews it, and the roles swap.",
		SchemaURIs:  map[string]string{"docs": "examples/modes/README.md#pair"}},
	CommitmentField: 3,
	MinParticipants: 2,
	MaxParticipants: 2,
	Status:          status,
	BeforeView:      view,
	Messages: []guest.Message[*State]{
		guest.On("Drive", guest.Participants, onDrive).By(driver),
		guest.On("Review", guest.Participants, onReview).By(navigator),
	},
}

func onDrive(s *State, req *guest.StepRequest, p *drivePayload) error {
	for _, c := range s.Changes {
		if c.ID == p.ChangeID {
			return guest.Invalid("change_id %q is already taken", p.ChangeID)
		}
	}
	if c := s.pending(); c != nil {
		return guest.Invalid("change %q still awaits review", c.ID)
	}
	s.Changes = append(s.Changes, Change{ID: p.ChangeID, Driver: req.Envelope.Sender, Content: p.Content})
	return nil
}

func onReview(s *State, _ *guest.StepRequest, p *reviewPayload) error {
	switch c := s.pending(); {
	case c == nil:
		return guest.Invalid("no change awaits review")
	case c.ID != p.ChangeID:
		return guest.Invalid("change %q is not the one awaiting review (%q)", p.ChangeID, c.ID)
	default:
		c.Reviewed, c.Approved, c.Comment = true, *p.Approved, p.Comment
		return nil
	}
}

// pending returns the change awaiting review, or nil.
func (s *State) pending() *Change {
	if n := len(s.Changes); n > 0 && !s.Changes[n-1].Reviewed {
		return &s.Changes[n-1]
	}
	return nil
}

// reviews is the number of reviewed changes, which is the number of swaps.
func (s *State) reviews() int {
	if s.pending() != nil {
		return len(s.Changes) - 1
	}
	return len(s.Changes)
}

func driver(s *State, sess *guest.Session) string    { return sess.Participants[s.reviews()%2] }
func navigator(s *State, sess *guest.Session) string { return sess.Participants[(s.reviews()+1)%2] }

func status(s *State, _ *guest.Session) guest.Status {
	switch {
	case s.pending() != nil:
		return guest.Status{Phase: "Reviewing", Why: "a change awaits review"}
	case len(s.Changes) == 0:
		return guest.Status{Phase: "Driving", Why: "no change was reviewed yet"}
	}
	approved := s.Changes[len(s.Changes)-1].Approved
	return guest.Status{Phase: "Driving", Eligible: guest.Eligibility{Positive: approved, Negative: !approved}, Why: "the outcome follows the last review"}
}

func view(s *State, sess *guest.Session) {
	if len(sess.Participants) == 2 {
		s.Driver, s.Navigator = driver(s, sess), navigator(s, sess)
	}
	if c := s.pending(); c != nil {
		s.Pending = &c.ID
	}
	s.Swaps = s.reviews()
	for i := range s.Changes {
		switch c := &s.Changes[i]; {
		case !c.Reviewed:
			c.Status = "pending"
		case c.Approved:
			c.Status = "approved"
		default:
			c.Status = "rejected"
		}
	}
}
