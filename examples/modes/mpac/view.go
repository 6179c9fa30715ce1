package mpac

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

type intentView struct {
	IntentID          string   `json:"intent_id"`
	Serial            uint64   `json:"serial"`
	Owner             string   `json:"owner"`
	Scope             []string `json:"scope"`
	Description       string   `json:"description"`
	RequiredWatermark uint64   `json:"required_watermark"`
	Operations        uint64   `json:"operations"`
	Conflicts         []uint64 `json:"conflicts"`
	Claimable         bool     `json:"claimable"`
	ClaimedFrom       string   `json:"claimed_from"`
}

type conflictView struct {
	ConflictID       uint64    `json:"conflict_id"`
	Intents          [2]string `json:"intents"`
	Escalated        bool      `json:"escalated"`
	EscalationReason string    `json:"escalation_reason"`
}

type stateView struct {
	Phase      string          `json:"phase"`
	Arbiter    string          `json:"arbiter"`
	Operations uint64          `json:"operations"`
	Intents    []intentView    `json:"intents"`
	Conflicts  []conflictView  `json:"conflicts"`
	Crashed    []string        `json:"crashed"`
	Counters   Counters        `json:"counters"`
	Eligible   kit.Eligibility `json:"eligible"`
	Commitment *kit.Commitment `json:"commitment"`
}

// View renders the state as
//
//	{"phase": Idle|Active|Conflicted|Escalated|Committed, "arbiter": id,
//	 "operations": operations committed in the session,
//	 "intents": [{intent_id, serial, owner, scope, description, required_watermark,
//	              operations, conflicts: [conflict_id...], claimable, claimed_from}],
//	 "conflicts": [{conflict_id, intents: [earlier, later], escalated, escalation_reason}],
//	 "crashed": [participant...],
//	 "counters": {intents_announced, intents_withdrawn, intents_revoked, intents_claimed,
//	              conflicts_opened, conflicts_resolved, conflicts_dissolved, conflicts_escalated},
//	 "eligible": {positive, negative},
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
//
// An intent is conflicted when its conflicts list is not empty.
func (Mode) View(state []byte, _ *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	v := stateView{
		Phase:      s.Phase(),
		Arbiter:    s.Arbiter,
		Operations: s.Ops,
		Intents:    make([]intentView, 0, len(s.Intents)),
		Conflicts:  make([]conflictView, 0, len(s.Conflicts)),
		Crashed:    append([]string{}, s.Crashed...),
		Counters:   s.Counters,
		Eligible:   s.Eligible(),
		Commitment: s.Commitment,
	}
	for _, in := range s.Intents {
		conflicts := s.ConflictsOf(in.ID)
		if conflicts == nil {
			conflicts = []uint64{}
		}
		v.Intents = append(v.Intents, intentView{
			IntentID: in.ID, Serial: in.Serial, Owner: in.Owner, Scope: in.Scope, Description: in.Description,
			RequiredWatermark: in.Required, Operations: in.Ops, Conflicts: conflicts,
			Claimable: s.IsCrashed(in.Owner), ClaimedFrom: in.ClaimedFrom,
		})
	}
	for _, c := range s.Conflicts {
		v.Conflicts = append(v.Conflicts, conflictView{ConflictID: c.ID, Intents: c.Intents, Escalated: c.Escalated, EscalationReason: c.Reason})
	}
	return kit.MarshalView(v)
}
