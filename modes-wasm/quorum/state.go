package quorum

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// The state is a protobuf-wire message written by hand. Top-level fields, in
// this order: the format version; the electorate size N (declared
// participants at SessionStart); the policy threshold read at SessionStart;
// the ApprovalRequest; one record per ballot in acceptance order; at most one
// Commitment record. The same accepted history always yields the same bytes.
const (
	fieldVersion    protowire.Number = 1
	fieldElectorate protowire.Number = 2
	fieldThreshold  protowire.Number = 3
	fieldRequest    protowire.Number = 4
	fieldBallot     protowire.Number = 5
	fieldCommitment protowire.Number = 6
)

// stateVersion is the version of the state encoding written by this package.
const stateVersion = 1

// Ballot choices.
const (
	Approve Choice = 1
	Reject  Choice = 2
	Abstain Choice = 3
)

// Choice is the kind of a ballot.
type Choice uint8

// String returns the spelling used in the mode-state view.
func (c Choice) String() string {
	switch c {
	case Approve:
		return "APPROVE"
	case Reject:
		return "REJECT"
	case Abstain:
		return "ABSTAIN"
	}
	return fmt.Sprintf("Choice(%d)", uint8(c))
}

// Phases of a Quorum session, as reported by State.Phase.
const (
	// PhasePending: no ApprovalRequest yet.
	PhasePending = "Pending"
	// PhaseVoting: the request is open and neither outcome is eligible.
	PhaseVoting = "Voting"
	// PhaseThresholdReached: approvals reached the required number; only a
	// positive Commitment is eligible.
	PhaseThresholdReached = "ThresholdReached"
	// PhaseThresholdUnreachable: the remaining voters can no longer reach
	// the required number; only a negative Commitment is eligible.
	PhaseThresholdUnreachable = "ThresholdUnreachable"
	// PhaseCommitted: a Commitment was accepted.
	PhaseCommitted = "Committed"
)

// Outcomes a Commitment may currently bind, as reported by State.Eligible.
const (
	EligibleNone     = "none"
	EligiblePositive = "positive"
	EligibleNegative = "negative"
)

// State is the decoded mode state of one Quorum session.
type State struct {
	// Electorate is N, the number of declared participants at SessionStart.
	Electorate uint64
	// Threshold is the bound policy's threshold rule, nil when it has none.
	Threshold *Threshold
	// Request is the accepted ApprovalRequest, nil before it.
	Request *Request
	// Ballots in acceptance order; at most one per voter.
	Ballots []Ballot
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *Commitment
}

// Threshold is the policy's threshold rule as bound at SessionStart.
type Threshold struct {
	Type  string // "n_of_m", "percentage", or a legacy "weighted"
	Value uint64
	// Applies tells whether the rule replaces required_approvals; a legacy
	// "weighted" rule does not.
	Applies bool
	// Required is the approvals the rule demands when it applies.
	Required uint64
}

// Request is the accepted ApprovalRequest.
type Request struct {
	RequestID         string
	Action            string
	Summary           string
	Details           []byte
	RequiredApprovals uint32
	RequestedBy       string
}

// Ballot is an accepted Approve, Reject or Abstain.
type Ballot struct {
	Voter  string
	Choice Choice
	Reason string
}

// Commitment is the part of the accepted Commitment the mode keeps, the
// guest SDK's shared record (its encoding is the SDK's too).
type Commitment = guest.CommitmentRecord

// Required returns the approvals needed: the policy threshold when it
// applies (it replaces, never adds to, required_approvals), else the
// request's required_approvals; 0 before the request.
func (s *State) Required() uint64 {
	if s.Request == nil {
		return 0
	}
	if s.Threshold != nil && s.Threshold.Applies {
		return s.Threshold.Required
	}
	return uint64(s.Request.RequiredApprovals)
}

// Count returns the number of ballots of choice c.
func (s *State) Count(c Choice) uint64 {
	var n uint64
	for _, b := range s.Ballots {
		if b.Choice == c {
			n++
		}
	}
	return n
}

// Remaining returns the number of declared participants yet to vote.
func (s *State) Remaining() uint64 {
	if cast := uint64(len(s.Ballots)); cast < s.Electorate {
		return s.Electorate - cast
	}
	return 0
}

// Eligible reports which Commitment outcome the ballots allow: positive once
// approvals reach the requirement, negative once approvals plus the voters
// still to vote fall short of it (Reject and Abstain both remove a potential
// approver), otherwise none.
func (s *State) Eligible() string {
	if s.Request == nil {
		return EligibleNone
	}
	approvals, required := s.Count(Approve), s.Required()
	switch {
	case approvals >= required:
		return EligiblePositive
	case approvals+s.Remaining() < required:
		return EligibleNegative
	}
	return EligibleNone
}

// Phase derives the session's phase from its history.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.Request == nil:
		return PhasePending
	}
	switch s.Eligible() {
	case EligiblePositive:
		return PhaseThresholdReached
	case EligibleNegative:
		return PhaseThresholdUnreachable
	}
	return PhaseVoting
}

// ballot returns voter's ballot, or nil.
func (s *State) ballot(voter string) *Ballot {
	for i := range s.Ballots {
		if s.Ballots[i].Voter == voter {
			return &s.Ballots[i]
		}
	}
	return nil
}

// Marshal returns the canonical encoding of s. It is never empty.
func (s *State) Marshal() []byte {
	b := protowire.AppendTag(nil, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, stateVersion)
	b = guest.AppendVarint(b, fieldElectorate, s.Electorate)
	if t := s.Threshold; t != nil {
		var r []byte
		r = guest.AppendString(r, 1, t.Type)
		r = guest.AppendVarint(r, 2, t.Value)
		r = guest.AppendVarint(r, 3, boolToUint(t.Applies))
		r = guest.AppendVarint(r, 4, t.Required)
		b = guest.AppendRecord(b, fieldThreshold, r)
	}
	if q := s.Request; q != nil {
		var r []byte
		r = guest.AppendString(r, 1, q.RequestID)
		r = guest.AppendString(r, 2, q.Action)
		r = guest.AppendString(r, 3, q.Summary)
		r = guest.AppendBytes(r, 4, q.Details)
		r = guest.AppendVarint(r, 5, uint64(q.RequiredApprovals))
		r = guest.AppendString(r, 6, q.RequestedBy)
		b = guest.AppendRecord(b, fieldRequest, r)
	}
	for _, x := range s.Ballots {
		var r []byte
		r = guest.AppendString(r, 1, x.Voter)
		r = guest.AppendVarint(r, 2, uint64(x.Choice))
		r = guest.AppendString(r, 3, x.Reason)
		b = guest.AppendRecord(b, fieldBallot, r)
	}
	if c := s.Commitment; c != nil {
		b = c.AppendRecordTo(b, fieldCommitment)
	}
	return b
}

var errNoVersion = errors.New("quorum state: missing or unknown format version")

// Unmarshal decodes a state written by Marshal.
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	version := uint64(0)
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		if typ == protowire.VarintType {
			switch num {
			case fieldVersion:
				version = n
			case fieldElectorate:
				s.Electorate = n
			}
			return nil
		}
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fieldThreshold:
			t := &Threshold{}
			s.Threshold = t
			return record(v, func(num protowire.Number, v []byte, n uint64) {
				switch num {
				case 1:
					t.Type = string(v)
				case 2:
					t.Value = n
				case 3:
					t.Applies = n != 0
				case 4:
					t.Required = n
				}
			})
		case fieldRequest:
			q := &Request{}
			s.Request = q
			return record(v, func(num protowire.Number, v []byte, n uint64) {
				switch num {
				case 1:
					q.RequestID = string(v)
				case 2:
					q.Action = string(v)
				case 3:
					q.Summary = string(v)
				case 4:
					q.Details = append([]byte(nil), v...)
				case 5:
					q.RequiredApprovals = uint32(n)
				case 6:
					q.RequestedBy = string(v)
				}
			})
		case fieldBallot:
			var x Ballot
			err := record(v, func(num protowire.Number, v []byte, n uint64) {
				switch num {
				case 1:
					x.Voter = string(v)
				case 2:
					x.Choice = Choice(n)
				case 3:
					x.Reason = string(v)
				}
			})
			s.Ballots = append(s.Ballots, x)
			return err
		case fieldCommitment:
			s.Commitment = &Commitment{}
			return s.Commitment.DecodeWire(string(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quorum state: %w", err)
	}
	if version != stateVersion {
		return nil, errNoVersion
	}
	return s, nil
}

// record walks the fields of a nested state record.
func record(b []byte, fn func(num protowire.Number, v []byte, n uint64)) error {
	return guest.EachField(b, func(num protowire.Number, _ protowire.Type, v []byte, n uint64) error {
		fn(num, v, n)
		return nil
	})
}

func boolToUint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
