package proposal

import (
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// phase is the negotiation phase of a session.
type phase uint64

const (
	phaseNegotiating      phase = 1
	phaseConverged        phase = 2
	phaseTerminalRejected phase = 3
	phaseCommitted        phase = 4
)

func (p phase) String() string {
	switch p {
	case phaseNegotiating:
		return "Negotiating"
	case phaseConverged:
		return "Converged"
	case phaseTerminalRejected:
		return "TerminalRejected"
	case phaseCommitted:
		return "Committed"
	}
	return fmt.Sprintf("phase(%d)", uint64(p))
}

// criterion is policy acceptance.criterion.
type criterion uint64

const (
	criterionAllParties   criterion = 0
	criterionCounterparty criterion = 1
	criterionInitiator    criterion = 2
)

func (c criterion) String() string {
	switch c {
	case criterionCounterparty:
		return "counterparty"
	case criterionInitiator:
		return "initiator"
	}
	return "all_parties"
}

// proposalRecord is one Proposal or CounterProposal.
type proposalRecord struct {
	ID       string
	Proposer string
	// Supersedes is the proposal a CounterProposal counters; empty for a
	// plain Proposal.
	Supersedes string
	Withdrawn  bool
	Title      string
	Summary    string
	Tags       []string
}

// acceptRecord is a participant's current accept target.
type acceptRecord struct {
	Participant string
	ProposalID  string
}

// rejectionRecord is one accepted Reject.
type rejectionRecord struct {
	ProposalID string
	Sender     string
	Terminal   bool
	Reason     string
}

// state is the whole mode state. Slices keep acceptance order, except
// Accepts, which is kept sorted by participant.
type state struct {
	Phase               phase
	Criterion           criterion
	MaxRounds           uint64
	TerminalOnAnyReject bool
	Proposals           []proposalRecord
	Accepts             []acceptRecord
	Rejections          []rejectionRecord
}

// State field numbers.
const (
	fPhase               = 1
	fCriterion           = 2
	fMaxRounds           = 3
	fTerminalOnAnyReject = 4
	fProposal            = 5
	fAccept              = 6
	fRejection           = 7
	// fFormat holds formatVersion.
	fFormat = 15
)

// formatVersion is the version of this state encoding.
const formatVersion = 1

func (s *state) proposal(id string) *proposalRecord {
	for i := range s.Proposals {
		if s.Proposals[i].ID == id {
			return &s.Proposals[i]
		}
	}
	return nil
}

func (s *state) liveProposal(id string) *proposalRecord {
	if p := s.proposal(id); p != nil && !p.Withdrawn {
		return p
	}
	return nil
}

func (s *state) counterProposals() uint64 {
	var n uint64
	for i := range s.Proposals {
		if s.Proposals[i].Supersedes != "" {
			n++
		}
	}
	return n
}

// acceptOf returns the participant's current accept target, or "".
func (s *state) acceptOf(participant string) string {
	i := sort.Search(len(s.Accepts), func(i int) bool { return s.Accepts[i].Participant >= participant })
	if i < len(s.Accepts) && s.Accepts[i].Participant == participant {
		return s.Accepts[i].ProposalID
	}
	return ""
}

// setAccept records the participant's accept target, keeping Accepts sorted.
func (s *state) setAccept(participant, proposalID string) {
	i := sort.Search(len(s.Accepts), func(i int) bool { return s.Accepts[i].Participant >= participant })
	if i < len(s.Accepts) && s.Accepts[i].Participant == participant {
		s.Accepts[i].ProposalID = proposalID
		return
	}
	s.Accepts = append(s.Accepts, acceptRecord{})
	copy(s.Accepts[i+1:], s.Accepts[i:])
	s.Accepts[i] = acceptRecord{Participant: participant, ProposalID: proposalID}
}

// clearAcceptsOf removes every accept that names the proposal.
func (s *state) clearAcceptsOf(proposalID string) {
	kept := s.Accepts[:0]
	for _, a := range s.Accepts {
		if a.ProposalID != proposalID {
			kept = append(kept, a)
		}
	}
	s.Accepts = kept
}

// standingTerminalRejection reports whether a terminal rejection of a live
// proposal exists. Rejects only ever target live proposals and a withdrawn
// proposal never becomes live again, so withdrawing a proposal is exactly
// what drops its terminal rejections.
func (s *state) standingTerminalRejection() bool {
	for _, r := range s.Rejections {
		if r.Terminal && s.liveProposal(r.ProposalID) != nil {
			return true
		}
	}
	return false
}

// convergedProposal returns the first live proposal, in acceptance order,
// that meets the acceptance criterion, or "".
func (s *state) convergedProposal(sess *guest.Session) string {
	for i := range s.Proposals {
		p := &s.Proposals[i]
		if !p.Withdrawn && s.meetsCriterion(p, sess) {
			return p.ID
		}
	}
	return ""
}

func (s *state) meetsCriterion(p *proposalRecord, sess *guest.Session) bool {
	if s.Criterion == criterionInitiator {
		return s.acceptOf(sess.Initiator) == p.ID
	}
	required := 0
	for _, part := range sess.Participants {
		if s.Criterion == criterionCounterparty && part == p.Proposer {
			continue
		}
		required++
		if s.acceptOf(part) != p.ID {
			return false
		}
	}
	// No vacuous agreement: somebody must actually have accepted.
	return required > 0
}

// refreshPhase recomputes the phase; Committed is final.
func (s *state) refreshPhase(sess *guest.Session) {
	switch {
	case s.Phase == phaseCommitted:
	case s.standingTerminalRejection():
		s.Phase = phaseTerminalRejected
	case s.convergedProposal(sess) != "":
		s.Phase = phaseConverged
	default:
		s.Phase = phaseNegotiating
	}
}

// encode writes the state as protobuf wire bytes in a fixed field order.
func (s *state) encode() []byte {
	b := guest.AppendVarint(nil, fFormat, formatVersion)
	b = guest.AppendVarint(b, fPhase, uint64(s.Phase))
	b = guest.AppendVarint(b, fCriterion, uint64(s.Criterion))
	b = guest.AppendVarint(b, fMaxRounds, s.MaxRounds)
	b = appendBool(b, fTerminalOnAnyReject, s.TerminalOnAnyReject)
	for i := range s.Proposals {
		p := &s.Proposals[i]
		var m []byte
		m = guest.AppendString(m, 1, p.ID)
		m = guest.AppendString(m, 2, p.Proposer)
		m = guest.AppendString(m, 3, p.Supersedes)
		m = appendBool(m, 4, p.Withdrawn)
		m = guest.AppendString(m, 5, p.Title)
		m = guest.AppendString(m, 6, p.Summary)
		for _, t := range p.Tags {
			m = protowire.AppendTag(m, 7, protowire.BytesType)
			m = protowire.AppendString(m, t)
		}
		b = appendMessage(b, fProposal, m)
	}
	for _, a := range s.Accepts {
		var m []byte
		m = guest.AppendString(m, 1, a.Participant)
		m = guest.AppendString(m, 2, a.ProposalID)
		b = appendMessage(b, fAccept, m)
	}
	for _, r := range s.Rejections {
		var m []byte
		m = guest.AppendString(m, 1, r.ProposalID)
		m = guest.AppendString(m, 2, r.Sender)
		m = appendBool(m, 3, r.Terminal)
		m = guest.AppendString(m, 4, r.Reason)
		b = appendMessage(b, fRejection, m)
	}
	return b
}

var errWireType = errors.New("unexpected wire type")

// decodeState parses bytes written by encode. Unknown fields are skipped.
func decodeState(b []byte) (*state, error) {
	s := &state{}
	var format uint64
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch num {
		case fFormat, fPhase, fCriterion, fMaxRounds, fTerminalOnAnyReject:
			if typ != protowire.VarintType {
				return fmt.Errorf("state field %d: %w", num, errWireType)
			}
			switch num {
			case fFormat:
				format = n
			case fPhase:
				s.Phase = phase(n)
			case fCriterion:
				s.Criterion = criterion(n)
			case fMaxRounds:
				s.MaxRounds = n
			default:
				s.TerminalOnAnyReject = n != 0
			}
		case fProposal, fAccept, fRejection:
			if typ != protowire.BytesType {
				return fmt.Errorf("state field %d: %w", num, errWireType)
			}
			switch num {
			case fProposal:
				p, err := decodeProposalRecord(v)
				if err != nil {
					return err
				}
				s.Proposals = append(s.Proposals, p)
			case fAccept:
				var a acceptRecord
				err := eachString(v, func(num protowire.Number, str string) {
					switch num {
					case 1:
						a.Participant = str
					case 2:
						a.ProposalID = str
					}
				})
				if err != nil {
					return err
				}
				s.Accepts = append(s.Accepts, a)
			default:
				r, err := decodeRejectionRecord(v)
				if err != nil {
					return err
				}
				s.Rejections = append(s.Rejections, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("proposal state: %w", err)
	}
	if format != formatVersion {
		return nil, fmt.Errorf("proposal state: format version %d, want %d", format, formatVersion)
	}
	if s.Phase < phaseNegotiating || s.Phase > phaseCommitted {
		return nil, fmt.Errorf("proposal state: bad phase %d", uint64(s.Phase))
	}
	if s.Criterion > criterionInitiator {
		return nil, fmt.Errorf("proposal state: bad criterion %d", uint64(s.Criterion))
	}
	return s, nil
}

func decodeProposalRecord(b []byte) (proposalRecord, error) {
	var p proposalRecord
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		if num == 4 {
			if typ != protowire.VarintType {
				return fmt.Errorf("proposal field 4: %w", errWireType)
			}
			p.Withdrawn = n != 0
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("proposal field %d: %w", num, errWireType)
		}
		switch num {
		case 1:
			p.ID = string(v)
		case 2:
			p.Proposer = string(v)
		case 3:
			p.Supersedes = string(v)
		case 5:
			p.Title = string(v)
		case 6:
			p.Summary = string(v)
		case 7:
			p.Tags = append(p.Tags, string(v))
		}
		return nil
	})
	return p, err
}

func decodeRejectionRecord(b []byte) (rejectionRecord, error) {
	var r rejectionRecord
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		if num == 3 {
			if typ != protowire.VarintType {
				return fmt.Errorf("rejection field 3: %w", errWireType)
			}
			r.Terminal = n != 0
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("rejection field %d: %w", num, errWireType)
		}
		switch num {
		case 1:
			r.ProposalID = string(v)
		case 2:
			r.Sender = string(v)
		case 4:
			r.Reason = string(v)
		}
		return nil
	})
	return r, err
}

// eachString walks a message whose fields are all strings.
func eachString(b []byte, fn func(num protowire.Number, s string)) error {
	return guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return fmt.Errorf("field %d: %w", num, errWireType)
		}
		fn(num, string(v))
		return nil
	})
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return guest.AppendVarint(b, num, 1)
}

// appendMessage appends an embedded message, even an empty one, so that
// repeated records keep their count.
func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
