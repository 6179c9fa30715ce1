package swarm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// State fields, in the order Marshal writes them.
const (
	fieldVersion      protowire.Number = 1
	fieldQuorum       protowire.Number = 2
	fieldContribution protowire.Number = 3
	fieldEndorsement  protowire.Number = 4
	fieldCommitment   protowire.Number = 5
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhaseOpen       = "Open"
	PhaseConverged  = "Converged"
	PhaseDeadlocked = "Deadlocked"
	PhaseCommitted  = "Committed"
)

// State is the decoded state of a swarm session.
type State struct {
	// Quorum is the number of endorsements that makes a contribution win,
	// resolved at SessionStart.
	Quorum uint64
	// Contributions in acceptance order.
	Contributions []Contribution
	// Endorsements in acceptance order, at most one per participant.
	Endorsements []Endorsement
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment
}

// Contribution is an accepted Contribute.
type Contribution struct {
	ID      string
	Sender  string
	Content string
}

// Endorsement is an accepted Endorse.
type Endorsement struct {
	Endorser       string
	ContributionID string
	Comment        string
}

func (s *State) contribution(id string) *Contribution {
	for i := range s.Contributions {
		if s.Contributions[i].ID == id {
			return &s.Contributions[i]
		}
	}
	return nil
}

func (s *State) endorsement(endorser string) *Endorsement {
	for i := range s.Endorsements {
		if s.Endorsements[i].Endorser == endorser {
			return &s.Endorsements[i]
		}
	}
	return nil
}

// Count returns the number of endorsements of contribution id.
func (s *State) Count(id string) uint64 {
	var n uint64
	for _, e := range s.Endorsements {
		if e.ContributionID == id {
			n++
		}
	}
	return n
}

// ConvergedOn returns the contribution a quorum endorsed. Endorsing stops at
// convergence, so at most one contribution can have reached the quorum.
func (s *State) ConvergedOn() (string, bool) {
	for _, c := range s.Contributions {
		if s.Count(c.ID) >= s.Quorum {
			return c.ID, true
		}
	}
	return "", false
}

// Deadlocked reports whether, among n participants, no contribution can
// reach the quorum any more: the best count plus the participants still to
// endorse fall short of it.
func (s *State) Deadlocked(n int) bool {
	if _, ok := s.ConvergedOn(); ok {
		return false
	}
	var best uint64
	for _, c := range s.Contributions {
		best = max(best, s.Count(c.ID))
	}
	remaining := uint64(max(n-len(s.Endorsements), 0))
	return best+remaining < s.Quorum
}

// Eligible returns the Commitment outcomes the state allows.
func (s *State) Eligible(n int) kit.Eligibility {
	if s.Commitment != nil {
		return kit.Eligibility{}
	}
	_, converged := s.ConvergedOn()
	return kit.Eligibility{Positive: converged, Negative: s.Deadlocked(n)}
}

// Phase derives the phase of the session.
func (s *State) Phase(n int) string {
	_, converged := s.ConvergedOn()
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case converged:
		return PhaseConverged
	case s.Deadlocked(n):
		return PhaseDeadlocked
	}
	return PhaseOpen
}

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := guest.AppendVarint(nil, fieldVersion, stateVersion)
	b = guest.AppendVarint(b, fieldQuorum, s.Quorum)
	for _, c := range s.Contributions {
		var r []byte
		r = guest.AppendString(r, 1, c.ID)
		r = guest.AppendString(r, 2, c.Sender)
		r = guest.AppendString(r, 3, c.Content)
		b = guest.AppendRecord(b, fieldContribution, r)
	}
	for _, e := range s.Endorsements {
		var r []byte
		r = guest.AppendString(r, 1, e.Endorser)
		r = guest.AppendString(r, 2, e.ContributionID)
		r = guest.AppendString(r, 3, e.Comment)
		b = guest.AppendRecord(b, fieldEndorsement, r)
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
		case fieldQuorum:
			s.Quorum = n
		case fieldContribution:
			var c Contribution
			err := kit.Fields(v, func(num protowire.Number, v []byte, _ uint64) error {
				switch num {
				case 1:
					c.ID = string(v)
				case 2:
					c.Sender = string(v)
				case 3:
					c.Content = string(v)
				}
				return nil
			})
			s.Contributions = append(s.Contributions, c)
			return err
		case fieldEndorsement:
			var e Endorsement
			err := kit.Fields(v, func(num protowire.Number, v []byte, _ uint64) error {
				switch num {
				case 1:
					e.Endorser = string(v)
				case 2:
					e.ContributionID = string(v)
				case 3:
					e.Comment = string(v)
				}
				return nil
			})
			s.Endorsements = append(s.Endorsements, e)
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
