// Package orchestrated is the MPLP orchestrated collaboration pattern as a
// Concord extension mode, ext.mplp.orchestrated.v1, written on abi/guest's
// Machine.
//
// The initiator is the orchestrator (it need not be a declared participant).
// It assigns work items to declared participants; each assignee reports on
// its own items until it closes them as done or failed; the orchestrator may
// revoke an open item. The pattern is complete when at least one item was
// assigned and every item is closed; the orchestrator may assign more work
// at any time before the Commitment, which reopens it. A Commitment is
// eligible once complete: a negative one always, a positive one if at least
// one item is done.
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Assign  {"item_id", "assignee": participant, "description"}  orchestrator only
//	Report  {"item_id", "status": "progress"|"done"|"failed", "detail"?}  the item's assignee
//	Revoke  {"item_id", "reason"?}  orchestrator only
//
// Refusals: FORBIDDEN for Assign or Revoke from anyone but the orchestrator,
// a Report from a non-participant or on an item assigned to somebody else;
// INVALID_ENVELOPE for a malformed payload, a blank id or description, an
// unknown status, a reused item id, an assignee who is not a declared
// participant, an unknown or closed item. Phases: Idle, Working, Complete,
// Committed.
package orchestrated

import "github.com/concord-macp/concord/abi/guest"

//go:generate go tool guestgen

// ModeName is the mode's id.
const ModeName = "ext.mplp.orchestrated.v1"

// Status is the status of a work item.
type Status uint8

// Item statuses.
const (
	ItemOpen Status = iota + 1
	ItemDone
	ItemFailed
	ItemRevoked
)

// String returns the spelling used in views and messages.
func (s Status) String() string {
	switch s {
	case ItemOpen:
		return "open"
	case ItemDone:
		return "done"
	case ItemFailed:
		return "failed"
	case ItemRevoked:
		return "revoked"
	}
	return "unknown"
}

// State is a session's state; fields without a wire tag are only in the view.
type State struct {
	Orchestrator string `json:"orchestrator"`
	Items        []Item `wire:"2" json:"items"`
	Counts       Counts `json:"counts"`
}

// Item is an assigned work item; Detail is the latest report's detail, or
// the revocation reason.
type Item struct {
	ID          string `wire:"1" json:"item_id"`
	Assignee    string `wire:"2" json:"assignee"`
	Description string `wire:"3" json:"description"`
	Status      Status `wire:"4" json:"status"`
	Reports     uint64 `wire:"5" json:"reports"`
	Detail      string `wire:"6" json:"detail"`
}

// Counts counts the items by status, for the view.
type Counts struct {
	Open    int `json:"open"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Revoked int `json:"revoked"`
}

type assignPayload struct {
	ItemID      string `json:"item_id" guest:"nonblank"`
	Assignee    string `json:"assignee"`
	Description string `json:"description" guest:"nonblank"`
}

type reportPayload struct {
	ItemID string `json:"item_id"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

type revokePayload struct {
	ItemID string `json:"item_id"`
	Reason string `json:"reason"`
}

// Mode is the orchestrated mode.
var Mode = &guest.Machine[State, *State]{
	Descriptor: guest.Descriptor{Mode: ModeName, ModeVersion: "1.0.0", Title: "MPLP Orchestrated", ParticipantModel: "orchestrated",
		Description: "The initiator assigns work items to declared participants, who report progress and close them as done or failed.",
		SchemaURIs:  map[string]string{"docs": "examples/modes/README.md#orchestrated"}},
	CommitmentField: 3,
	MinParticipants: 1,
	Status:          status,
	BeforeView:      func(s *State, sess *guest.Session) { s.Orchestrator, s.Counts = sess.Initiator, s.count() },
	Messages: []guest.Message[*State]{
		guest.On("Assign", guest.Initiator, onAssign),
		guest.On("Report", guest.Participants, onReport),
		guest.On("Revoke", guest.Initiator, onRevoke),
	},
}

func onAssign(s *State, req *guest.StepRequest, p *assignPayload) error {
	switch {
	case !req.Session.IsParticipant(p.Assignee):
		return guest.Invalid("assignee %q is not a declared participant", p.Assignee)
	case s.item(p.ItemID) != nil:
		return guest.Invalid("item_id %q is already taken", p.ItemID)
	}
	s.Items = append(s.Items, Item{ID: p.ItemID, Assignee: p.Assignee, Description: p.Description, Status: ItemOpen})
	return nil
}

func onReport(s *State, req *guest.StepRequest, p *reportPayload) error {
	var next Status
	switch p.Status {
	case "progress":
		next = ItemOpen
	case "done":
		next = ItemDone
	case "failed":
		next = ItemFailed
	default:
		return guest.Invalid("status %q is not one of progress, done, failed", p.Status)
	}
	if it := s.item(p.ItemID); it != nil && it.Assignee != req.Envelope.Sender {
		return guest.Forbidden("item %q is assigned to %s", p.ItemID, it.Assignee)
	}
	it, err := s.open(p.ItemID)
	if err != nil {
		return err
	}
	it.Reports, it.Detail, it.Status = it.Reports+1, p.Detail, next
	return nil
}

func onRevoke(s *State, _ *guest.StepRequest, p *revokePayload) error {
	it, err := s.open(p.ItemID)
	if err == nil {
		it.Status, it.Detail = ItemRevoked, p.Reason
	}
	return err
}

// open returns the open item with id, or the refusal of a message naming it.
func (s *State) open(id string) (*Item, error) {
	switch it := s.item(id); {
	case it == nil:
		return nil, guest.Invalid("unknown item %q", id)
	case it.Status != ItemOpen:
		return nil, guest.Invalid("item %q is already %s", id, it.Status)
	default:
		return it, nil
	}
}

func (s *State) item(id string) *Item {
	for i := range s.Items {
		if s.Items[i].ID == id {
			return &s.Items[i]
		}
	}
	return nil
}

func (s *State) count() (c Counts) {
	for _, it := range s.Items {
		switch it.Status {
		case ItemOpen:
			c.Open++
		case ItemDone:
			c.Done++
		case ItemFailed:
			c.Failed++
		case ItemRevoked:
			c.Revoked++
		}
	}
	return c
}

func status(s *State, _ *guest.Session) guest.Status {
	switch c := s.count(); {
	case len(s.Items) == 0:
		return guest.Status{Phase: "Idle", Why: "no work was assigned"}
	case c.Open > 0:
		return guest.Status{Phase: "Working", Why: "items are still open"}
	default:
		return guest.Status{Phase: "Complete", Eligible: guest.Eligibility{Positive: c.Done > 0, Negative: true}, Why: "no item is done"}
	}
}
