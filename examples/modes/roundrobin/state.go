package roundrobin

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
	fieldRounds       protowire.Number = 2
	fieldTurns        protowire.Number = 3
	fieldContribution protowire.Number = 4
	fieldCommitment   protowire.Number = 5
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhaseInProgress = "InProgress"
	PhaseComplete   = "Complete"
	PhaseCommitted  = "Committed"
)

// State is the decoded state of a round-robin session. The turn order is
// the session's declared participants, which the host passes with every
// step, so the state does not repeat it.
type State struct {
	// Rounds is the number of rounds to complete.
	Rounds uint64
	// Turns counts the turns taken (contributed or passed).
	Turns uint64
	// Contributions in acceptance order.
	Contributions []Contribution
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment
}

// Contribution is an accepted Contribute.
type Contribution struct {
	// Turn is the 1-based number of the turn it ended.
	Turn    uint64
	Sender  string
	Content string
}

// Complete reports whether every one of n participants had its turn in every
// round.
func (s *State) Complete(n int) bool { return s.Turns >= s.Rounds*uint64(n) }

// Holder returns the participant whose turn it is, "" once complete.
func (s *State) Holder(participants []string) string {
	n := len(participants)
	if n == 0 || s.Complete(n) {
		return ""
	}
	return participants[s.Turns%uint64(n)]
}

// Eligible returns the Commitment outcomes the state allows.
func (s *State) Eligible(n int) kit.Eligibility {
	if s.Commitment != nil || !s.Complete(n) {
		return kit.Eligibility{}
	}
	return kit.Eligibility{Positive: len(s.Contributions) > 0, Negative: true}
}

// Phase derives the phase of the session.
func (s *State) Phase(n int) string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.Complete(n):
		return PhaseComplete
	}
	return PhaseInProgress
}

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := guest.AppendVarint(nil, fieldVersion, stateVersion)
	b = guest.AppendVarint(b, fieldRounds, s.Rounds)
	b = guest.AppendVarint(b, fieldTurns, s.Turns)
	for _, c := range s.Contributions {
		var r []byte
		r = guest.AppendVarint(r, 1, c.Turn)
		r = guest.AppendString(r, 2, c.Sender)
		r = guest.AppendString(r, 3, c.Content)
		b = guest.AppendRecord(b, fieldContribution, r)
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
		case fieldRounds:
			s.Rounds = n
		case fieldTurns:
			s.Turns = n
		case fieldContribution:
			var c Contribution
			err := kit.Fields(v, func(num protowire.Number, v []byte, n uint64) error {
				switch num {
				case 1:
					c.Turn = n
				case 2:
					c.Sender = string(v)
				case 3:
					c.Content = string(v)
				}
				return nil
			})
			s.Contributions = append(s.Contributions, c)
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
