package orchestrated

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// State fields, in the order Marshal writes them.
const (
	fieldVersion    protowire.Number = 1
	fieldItem       protowire.Number = 2
	fieldCommitment protowire.Number = 3
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhaseIdle      = "Idle"
	PhaseWorking   = "Working"
	PhaseComplete  = "Complete"
	PhaseCommitted = "Committed"
)

// Status is the status of a work item.
type Status uint8

// Item statuses.
const (
	ItemOpen    Status = 1
	ItemDone    Status = 2
	ItemFailed  Status = 3
	ItemRevoked Status = 4
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
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// State is the decoded state of an orchestrated session.
type State struct {
	// Items in assignment order.
	Items []Item
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment
}

// Item is an assigned work item.
type Item struct {
	ID          string
	Assignee    string
	Description string
	Status      Status
	// Reports counts the assignee's accepted Reports on the item.
	Reports uint64
	// Detail is the latest report's detail, or the revocation reason.
	Detail string
}

// item returns the item with id, or nil.
func (s *State) item(id string) *Item {
	for i := range s.Items {
		if s.Items[i].ID == id {
			return &s.Items[i]
		}
	}
	return nil
}

// Count returns the number of items with status st.
func (s *State) Count(st Status) int {
	n := 0
	for _, it := range s.Items {
		if it.Status == st {
			n++
		}
	}
	return n
}

// Open returns the number of open items.
func (s *State) Open() int { return s.Count(ItemOpen) }

// Complete reports whether work was assigned and every item is closed.
func (s *State) Complete() bool { return len(s.Items) > 0 && s.Open() == 0 }

// Eligible returns the Commitment outcomes the state allows.
func (s *State) Eligible() kit.Eligibility {
	if s.Commitment != nil || !s.Complete() {
		return kit.Eligibility{}
	}
	return kit.Eligibility{Positive: s.Count(ItemDone) > 0, Negative: true}
}

// Phase derives the phase of the session.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case len(s.Items) == 0:
		return PhaseIdle
	case s.Complete():
		return PhaseComplete
	}
	return PhaseWorking
}

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := guest.AppendVarint(nil, fieldVersion, stateVersion)
	for _, it := range s.Items {
		var r []byte
		r = guest.AppendString(r, 1, it.ID)
		r = guest.AppendString(r, 2, it.Assignee)
		r = guest.AppendString(r, 3, it.Description)
		r = guest.AppendVarint(r, 4, uint64(it.Status))
		r = guest.AppendVarint(r, 5, it.Reports)
		r = guest.AppendString(r, 6, it.Detail)
		b = guest.AppendRecord(b, fieldItem, r)
	}
	if s.Commitment != nil {
		b = s.Commitment.Append(b, fieldCommitment)
	}
	return b
}

var errVersion = errors.New("missing or unknown state format version")

// Unmarshal decodes a state written by Marshal.
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	var version uint64
	err := kit.Fields(b, func(num protowire.Number, v []byte, n uint64) error {
		switch num {
		case fieldVersion:
			version = n
		case fieldItem:
			var it Item
			err := kit.Fields(v, func(num protowire.Number, v []byte, n uint64) error {
				switch num {
				case 1:
					it.ID = string(v)
				case 2:
					it.Assignee = string(v)
				case 3:
					it.Description = string(v)
				case 4:
					it.Status = Status(n)
				case 5:
					it.Reports = n
				case 6:
					it.Detail = string(v)
				}
				return nil
			})
			s.Items = append(s.Items, it)
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
