package multiround

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// The state is a protobuf-wire message written by hand. Top-level fields, in
// this order: the format version; the round counter; the converged flag; one
// record per contributing participant in order of first contribution; at
// most one Commitment record. The same accepted history always yields the
// same bytes.
const (
	fieldVersion      protowire.Number = 1
	fieldRound        protowire.Number = 2
	fieldConverged    protowire.Number = 3
	fieldContribution protowire.Number = 4
	fieldCommitment   protowire.Number = 5
)

// stateVersion is the version of the state encoding written by this package.
const stateVersion = 1

// Phases of a multi-round session, as reported by State.Phase.
const (
	PhaseContributing = "Contributing"
	PhaseConverged    = "Converged"
	PhaseCommitted    = "Committed"
)

// State is the decoded mode state of one multi-round session.
type State struct {
	// Round counts the Contributes that changed their sender's value.
	Round uint64
	// Converged is set once every declared participant contributed and all
	// latest values are equal.
	Converged bool
	// Contributions holds each participant's latest value, in order of
	// first contribution.
	Contributions []Contribution
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *Commitment
}

// Contribution is a participant's latest value.
type Contribution struct {
	Participant string
	Value       string
}

// Commitment is the part of the accepted Commitment the mode keeps, the
// guest SDK's shared record (its encoding is the SDK's too).
type Commitment = guest.CommitmentRecord

// Phase derives the session's phase.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.Converged:
		return PhaseConverged
	}
	return PhaseContributing
}

// ConvergedValue returns the value everyone agreed on, "" before convergence.
func (s *State) ConvergedValue() string {
	if !s.Converged || len(s.Contributions) == 0 {
		return ""
	}
	return s.Contributions[0].Value
}

// value returns participant p's latest value.
func (s *State) value(p string) (string, bool) {
	for _, c := range s.Contributions {
		if c.Participant == p {
			return c.Value, true
		}
	}
	return "", false
}

// Marshal returns the canonical encoding of s. It is never empty.
func (s *State) Marshal() []byte {
	b := protowire.AppendTag(nil, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, stateVersion)
	b = guest.AppendVarint(b, fieldRound, s.Round)
	if s.Converged {
		b = guest.AppendVarint(b, fieldConverged, 1)
	}
	for _, c := range s.Contributions {
		var r []byte
		r = guest.AppendString(r, 1, c.Participant)
		r = guest.AppendString(r, 2, c.Value)
		b = guest.AppendRecord(b, fieldContribution, r)
	}
	if c := s.Commitment; c != nil {
		b = c.AppendRecordTo(b, fieldCommitment)
	}
	return b
}

var errNoVersion = errors.New("multi_round state: missing or unknown format version")

// Unmarshal decodes a state written by Marshal.
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	version := uint64(0)
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == fieldVersion && typ == protowire.VarintType:
			version = n
		case num == fieldRound && typ == protowire.VarintType:
			s.Round = n
		case num == fieldConverged && typ == protowire.VarintType:
			s.Converged = n != 0
		case num == fieldContribution && typ == protowire.BytesType:
			var c Contribution
			err := guest.EachField(v, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
				switch num {
				case 1:
					c.Participant = string(v)
				case 2:
					c.Value = string(v)
				}
				return nil
			})
			s.Contributions = append(s.Contributions, c)
			return err
		case num == fieldCommitment && typ == protowire.BytesType:
			s.Commitment = &Commitment{}
			return s.Commitment.DecodeWire(string(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("multi_round state: %w", err)
	}
	if version != stateVersion {
		return nil, errNoVersion
	}
	return s, nil
}
