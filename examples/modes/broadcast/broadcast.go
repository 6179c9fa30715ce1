// Package broadcast is the MPLP broadcast collaboration pattern as a
// Concord extension mode, ext.mplp.broadcast.v1.
//
// The initiator is the announcer; every declared participant other than the
// announcer is a recipient. The announcer makes one announcement; each
// recipient acknowledges it once. When every recipient has acknowledged the
// pattern is complete: no more messages are accepted except the Commitment.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Announce    {"announcement_id": string, "content": string}  the announcer, once
//	Acknowledge {"announcement_id": string, "note": string}     each recipient, once
//	Commitment  macp.v1.CommitmentPayload
//
// announcement_id and content are required and non-blank; note is
// optional.
//
// Errors, in the order they are checked:
//
//   - FORBIDDEN: Announce from anyone but the announcer; Acknowledge from
//     anyone but a recipient (the announcer does not acknowledge itself).
//   - INVALID_ENVELOPE: a payload that is not a JSON object of the
//     message's shape; a blank required field; a second Announce;
//     Acknowledge before the announcement, naming another announcement, or
//     repeated; any message once complete; a Commitment that is not
//     eligible; an unknown message type from a member.
//
// A Commitment is eligible once every recipient has acknowledged, with
// either outcome: an acknowledgement records receipt, not agreement, so the
// committer judges the result.
//
// SessionStart is refused with INVALID_ENVELOPE when no declared participant
// other than the initiator exists. Phases: Pending (nothing announced),
// Announced, Acknowledged (complete), Committed.
package broadcast

import (
	"fmt"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// Identity of the mode.
const (
	ModeName    = "ext.mplp.broadcast.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgAnnounce     = "Announce"
	MsgAcknowledge  = "Acknowledge"
	MsgCommitment   = "Commitment"
)

// Mode is the broadcast mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		Title:                "MPLP Broadcast",
		Description:          "The initiator announces once; every other declared participant acknowledges once; complete when all have acknowledged.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "declared",
		MessageTypes:         []string{MsgSessionStart, MsgAnnounce, MsgAcknowledge, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs:           map[string]string{"docs": "examples/modes/README.md#broadcast"},
	}
}

// Recipients returns the declared participants other than the announcer,
// in SessionStart order.
func Recipients(sess *guest.Session) []string {
	out := make([]string, 0, len(sess.Participants))
	for _, p := range sess.Participants {
		if p != sess.Initiator {
			out = append(out, p)
		}
	}
	return out
}

// Step decides on one envelope.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.MessageType == MsgSessionStart {
		if len(req.State) != 0 {
			return kit.Invalid("the session has already started")
		}
		if len(Recipients(&req.Session)) == 0 {
			return kit.Invalid("a broadcast needs at least one declared participant besides the announcer")
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
	case MsgAnnounce:
		return s.onAnnounce(req)
	case MsgAcknowledge:
		return s.onAcknowledge(req)
	case MsgCommitment:
		return s.onCommitment(req)
	}
	if !kit.IsMember(&req.Session, env.Sender) {
		return kit.Forbidden("%s is not a member of the session", env.Sender)
	}
	return kit.Invalid("unknown message type %q", env.MessageType)
}

type announcePayload struct {
	AnnouncementID string `json:"announcement_id"`
	Content        string `json:"content"`
}

func (s *State) onAnnounce(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.Sender != req.Session.Initiator {
		return kit.Forbidden("only the announcer %s may Announce", req.Session.Initiator)
	}
	var p announcePayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Announce payload: %v", err)
	}
	switch {
	case kit.Blank(p.AnnouncementID):
		return kit.Invalid("announcement_id must not be blank")
	case kit.Blank(p.Content):
		return kit.Invalid("content must not be blank")
	case s.Announcement != nil:
		return kit.Invalid("announcement %q was already made; a broadcast session carries one", s.Announcement.ID)
	}
	s.Announcement = &Announcement{ID: p.AnnouncementID, Content: p.Content}
	return guest.Accept(s.Marshal())
}

type acknowledgePayload struct {
	AnnouncementID string `json:"announcement_id"`
	Note           string `json:"note"`
}

func (s *State) onAcknowledge(req *guest.StepRequest) guest.Result {
	env, sess := &req.Envelope, &req.Session
	if env.Sender == sess.Initiator || !sess.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not a recipient of the broadcast", env.Sender)
	}
	var p acknowledgePayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Acknowledge payload: %v", err)
	}
	switch {
	case s.Announcement == nil:
		return kit.Invalid("nothing was announced yet")
	case p.AnnouncementID != s.Announcement.ID:
		return kit.Invalid("announcement %q is not the session's announcement %q", p.AnnouncementID, s.Announcement.ID)
	case s.acked(env.Sender):
		return kit.Invalid("%s already acknowledged", env.Sender)
	}
	s.Acks = append(s.Acks, Ack{Recipient: env.Sender, Note: p.Note})
	return guest.Accept(s.Marshal())
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	n := len(Recipients(&req.Session))
	why := "nothing was announced yet"
	if s.Announcement != nil {
		why = fmt.Sprintf("%d of %d recipients have not acknowledged", n-len(s.Acks), n)
	}
	c, res, ok := kit.Commit(&req.Envelope, s.Eligible(n), why)
	if !ok {
		return res
	}
	s.Commitment = c
	return guest.Accept(s.Marshal())
}
