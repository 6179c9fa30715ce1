package pair

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
	fieldChange     protowire.Number = 2
	fieldCommitment protowire.Number = 3
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhaseDriving   = "Driving"
	PhaseReviewing = "Reviewing"
	PhaseCommitted = "Committed"
)

// State is the decoded state of a pair session. The pair is the session's
// two declared participants, which the host passes with every step.
type State struct {
	// Changes in the order they were driven; only the last may be pending.
	Changes []Change
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment
}

// Change is a driven change and its review.
type Change struct {
	ID       string
	Driver   string
	Content  string
	Reviewed bool
	Approved bool
	Comment  string
}

// Reviews returns the number of reviewed changes, which is the number of
// role swaps.
func (s *State) Reviews() int {
	n := len(s.Changes)
	if s.Pending() != nil {
		n--
	}
	return n
}

// Driver returns the current driver: the first participant after an even
// number of reviews, the second after an odd number.
func (s *State) Driver(pair []string) string {
	if len(pair) != 2 {
		return ""
	}
	return pair[s.Reviews()%2]
}

// Navigator returns the current navigator.
func (s *State) Navigator(pair []string) string {
	if len(pair) != 2 {
		return ""
	}
	return pair[(s.Reviews()+1)%2]
}

// Pending returns the change awaiting review, or nil.
func (s *State) Pending() *Change {
	if n := len(s.Changes); n > 0 && !s.Changes[n-1].Reviewed {
		return &s.Changes[n-1]
	}
	return nil
}

// LastReviewed returns the latest reviewed change, or nil.
func (s *State) LastReviewed() *Change {
	for i := len(s.Changes) - 1; i >= 0; i-- {
		if s.Changes[i].Reviewed {
			return &s.Changes[i]
		}
	}
	return nil
}

func (s *State) change(id string) *Change {
	for i := range s.Changes {
		if s.Changes[i].ID == id {
			return &s.Changes[i]
		}
	}
	return nil
}

// Eligible returns the Commitment outcomes the state allows: none while a
// change awaits review or before the first review, else the last review's
// verdict.
func (s *State) Eligible() kit.Eligibility {
	last := s.LastReviewed()
	if s.Commitment != nil || s.Pending() != nil || last == nil {
		return kit.Eligibility{}
	}
	return kit.Eligibility{Positive: last.Approved, Negative: !last.Approved}
}

// Phase derives the phase of the session.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.Pending() != nil:
		return PhaseReviewing
	}
	return PhaseDriving
}

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := guest.AppendVarint(nil, fieldVersion, stateVersion)
	for _, c := range s.Changes {
		var r []byte
		r = guest.AppendString(r, 1, c.ID)
		r = guest.AppendString(r, 2, c.Driver)
		r = guest.AppendString(r, 3, c.Content)
		r = kit.AppendBool(r, 4, c.Reviewed)
		r = kit.AppendBool(r, 5, c.Approved)
		r = guest.AppendString(r, 6, c.Comment)
		b = guest.AppendRecord(b, fieldChange, r)
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
		case fieldChange:
			var c Change
			err := kit.Fields(v, func(num protowire.Number, v []byte, n uint64) error {
				switch num {
				case 1:
					c.ID = string(v)
				case 2:
					c.Driver = string(v)
				case 3:
					c.Content = string(v)
				case 4:
					c.Reviewed = n != 0
				case 5:
					c.Approved = n != 0
				case 6:
					c.Comment = string(v)
				}
				return nil
			})
			s.Changes = append(s.Changes, c)
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
