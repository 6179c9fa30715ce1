package mpac

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// State fields, in the order Marshal writes them.
const (
	fieldVersion    protowire.Number = 1
	fieldArbiter    protowire.Number = 2
	fieldOps        protowire.Number = 3
	fieldCounters   protowire.Number = 4
	fieldCrashed    protowire.Number = 5
	fieldIntent     protowire.Number = 6
	fieldConflict   protowire.Number = 7
	fieldCommitment protowire.Number = 8
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhaseIdle       = "Idle"
	PhaseActive     = "Active"
	PhaseConflicted = "Conflicted"
	PhaseEscalated  = "Escalated"
	PhaseCommitted  = "Committed"
)

// State is the decoded state of an MPAC session. It holds only what is live
// (intents, open conflicts, crashed participants) and counters, so its size
// does not grow with the number of past cycles.
type State struct {
	Arbiter string
	// Ops counts the operations committed in the session.
	Ops      uint64
	Counters Counters
	// Crashed lists the participants declared crashed, in declaration order.
	Crashed []string
	// Intents are the live intents, in announce order.
	Intents []Intent
	// Conflicts are the open conflicts, in the order they were opened.
	Conflicts []Conflict
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment
}

// Counters sum up the history the state no longer holds.
type Counters struct {
	Announced          uint64 `json:"intents_announced"`
	Withdrawn          uint64 `json:"intents_withdrawn"`
	Revoked            uint64 `json:"intents_revoked"`
	Claimed            uint64 `json:"intents_claimed"`
	ConflictsOpened    uint64 `json:"conflicts_opened"`
	ConflictsResolved  uint64 `json:"conflicts_resolved"`
	ConflictsDissolved uint64 `json:"conflicts_dissolved"`
	Escalated          uint64 `json:"conflicts_escalated"`
}

// Intent is a live intent.
type Intent struct {
	ID string
	// Serial is the intent's announce number in the session, from 1.
	Serial uint64
	Owner  string
	// Scope is sorted.
	Scope       []string
	Description string
	// Required is the least watermark a CommitOperation on the intent must
	// carry.
	Required uint64
	// Ops counts the operations committed on the intent.
	Ops uint64
	// ClaimedFrom is the crashed owner the intent was last claimed from.
	ClaimedFrom string
}

// Conflict is an open conflict between two live intents: the earlier one
// first, then the one whose announcement surfaced the conflict.
type Conflict struct {
	ID        uint64
	Intents   [2]string
	Escalated bool
	Reason    string
}

// IsCrashed reports whether p was declared crashed.
func (s *State) IsCrashed(p string) bool {
	for _, c := range s.Crashed {
		if c == p {
			return true
		}
	}
	return false
}

// intent returns the index of the live intent id and a pointer to it, or
// nil.
func (s *State) intent(id string) (int, *Intent) {
	for i := range s.Intents {
		if s.Intents[i].ID == id {
			return i, &s.Intents[i]
		}
	}
	return -1, nil
}

// conflict returns the index of the open conflict id and a pointer to it,
// or nil.
func (s *State) conflict(id uint64) (int, *Conflict) {
	for i := range s.Conflicts {
		if s.Conflicts[i].ID == id {
			return i, &s.Conflicts[i]
		}
	}
	return -1, nil
}

// ConflictsOf returns the ids of the open conflicts intent id is in.
func (s *State) ConflictsOf(id string) []uint64 {
	var out []uint64
	for _, c := range s.Conflicts {
		if c.Intents[0] == id || c.Intents[1] == id {
			out = append(out, c.ID)
		}
	}
	return out
}

// remove drops the live intent id and dissolves the open conflicts it is
// in.
func (s *State) remove(id string) {
	if i, in := s.intent(id); in != nil {
		s.Intents = append(s.Intents[:i], s.Intents[i+1:]...)
	}
	kept := s.Conflicts[:0]
	for _, c := range s.Conflicts {
		if c.Intents[0] == id || c.Intents[1] == id {
			s.Counters.ConflictsDissolved++
			continue
		}
		kept = append(kept, c)
	}
	s.Conflicts = kept
}

// escalated reports whether an open conflict is escalated.
func (s *State) escalated() bool {
	for _, c := range s.Conflicts {
		if c.Escalated {
			return true
		}
	}
	return false
}

// Eligible returns the Commitment outcomes the state allows.
func (s *State) Eligible() kit.Eligibility {
	if s.Commitment != nil {
		return kit.Eligibility{}
	}
	idle := len(s.Intents) == 0
	return kit.Eligibility{Positive: idle && s.Ops > 0, Negative: idle || s.escalated()}
}

// Phase derives the phase of the session.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.escalated():
		return PhaseEscalated
	case len(s.Conflicts) > 0:
		return PhaseConflicted
	case len(s.Intents) > 0:
		return PhaseActive
	}
	return PhaseIdle
}

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := make([]byte, 0, 64+48*len(s.Intents)+24*len(s.Conflicts))
	b = kit.AppendVarint(b, fieldVersion, stateVersion)
	b = kit.AppendString(b, fieldArbiter, s.Arbiter)
	b = kit.AppendVarint(b, fieldOps, s.Ops)
	c := &s.Counters
	var r []byte
	for i, v := range []uint64{c.Announced, c.Withdrawn, c.Revoked, c.Claimed, c.ConflictsOpened, c.ConflictsResolved, c.ConflictsDissolved, c.Escalated} {
		r = kit.AppendVarint(r, protowire.Number(i+1), v)
	}
	b = kit.AppendRecord(b, fieldCounters, r)
	b = kit.AppendStrings(b, fieldCrashed, s.Crashed)
	for _, in := range s.Intents {
		r = r[:0]
		r = kit.AppendString(r, 1, in.ID)
		r = kit.AppendVarint(r, 2, in.Serial)
		r = kit.AppendString(r, 3, in.Owner)
		r = kit.AppendStrings(r, 4, in.Scope)
		r = kit.AppendString(r, 5, in.Description)
		r = kit.AppendVarint(r, 6, in.Required)
		r = kit.AppendVarint(r, 7, in.Ops)
		r = kit.AppendString(r, 8, in.ClaimedFrom)
		b = kit.AppendRecord(b, fieldIntent, r)
	}
	for _, cf := range s.Conflicts {
		r = r[:0]
		r = kit.AppendVarint(r, 1, cf.ID)
		r = kit.AppendStrings(r, 2, cf.Intents[:])
		r = kit.AppendBool(r, 3, cf.Escalated)
		r = kit.AppendString(r, 4, cf.Reason)
		b = kit.AppendRecord(b, fieldConflict, r)
	}
	if s.Commitment != nil {
		b = s.Commitment.Append(b, fieldCommitment)
	}
	return b
}

var (
	errVersion  = errors.New("missing or unknown state format version")
	errConflict = errors.New("a conflict record needs exactly two intents")
)

// Unmarshal decodes a state written by Marshal.
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	var version uint64
	err := kit.Fields(b, func(num protowire.Number, v []byte, n uint64) error {
		switch num {
		case fieldVersion:
			version = n
		case fieldArbiter:
			s.Arbiter = string(v)
		case fieldOps:
			s.Ops = n
		case fieldCounters:
			c := &s.Counters
			dst := []*uint64{&c.Announced, &c.Withdrawn, &c.Revoked, &c.Claimed, &c.ConflictsOpened, &c.ConflictsResolved, &c.ConflictsDissolved, &c.Escalated}
			return kit.Fields(v, func(num protowire.Number, _ []byte, n uint64) error {
				if num >= 1 && int(num) <= len(dst) {
					*dst[num-1] = n
				}
				return nil
			})
		case fieldCrashed:
			s.Crashed = append(s.Crashed, string(v))
		case fieldIntent:
			var in Intent
			err := kit.Fields(v, func(num protowire.Number, v []byte, n uint64) error {
				switch num {
				case 1:
					in.ID = string(v)
				case 2:
					in.Serial = n
				case 3:
					in.Owner = string(v)
				case 4:
					in.Scope = append(in.Scope, string(v))
				case 5:
					in.Description = string(v)
				case 6:
					in.Required = n
				case 7:
					in.Ops = n
				case 8:
					in.ClaimedFrom = string(v)
				}
				return nil
			})
			s.Intents = append(s.Intents, in)
			return err
		case fieldConflict:
			var c Conflict
			members := 0
			err := kit.Fields(v, func(num protowire.Number, v []byte, n uint64) error {
				switch num {
				case 1:
					c.ID = n
				case 2:
					if members == 2 {
						return errConflict
					}
					c.Intents[members] = string(v)
					members++
				case 3:
					c.Escalated = n != 0
				case 4:
					c.Reason = string(v)
				}
				return nil
			})
			if err == nil && members != 2 {
				err = errConflict
			}
			s.Conflicts = append(s.Conflicts, c)
			return err
		case fieldCommitment:
			c, err := kit.DecodeCommitmentRecord(v)
			s.Commitment = c
			return err
		}
		return nil
	})
	if err == nil && version != stateVersion {
		err = errVersion
	}
	if err != nil {
		return nil, fmt.Errorf("%s state: %w", ModeName, err)
	}
	return s, nil
}
