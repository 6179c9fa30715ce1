// Package mpac is an MPAC-style intent and conflict mode for Concord, the
// extension mode ext.mpac.intent.v1, written on abi/guest's Machine.
//
// Declared participants announce an intent, with a scope of resource paths,
// before they act; they commit operations under a live intent they own and
// withdraw it when done. When an intent's scope overlaps a live intent of
// another owner, the mode records a conflict between the two and blocks
// both until an arbiter resolves it, or escalates it beyond the session.
// The arbiter can also declare a participant crashed, which makes its live
// intents claimable by the others.
//
// # Arbiter
//
// The arbiter is the initiator unless the bound policy's rules name one:
// {"mpac": {"arbiter": "agent://lead"}}, read once at SessionStart. It must
// be the initiator or a declared participant.
//
// # Scopes
//
// A scope is a list of 1 to 64 distinct resource paths. A path is a
// slash-separated relative path of non-empty segments ("src/main.go",
// "docs"), at most 1024 bytes, with no "." or ".." segment and no leading,
// trailing or doubled slash. Two paths overlap when they are equal or one is
// a directory prefix of the other ("src" overlaps "src/main.go", not
// "srcs"). Two scopes overlap when any of their paths do.
//
// # Messages
//
// Payloads are JSON objects; unknown keys are refused.
//
//	AnnounceIntent   {"intent_id": string, "scope": [path...], "description": string}  a participant
//	CommitOperation  {"intent_id": string, "watermark": uint, "summary": string}       the intent's owner
//	Withdraw         {"intent_id": string, "reason": string}                           the intent's owner
//	Claim            {"intent_id": string, "reason": string}     a participant; the owner must be crashed
//	ResolveConflict  {"conflict_id": uint, "keep": [intent_id...], "reason": string}  the arbiter
//	EscalateConflict {"conflict_id": uint, "reason": string}                          the arbiter
//	DeclareCrashed   {"participant": string, "reason": string}                        the arbiter
//	Commitment       macp.v1.CommitmentPayload
//
// description, summary and the reasons are optional except an escalation's
// reason. Intent ids are chosen by the client and must be unique among live
// intents; conflicts are numbered 1, 2, ... by the mode.
//
// AnnounceIntent makes the intent live. For every live intent of another
// owner whose scope overlaps, it opens a conflict between that intent and
// the new one; both are then conflicted until every conflict they are in is
// closed. Intents of the same owner never conflict.
//
// CommitOperation needs a live, non-conflicted intent of the sender and
// counts one operation in the session (operation n is the session's n-th).
// Its watermark is the number of the session's operations the sender has
// seen. Rule: the watermark must be at least the intent's required
// watermark and at most the session's operation count. The required
// watermark is the operation count when the intent was announced (or
// claimed), raised to n whenever operation n is committed on an intent
// whose scope overlaps it (itself included). So a writer must have seen
// every operation that was committed before it took the region and every
// later one that touched the region; operations elsewhere do not make it
// stale.
//
// Withdraw ends a live intent (conflicted or not); a conflict that loses an
// intent is dissolved. ResolveConflict closes an open conflict: the intents
// listed in keep (none, one or both of its two) stay live, the others are
// revoked, which dissolves their other conflicts. EscalateConflict marks an
// open conflict escalated; it stays open (the arbiter may still resolve it)
// and makes a negative Commitment eligible. DeclareCrashed marks a declared
// participant other than the arbiter crashed, for the rest of the session:
// it may send nothing more, and its live intents may be claimed. Claim
// transfers a crashed owner's live intent, conflicts included, to the
// sender, and sets its required watermark to the current operation count.
//
// # Errors
//
// In the order they are checked:
//
//   - FORBIDDEN: AnnounceIntent, CommitOperation, Withdraw or Claim from a
//     sender who is not a declared participant or was declared crashed;
//     ResolveConflict, EscalateConflict or DeclareCrashed from anyone but
//     the arbiter; CommitOperation or Withdraw on an intent owned by
//     somebody else (checked once the payload names the intent).
//   - INVALID_ENVELOPE: a payload that is not a JSON object of the
//     message's shape; a blank intent id; a bad scope; a missing watermark
//     or conflict id; an intent id already live; an intent or conflict that
//     is not live or open; an operation on a conflicted intent; a watermark
//     above the operation count (from the future) or below the intent's
//     required watermark (stale); keep naming an intent outside the
//     conflict, or twice; escalating an escalated conflict or without a
//     reason; declaring crashed a non-participant, the arbiter or a
//     participant already crashed; claiming an intent whose owner is not
//     crashed; a Commitment that is not eligible; an unknown message type
//     from a member.
//
// # Commitment
//
// A positive Commitment is eligible when no intent is live and at least one
// operation was committed; a negative one when no intent is live or an open
// conflict is escalated.
//
// # Cost
//
// The state keeps the live intents, the open conflicts, the crashed
// participants and counters, never the history, so the cost of a step does
// not grow with the number of past announce → commit → withdraw cycles
// (see BenchmarkCycle); it grows with the live intents.
//
// Phases: Idle (no live intent), Active, Conflicted (open conflicts),
// Escalated (an open conflict is escalated), Committed.
package mpac

import (
	"errors"
	"slices"

	"github.com/concord-macp/concord/abi/guest"
)

//go:generate go tool guestgen

// ModeName is the mode's id.
const ModeName = "ext.mpac.intent.v1"

// State is a session's state: the live intents, the open conflicts, the
// crashed participants and counters, never the history.
type State struct {
	Arbiter   string     `wire:"2" json:"arbiter"`
	Ops       uint64     `wire:"3" json:"operations"`
	Counters  Counters   `wire:"4" json:"counters"`
	Crashed   []string   `wire:"5" json:"crashed"`
	Intents   []Intent   `wire:"6" json:"intents"`
	Conflicts []Conflict `wire:"7" json:"conflicts"`
}

// Counters count what happened to intents and conflicts in the session.
type Counters struct {
	Announced          uint64 `wire:"1" json:"intents_announced"`
	Withdrawn          uint64 `wire:"2" json:"intents_withdrawn"`
	Revoked            uint64 `wire:"3" json:"intents_revoked"`
	Claimed            uint64 `wire:"4" json:"intents_claimed"`
	ConflictsOpened    uint64 `wire:"5" json:"conflicts_opened"`
	ConflictsResolved  uint64 `wire:"6" json:"conflicts_resolved"`
	ConflictsDissolved uint64 `wire:"7" json:"conflicts_dissolved"`
	Escalated          uint64 `wire:"8" json:"conflicts_escalated"`
}

// Intent is a live intent. Serial is its announcement's number; Required
// its required watermark; Ops the operations committed under it. Conflicts
// and Claimable are only in the view.
type Intent struct {
	ID          string   `wire:"1" json:"intent_id"`
	Serial      uint64   `wire:"2" json:"serial"`
	Owner       string   `wire:"3" json:"owner"`
	Scope       []string `wire:"4" json:"scope"`
	Description string   `wire:"5" json:"description"`
	Required    uint64   `wire:"6" json:"required_watermark"`
	Ops         uint64   `wire:"7" json:"operations"`
	Conflicts   []uint64 `json:"conflicts"`
	Claimable   bool     `json:"claimable"`
	ClaimedFrom string   `wire:"8" json:"claimed_from"`
}

// Conflict is an open conflict between two intents.
type Conflict struct {
	ID        uint64   `wire:"1" json:"conflict_id"`
	Intents   []string `wire:"2" json:"intents"`
	Escalated bool     `wire:"3" json:"escalated"`
	Reason    string   `wire:"4" json:"escalation_reason"`
}

// Validate refuses a decoded state whose conflict is not between two intents.
func (s *State) Validate() error {
	for _, c := range s.Conflicts {
		if len(c.Intents) != 2 {
			return errors.New("a conflict record needs exactly two intents")
		}
	}
	return nil
}

type rules struct {
	Arbiter *string `json:"arbiter"`
}

type announcePayload struct {
	IntentID    string   `json:"intent_id" guest:"nonblank"`
	Scope       []string `json:"scope"`
	Description string   `json:"description"`
}

type operationPayload struct {
	IntentID  string  `json:"intent_id"`
	Watermark *uint64 `json:"watermark" guest:"required"`
	Summary   string  `json:"summary"`
}

// intentPayload is the payload of Withdraw and Claim.
type intentPayload struct {
	IntentID string `json:"intent_id"`
	Reason   string `json:"reason"`
}

type resolvePayload struct {
	ConflictID *uint64  `json:"conflict_id" guest:"required"`
	Keep       []string `json:"keep" guest:"required"`
	Reason     string   `json:"reason"`
}

type escalatePayload struct {
	ConflictID *uint64 `json:"conflict_id" guest:"required"`
	Reason     string  `json:"reason" guest:"nonblank"`
}

type crashPayload struct {
	Participant string `json:"participant"`
	Reason      string `json:"reason"`
}

// Mode is the MPAC intent mode.
var Mode = &guest.Machine[State, *State]{
	Descriptor: guest.Descriptor{Mode: ModeName, ModeVersion: "1.0.0", Title: "MPAC Intents and Conflicts", ParticipantModel: "peer",
		Description: "Participants announce scoped intents before acting; overlapping intents conflict until an arbiter resolves or escalates; operations carry causal watermarks; crashed participants' intents can be claimed.",
		SchemaURIs:  map[string]string{"docs": "examples/modes/README.md#mpac-intents"}},
	CommitmentField: 8,
	Start:           start,
	Status:          status,
	BeforeView:      view,
	Messages: []guest.Message[*State]{
		guest.On("AnnounceIntent", guest.Participants, onAnnounce).Where(alive),
		guest.On("CommitOperation", guest.Participants, onCommitOperation).Where(alive),
		guest.On("Withdraw", guest.Participants, onWithdraw).Where(alive),
		guest.On("Claim", guest.Participants, onClaim).Where(alive),
		guest.On("ResolveConflict", guest.Anyone, onResolve).By(arbiter),
		guest.On("EscalateConflict", guest.Anyone, onEscalate).By(arbiter),
		guest.On("DeclareCrashed", guest.Anyone, onDeclareCrashed).By(arbiter),
	},
}

func start(s *State, req *guest.StepRequest) error {
	var r rules
	if _, err := guest.ReadRules(req.Session.PolicyRules, "mpac", &r); err != nil {
		return err
	}
	s.Arbiter = req.Session.Initiator
	if r.Arbiter != nil && !req.Session.IsMember(*r.Arbiter) {
		return guest.Invalid("policy rules mpac.arbiter %q is neither the initiator nor a declared participant", *r.Arbiter)
	} else if r.Arbiter != nil {
		s.Arbiter = *r.Arbiter
	}
	return nil
}

func arbiter(s *State, _ *guest.Session) string { return s.Arbiter }

// alive refuses intent messages from a participant declared crashed.
func alive(s *State, req *guest.StepRequest) error {
	if s.crashed(req.Envelope.Sender) {
		return guest.Forbidden("%s was declared crashed", req.Envelope.Sender)
	}
	return nil
}

func onAnnounce(s *State, req *guest.StepRequest, p *announcePayload) error {
	if err := cleanScope(p.Scope); err != nil {
		return guest.Invalid("scope: %v", err)
	}
	if s.intent(p.IntentID) != nil {
		return guest.Invalid("intent %q is already live", p.IntentID)
	}
	s.Counters.Announced++
	in := Intent{ID: p.IntentID, Serial: s.Counters.Announced, Owner: req.Envelope.Sender, Scope: p.Scope, Description: p.Description, Required: s.Ops}
	for _, other := range s.Intents {
		if other.Owner != in.Owner && ScopesOverlap(other.Scope, in.Scope) {
			s.Counters.ConflictsOpened++
			s.Conflicts = append(s.Conflicts, Conflict{ID: s.Counters.ConflictsOpened, Intents: []string{other.ID, in.ID}})
		}
	}
	s.Intents = append(s.Intents, in)
	return nil
}

func onCommitOperation(s *State, req *guest.StepRequest, p *operationPayload) error {
	in, err := s.owned(p.IntentID, req.Envelope.Sender)
	if err != nil {
		return err
	}
	if ids := s.conflictsOf(in.ID); len(ids) > 0 {
		return guest.Invalid("intent %q is in open conflict %d; the arbiter must resolve it first", in.ID, ids[0])
	}
	switch w := *p.Watermark; {
	case w > s.Ops:
		return guest.Invalid("watermark %d is ahead of the session's %d operations", w, s.Ops)
	case w < in.Required:
		return guest.Invalid("stale watermark %d: operation %d touched the scope of intent %q", w, in.Required, in.ID)
	}
	s.Ops++
	in.Ops++
	for i := range s.Intents {
		if other := &s.Intents[i]; ScopesOverlap(other.Scope, in.Scope) {
			other.Required = s.Ops
		}
	}
	return nil
}

func onWithdraw(s *State, req *guest.StepRequest, p *intentPayload) error {
	if _, err := s.owned(p.IntentID, req.Envelope.Sender); err != nil {
		return err
	}
	s.remove(p.IntentID)
	s.Counters.Withdrawn++
	return nil
}

func onClaim(s *State, req *guest.StepRequest, p *intentPayload) error {
	switch in := s.intent(p.IntentID); {
	case in == nil:
		return guest.Invalid("intent %q is not live", p.IntentID)
	case !s.crashed(in.Owner):
		return guest.Invalid("intent %q is owned by %s, who was not declared crashed", p.IntentID, in.Owner)
	default:
		in.ClaimedFrom, in.Owner, in.Required = in.Owner, req.Envelope.Sender, s.Ops
		s.Counters.Claimed++
		return nil
	}
}

func onResolve(s *State, _ *guest.StepRequest, p *resolvePayload) error {
	i, c := s.conflict(*p.ConflictID)
	if c == nil {
		return guest.Invalid("conflict %d is not open", *p.ConflictID)
	}
	keep := [2]bool{}
	for _, id := range p.Keep {
		k := slices.Index(c.Intents, id)
		switch {
		case k < 0:
			return guest.Invalid("intent %q is not part of conflict %d", id, c.ID)
		case keep[k]:
			return guest.Invalid("intent %q is listed twice in keep", id)
		}
		keep[k] = true
	}
	members := c.Intents
	s.Conflicts = slices.Delete(s.Conflicts, i, i+1)
	s.Counters.ConflictsResolved++
	for j, id := range members {
		if !keep[j] {
			s.remove(id)
			s.Counters.Revoked++
		}
	}
	return nil
}

func onEscalate(s *State, _ *guest.StepRequest, p *escalatePayload) error {
	switch _, c := s.conflict(*p.ConflictID); {
	case c == nil:
		return guest.Invalid("conflict %d is not open", *p.ConflictID)
	case c.Escalated:
		return guest.Invalid("conflict %d is already escalated", c.ID)
	default:
		c.Escalated, c.Reason = true, p.Reason
		s.Counters.Escalated++
		return nil
	}
}

func onDeclareCrashed(s *State, req *guest.StepRequest, p *crashPayload) error {
	switch {
	case !req.Session.IsParticipant(p.Participant):
		return guest.Invalid("%q is not a declared participant", p.Participant)
	case p.Participant == s.Arbiter:
		return guest.Invalid("the arbiter cannot declare itself crashed")
	case s.crashed(p.Participant):
		return guest.Invalid("%s was already declared crashed", p.Participant)
	}
	s.Crashed = append(s.Crashed, p.Participant)
	return nil
}

func (s *State) crashed(p string) bool { return slices.Contains(s.Crashed, p) }

func (s *State) intent(id string) *Intent {
	for i := range s.Intents {
		if s.Intents[i].ID == id {
			return &s.Intents[i]
		}
	}
	return nil
}

// owned returns the live intent id, which sender must own.
func (s *State) owned(id, sender string) (*Intent, error) {
	switch in := s.intent(id); {
	case in == nil:
		return nil, guest.Invalid("intent %q is not live", id)
	case in.Owner != sender:
		return nil, guest.Forbidden("intent %q is owned by %s", id, in.Owner)
	default:
		return in, nil
	}
}

func (s *State) conflict(id uint64) (int, *Conflict) {
	for i := range s.Conflicts {
		if s.Conflicts[i].ID == id {
			return i, &s.Conflicts[i]
		}
	}
	return -1, nil
}

// conflictsOf returns the ids of the open conflicts intent id is in.
func (s *State) conflictsOf(id string) []uint64 {
	out := []uint64{}
	for _, c := range s.Conflicts {
		if slices.Contains(c.Intents, id) {
			out = append(out, c.ID)
		}
	}
	return out
}

// remove drops the live intent id and dissolves the open conflicts it is in.
func (s *State) remove(id string) {
	s.Intents = slices.DeleteFunc(s.Intents, func(in Intent) bool { return in.ID == id })
	s.Conflicts = slices.DeleteFunc(s.Conflicts, func(c Conflict) bool {
		dissolved := slices.Contains(c.Intents, id)
		if dissolved {
			s.Counters.ConflictsDissolved++
		}
		return dissolved
	})
}

func status(s *State, _ *guest.Session) guest.Status {
	escalated := slices.ContainsFunc(s.Conflicts, func(c Conflict) bool { return c.Escalated })
	idle := len(s.Intents) == 0
	st := guest.Status{Eligible: guest.Eligibility{Positive: idle && s.Ops > 0, Negative: idle || escalated},
		Why: "intents are still live; withdraw them first (or escalate a conflict for a negative outcome)"}
	switch {
	case escalated:
		st.Phase = "Escalated"
	case len(s.Conflicts) > 0:
		st.Phase = "Conflicted"
	case !idle:
		st.Phase = "Active"
	default:
		st.Phase, st.Why = "Idle", "no operation was committed"
	}
	return st
}

func view(s *State, _ *guest.Session) {
	for i := range s.Intents {
		in := &s.Intents[i]
		in.Conflicts, in.Claimable = s.conflictsOf(in.ID), s.crashed(in.Owner)
	}
}
