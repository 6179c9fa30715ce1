package broadcast

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
	fieldAnnouncement protowire.Number = 2
	fieldAck          protowire.Number = 3
	fieldCommitment   protowire.Number = 4
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhasePending      = "Pending"
	PhaseAnnounced    = "Announced"
	PhaseAcknowledged = "Acknowledged"
	PhaseCommitted    = "Committed"
)

// State is the decoded state of a broadcast session.
type State struct {
	// Announcement is nil until the announcer announces.
	Announcement *Announcement
	// Acks in acceptance order, at most one per recipient.
	Acks []Ack
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment
}

// Announcement is the accepted Announce.
type Announcement struct {
	ID      string
	Content string
}

// Ack is an accepted Acknowledge.
type Ack struct {
	Recipient string
	Note      string
}

func (s *State) acked(recipient string) bool {
	for _, a := range s.Acks {
		if a.Recipient == recipient {
			return true
		}
	}
	return false
}

// Complete reports whether all n recipients acknowledged the announcement.
// Acks only come from distinct recipients, so counting them is enough.
func (s *State) Complete(n int) bool { return s.Announcement != nil && len(s.Acks) >= n }

// Eligible returns the Commitment outcomes the state allows.
func (s *State) Eligible(n int) kit.Eligibility {
	if s.Commitment != nil || !s.Complete(n) {
		return kit.Eligibility{}
	}
	return kit.Eligibility{Positive: true, Negative: true}
}

// Phase derives the phase of the session.
func (s *State) Phase(n int) string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.Announcement == nil:
		return PhasePending
	case s.Complete(n):
		return PhaseAcknowledged
	}
	return PhaseAnnounced
}

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := guest.AppendVarint(nil, fieldVersion, stateVersion)
	if a := s.Announcement; a != nil {
		var r []byte
		r = guest.AppendString(r, 1, a.ID)
		r = guest.AppendString(r, 2, a.Content)
		b = guest.AppendRecord(b, fieldAnnouncement, r)
	}
	for _, a := range s.Acks {
		var r []byte
		r = guest.AppendString(r, 1, a.Recipient)
		r = guest.AppendString(r, 2, a.Note)
		b = guest.AppendRecord(b, fieldAck, r)
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
		case fieldAnnouncement:
			a := &Announcement{}
			s.Announcement = a
			return kit.Fields(v, func(num protowire.Number, v []byte, _ uint64) error {
				switch num {
				case 1:
					a.ID = string(v)
				case 2:
					a.Content = string(v)
				}
				return nil
			})
		case fieldAck:
			var a Ack
			err := kit.Fields(v, func(num protowire.Number, v []byte, _ uint64) error {
				switch num {
				case 1:
					a.Recipient = string(v)
				case 2:
					a.Note = string(v)
				}
				return nil
			})
			s.Acks = append(s.Acks, a)
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
