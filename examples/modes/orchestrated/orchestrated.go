// Package orchestrated is the MPLP orchestrated collaboration pattern as a
// Concord extension mode, ext.mplp.orchestrated.v1.
//
// The initiator is the orchestrator (it need not be a declared participant).
// It assigns work items to declared participants; each assignee reports on
// its own items until it closes them as done or failed; the orchestrator may
// revoke an open item. The pattern is complete when at least one item was
// assigned and every item is closed; the orchestrator may assign more work
// at any time before the Commitment, which reopens it.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Assign     {"item_id": string, "assignee": participant, "description": string}  orchestrator only
//	Report     {"item_id": string, "status": "progress"|"done"|"failed", "detail": string}  the item's assignee
//	Revoke     {"item_id": string, "reason": string}  orchestrator only
//	Commitment macp.v1.CommitmentPayload
//
// item_id, assignee and description are required and non-blank; item ids
// are unique in the session; a "progress" report keeps the item open, "done"
// and "failed" close it; detail and reason are optional.
//
// Errors, in the order they are checked:
//
//   - FORBIDDEN: Assign or Revoke from anyone but the orchestrator; Report
//     from a sender who is not a declared participant; a Report on an item
//     assigned to somebody else (checked once the payload names the item).
//   - INVALID_ENVELOPE: a payload that is not a JSON object of the
//     message's shape; a blank required field; an unknown status; a reused
//     item id; an assignee who is not a declared participant; an unknown
//     item; an item already closed; a Commitment that is not eligible; an
//     unknown message type from a member.
//
// A Commitment is eligible once the pattern is complete: a negative one
// always, a positive one if at least one item is done.
//
// SessionStart is refused with INVALID_ENVELOPE without participants.
// Phases: Idle (no item yet), Working (open items), Complete, Committed.
package orchestrated

import (
	"fmt"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// Identity of the mode.
const (
	ModeName    = "ext.mplp.orchestrated.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart = "SessionStart"
	MsgAssign       = "Assign"
	MsgReport       = "Report"
	MsgRevoke       = "Revoke"
	MsgCommitment   = "Commitment"
)

// Report statuses, as spelt in the Report payload.
const (
	ReportProgress = "progress"
	ReportDone     = "done"
	ReportFailed   = "failed"
)

// Mode is the orchestrated mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		Title:                "MPLP Orchestrated",
		Description:          "The initiator assigns work items to declared participants, who report progress and close them as done or failed.",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "orchestrated",
		MessageTypes:         []string{MsgSessionStart, MsgAssign, MsgReport, MsgRevoke, MsgCommitment},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs:           map[string]string{"docs": "examples/modes/README.md#orchestrated"},
	}
}

// Step decides on one envelope.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.MessageType == MsgSessionStart {
		if len(req.State) != 0 {
			return kit.Invalid("the session has already started")
		}
		if len(req.Session.Participants) == 0 {
			return kit.Invalid("the orchestrated pattern needs at least one declared participant to assign work to")
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
	case MsgAssign:
		return s.onAssign(req)
	case MsgReport:
		return s.onReport(req)
	case MsgRevoke:
		return s.onRevoke(req)
	case MsgCommitment:
		return s.onCommitment(req)
	}
	if !kit.IsMember(&req.Session, env.Sender) {
		return kit.Forbidden("%s is not a member of the session", env.Sender)
	}
	return kit.Invalid("unknown message type %q", env.MessageType)
}

type assignPayload struct {
	ItemID      string `json:"item_id"`
	Assignee    string `json:"assignee"`
	Description string `json:"description"`
}

func (s *State) onAssign(req *guest.StepRequest) guest.Result {
	env, sess := &req.Envelope, &req.Session
	if env.Sender != sess.Initiator {
		return kit.Forbidden("only the orchestrator %s may assign work", sess.Initiator)
	}
	var p assignPayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Assign payload: %v", err)
	}
	switch {
	case kit.Blank(p.ItemID):
		return kit.Invalid("item_id must not be blank")
	case kit.Blank(p.Description):
		return kit.Invalid("description must not be blank")
	case !sess.IsParticipant(p.Assignee):
		return kit.Invalid("assignee %q is not a declared participant", p.Assignee)
	case s.item(p.ItemID) != nil:
		return kit.Invalid("item_id %q is already taken", p.ItemID)
	}
	s.Items = append(s.Items, Item{ID: p.ItemID, Assignee: p.Assignee, Description: p.Description, Status: ItemOpen})
	return guest.Accept(s.Marshal())
}

type reportPayload struct {
	ItemID string `json:"item_id"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

func (s *State) onReport(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if !req.Session.IsParticipant(env.Sender) {
		return kit.Forbidden("%s is not a declared participant", env.Sender)
	}
	var p reportPayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Report payload: %v", err)
	}
	next, known := reportStatus(p.Status)
	if !known {
		return kit.Invalid("status %q is not one of progress, done, failed", p.Status)
	}
	it := s.item(p.ItemID)
	switch {
	case it == nil:
		return kit.Invalid("unknown item %q", p.ItemID)
	case it.Assignee != env.Sender:
		return kit.Forbidden("item %q is assigned to %s", p.ItemID, it.Assignee)
	case it.Status != ItemOpen:
		return kit.Invalid("item %q is already %s", p.ItemID, it.Status)
	}
	it.Reports++
	it.Detail = p.Detail
	it.Status = next
	return guest.Accept(s.Marshal())
}

// reportStatus maps a Report status to the item status it leads to.
func reportStatus(status string) (Status, bool) {
	switch status {
	case ReportProgress:
		return ItemOpen, true
	case ReportDone:
		return ItemDone, true
	case ReportFailed:
		return ItemFailed, true
	}
	return 0, false
}

type revokePayload struct {
	ItemID string `json:"item_id"`
	Reason string `json:"reason"`
}

func (s *State) onRevoke(req *guest.StepRequest) guest.Result {
	env, sess := &req.Envelope, &req.Session
	if env.Sender != sess.Initiator {
		return kit.Forbidden("only the orchestrator %s may revoke work", sess.Initiator)
	}
	var p revokePayload
	if err := kit.DecodePayload(env.Payload, &p); err != nil {
		return kit.Invalid("Revoke payload: %v", err)
	}
	it := s.item(p.ItemID)
	switch {
	case it == nil:
		return kit.Invalid("unknown item %q", p.ItemID)
	case it.Status != ItemOpen:
		return kit.Invalid("item %q is already %s", p.ItemID, it.Status)
	}
	it.Status = ItemRevoked
	it.Detail = p.Reason
	return guest.Accept(s.Marshal())
}

func (s *State) onCommitment(req *guest.StepRequest) guest.Result {
	why := "no item is done"
	if open := s.Open(); len(s.Items) == 0 {
		why = "no work was assigned"
	} else if open > 0 {
		why = fmt.Sprintf("%d of %d items are still open", open, len(s.Items))
	}
	c, res, ok := kit.Commit(&req.Envelope, s.Eligible(), why)
	if !ok {
		return res
	}
	s.Commitment = c
	return guest.Accept(s.Marshal())
}
