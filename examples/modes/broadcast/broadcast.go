// Package broadcast is the MPLP broadcast collaboration pattern as a
// Concord extension mode, ext.mplp.broadcast.v1, written on abi/guest's
// Machine.
//
// The initiator (the announcer) makes one announcement; every declared
// participant other than the initiator (the recipients) acknowledges it
// once. When every recipient has acknowledged, the pattern is complete and
// the session awaits its Commitment, with either outcome: an acknowledgement
// records receipt, not agreement.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Announce     {"announcement_id", "content"}  the initiator, once
//	Acknowledge  {"announcement_id", "note"?}    each recipient, once
//
// Refusals: FORBIDDEN for Announce from anyone but the initiator and
// Acknowledge from anyone but a recipient; INVALID_ENVELOPE for a malformed
// payload, a blank id or content, a second Announce, an Acknowledge before
// the announcement, of another one, or twice. Phases: Pending, Announced,
// Acknowledged, Committed.
package broadcast

import "github.com/concord-macp/concord/abi/guest"

//go:generate go tool guestgen

// ModeName is the mode's id.
const ModeName = "ext.mplp.broadcast.v1"

// State is a session's state; fields without a wire tag are only in the view.
type State struct {
	Announcer    string            `json:"announcer"`
	Announcement *Announcement     `wire:"2" json:"announcement"`
	Acks         []Ack             `wire:"3"`
	Recipients   []string          `json:"recipients"`
	Acknowledged map[string]string `json:"acknowledged"`
	AckOrder     []string          `json:"ack_order"`
	Pending      []string          `json:"pending"`
}

// Announcement is the session's one announcement.
type Announcement struct {
	ID      string `wire:"1" json:"announcement_id"`
	Content string `wire:"2" json:"content"`
}

// Ack is a recipient's acknowledgement, in acceptance order.
type Ack struct {
	Recipient string `wire:"1"`
	Note      string `wire:"2"`
}

type announcePayload struct {
	AnnouncementID string `json:"announcement_id" guest:"nonblank"`
	Content        string `json:"content" guest:"nonblank"`
}

type acknowledgePayload struct {
	AnnouncementID string `json:"announcement_id"`
	Note           string `json:"note"`
}

// Mode is the broadcast mode.
var Mode = &guest.Machine[State, *State]{
	Descriptor: guest.Descriptor{Mode: ModeName, ModeVersion: "1.0.0", Title: "MPLP Broadcast", ParticipantModel: "declared",
		Description: "The initiator announces once; every other declared participant acknowledges once; complete when all have acknowledged.",
		SchemaURIs:  map[string]string{"docs": "examples/modes/README.md#broadcast"}},
	CommitmentField: 4,
	Start: func(_ *State, req *guest.StepRequest) error {
		if len(recipients(&req.Session)) == 0 {
			return guest.Invalid("a broadcast needs at least one declared participant besides the announcer")
		}
		return nil
	},
	Status:     status,
	BeforeView: view,
	Messages: []guest.Message[*State]{
		guest.On("Announce", guest.Initiator, onAnnounce),
		guest.On("Acknowledge", guest.Participants, onAcknowledge).Where(func(_ *State, req *guest.StepRequest) error {
			if req.Envelope.Sender == req.Session.Initiator {
				return guest.Forbidden("%s is the announcer, not a recipient", req.Envelope.Sender)
			}
			return nil
		}),
	},
}

func onAnnounce(s *State, _ *guest.StepRequest, p *announcePayload) error {
	if s.Announcement != nil {
		return guest.Invalid("announcement %q was already made; a broadcast session carries one", s.Announcement.ID)
	}
	s.Announcement = &Announcement{ID: p.AnnouncementID, Content: p.Content}
	return nil
}

func onAcknowledge(s *State, req *guest.StepRequest, p *acknowledgePayload) error {
	switch sender := req.Envelope.Sender; {
	case s.Announcement == nil:
		return guest.Invalid("nothing was announced yet")
	case p.AnnouncementID != s.Announcement.ID:
		return guest.Invalid("announcement %q is not the session's announcement %q", p.AnnouncementID, s.Announcement.ID)
	case s.acked(sender):
		return guest.Invalid("%s already acknowledged", sender)
	default:
		s.Acks = append(s.Acks, Ack{Recipient: sender, Note: p.Note})
		return nil
	}
}

func (s *State) acked(recipient string) bool {
	for _, a := range s.Acks {
		if a.Recipient == recipient {
			return true
		}
	}
	return false
}

// recipients are the declared participants other than the announcer.
func recipients(sess *guest.Session) []string {
	out := make([]string, 0, len(sess.Participants))
	for _, p := range sess.Participants {
		if p != sess.Initiator {
			out = append(out, p)
		}
	}
	return out
}

func status(s *State, sess *guest.Session) guest.Status {
	switch {
	case s.Announcement == nil:
		return guest.Status{Phase: "Pending", Why: "nothing was announced yet"}
	case len(s.Acks) < len(recipients(sess)):
		return guest.Status{Phase: "Announced", Why: "recipients have not acknowledged"}
	}
	return guest.Status{Phase: "Acknowledged", Eligible: guest.Eligibility{Positive: true, Negative: true}}
}

func view(s *State, sess *guest.Session) {
	s.Announcer, s.Recipients = sess.Initiator, recipients(sess)
	s.Acknowledged, s.AckOrder, s.Pending = map[string]string{}, []string{}, []string{}
	for _, a := range s.Acks {
		s.Acknowledged[a.Recipient] = a.Note
		s.AckOrder = append(s.AckOrder, a.Recipient)
	}
	for _, r := range s.Recipients {
		if !s.acked(r) {
			s.Pending = append(s.Pending, r)
		}
	}
}
