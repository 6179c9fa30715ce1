package handoff

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// The state is a protobuf-wire message written by hand. Top-level fields, in
// this order: the format version; the implicit-accept timeout read from the
// bound policy at SessionStart; one record per offer in offer order; one
// record per HandoffContext in acceptance order; at most one Commitment
// record. Every slice is kept in history order, so the same accepted history
// always yields the same bytes.
const (
	fieldVersion         protowire.Number = 1
	fieldImplicitTimeout protowire.Number = 2
	fieldOffer           protowire.Number = 3
	fieldContext         protowire.Number = 4
	fieldCommitment      protowire.Number = 5
)

// stateVersion is the version of the state encoding written by this package.
const stateVersion = 1

// Dispositions of an offer.
const (
	Offered  Disposition = 1
	Accepted Disposition = 2
	Declined Disposition = 3
)

// Disposition is where an offer stands.
type Disposition uint8

// String returns the spelling used in the mode-state view.
func (d Disposition) String() string {
	switch d {
	case Offered:
		return "Offered"
	case Accepted:
		return "Accepted"
	case Declined:
		return "Declined"
	}
	return fmt.Sprintf("Disposition(%d)", uint8(d))
}

// Phases of a Handoff session, as reported by State.Phase.
const (
	// PhasePending: no offer yet.
	PhasePending = "Pending"
	// PhaseOfferPending: the latest offer awaits its target's answer.
	PhaseOfferPending = "OfferPending"
	// PhaseAccepted: an offer was accepted; a Commitment is eligible.
	PhaseAccepted = "Accepted"
	// PhaseDeclined: the latest offer was declined; a Commitment is
	// eligible and the owner may also make a new offer.
	PhaseDeclined = "Declined"
	// PhaseCommitted: a Commitment was accepted.
	PhaseCommitted = "Committed"
)

// State is the decoded mode state of one Handoff session.
type State struct {
	// ImplicitAcceptTimeoutMs is the bound policy's
	// acceptance.implicit_accept_timeout_ms (0 = no implicit accept).
	ImplicitAcceptTimeoutMs int64
	Offers                  []Offer   // in offer order
	Contexts                []Context // in acceptance order
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *Commitment
}

// Offer is an accepted HandoffOffer and its answer.
type Offer struct {
	HandoffID         string
	TargetParticipant string
	Scope             string
	Reason            string
	OfferedBy         string
	// OfferedAtUnixMs is the host time at which the offer was accepted; the
	// host's implicit-accept timer starts there.
	OfferedAtUnixMs int64
	// OfferedAtClockMs is the session clock (open time since the TTL anchor,
	// suspensions excluded) at which the offer was accepted; the
	// implicit-accept timer runs from there.
	OfferedAtClockMs int64
	Disposition      Disposition
	// RespondedBy is the sender of the accepted HandoffAccept or
	// HandoffDecline (always the target).
	RespondedBy string
	// ResponseReason is the reason of that HandoffAccept or HandoffDecline.
	ResponseReason string
	// Implicit is true when the offer was accepted by the runtime's
	// synthetic implicit accept.
	Implicit bool
}

// Context is an accepted HandoffContext.
type Context struct {
	HandoffID   string
	ContentType string
	Context     []byte
	Sender      string
}

// Commitment is the part of the accepted Commitment the mode keeps, the
// guest SDK's shared record (its encoding is the SDK's too).
type Commitment = guest.CommitmentRecord

// Phase derives the session's phase from its history.
func (s *State) Phase() string {
	if s.Commitment != nil {
		return PhaseCommitted
	}
	if s.accepted() != nil {
		return PhaseAccepted
	}
	if len(s.Offers) == 0 {
		return PhasePending
	}
	if s.Offers[len(s.Offers)-1].Disposition == Declined {
		return PhaseDeclined
	}
	return PhaseOfferPending
}

// offer returns the offer with the given id, or nil.
func (s *State) offer(id string) *Offer {
	for i := range s.Offers {
		if s.Offers[i].HandoffID == id {
			return &s.Offers[i]
		}
	}
	return nil
}

// pending returns the offer still awaiting an answer, or nil.
func (s *State) pending() *Offer {
	for i := range s.Offers {
		if s.Offers[i].Disposition == Offered {
			return &s.Offers[i]
		}
	}
	return nil
}

// accepted returns the accepted offer, or nil.
func (s *State) accepted() *Offer {
	for i := range s.Offers {
		if s.Offers[i].Disposition == Accepted {
			return &s.Offers[i]
		}
	}
	return nil
}

// answered reports whether some offer was accepted or declined, which makes
// a Commitment eligible.
func (s *State) answered() bool {
	for i := range s.Offers {
		if s.Offers[i].Disposition != Offered {
			return true
		}
	}
	return false
}

// Marshal returns the canonical encoding of s. It is never empty.
func (s *State) Marshal() []byte {
	b := protowire.AppendTag(nil, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, stateVersion)
	if s.ImplicitAcceptTimeoutMs != 0 {
		b = protowire.AppendTag(b, fieldImplicitTimeout, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.ImplicitAcceptTimeoutMs))
	}
	for i := range s.Offers {
		o := &s.Offers[i]
		var r []byte
		r = guest.AppendString(r, 1, o.HandoffID)
		r = guest.AppendString(r, 2, o.TargetParticipant)
		r = guest.AppendString(r, 3, o.Scope)
		r = guest.AppendString(r, 4, o.Reason)
		r = guest.AppendString(r, 5, o.OfferedBy)
		r = guest.AppendVarint(r, 6, uint64(o.OfferedAtUnixMs))
		r = guest.AppendVarint(r, 7, uint64(o.Disposition))
		r = guest.AppendString(r, 8, o.RespondedBy)
		r = guest.AppendString(r, 9, o.ResponseReason)
		r = guest.AppendVarint(r, 10, boolToUint(o.Implicit))
		r = guest.AppendVarint(r, 11, uint64(o.OfferedAtClockMs))
		b = guest.AppendRecord(b, fieldOffer, r)
	}
	for i := range s.Contexts {
		c := &s.Contexts[i]
		var r []byte
		r = guest.AppendString(r, 1, c.HandoffID)
		r = guest.AppendString(r, 2, c.ContentType)
		r = guest.AppendBytes(r, 3, c.Context)
		r = guest.AppendString(r, 4, c.Sender)
		b = guest.AppendRecord(b, fieldContext, r)
	}
	if c := s.Commitment; c != nil {
		b = c.AppendRecordTo(b, fieldCommitment)
	}
	return b
}

var errNoVersion = errors.New("handoff state: missing or unknown format version")

// Unmarshal decodes a state written by Marshal.
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	version := uint64(0)
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == fieldVersion && typ == protowire.VarintType:
			version = n
		case num == fieldImplicitTimeout && typ == protowire.VarintType:
			s.ImplicitAcceptTimeoutMs = int64(n)
		case num == fieldOffer && typ == protowire.BytesType:
			var o Offer
			err := guest.EachField(v, func(num protowire.Number, _ protowire.Type, v []byte, n uint64) error {
				switch num {
				case 1:
					o.HandoffID = string(v)
				case 2:
					o.TargetParticipant = string(v)
				case 3:
					o.Scope = string(v)
				case 4:
					o.Reason = string(v)
				case 5:
					o.OfferedBy = string(v)
				case 6:
					o.OfferedAtUnixMs = int64(n)
				case 7:
					o.Disposition = Disposition(n)
				case 8:
					o.RespondedBy = string(v)
				case 9:
					o.ResponseReason = string(v)
				case 10:
					o.Implicit = n != 0
				case 11:
					o.OfferedAtClockMs = int64(n)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("offer: %w", err)
			}
			s.Offers = append(s.Offers, o)
		case num == fieldContext && typ == protowire.BytesType:
			var c Context
			err := guest.EachField(v, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
				switch num {
				case 1:
					c.HandoffID = string(v)
				case 2:
					c.ContentType = string(v)
				case 3:
					c.Context = append([]byte(nil), v...)
				case 4:
					c.Sender = string(v)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("context: %w", err)
			}
			s.Contexts = append(s.Contexts, c)
		case num == fieldCommitment && typ == protowire.BytesType:
			c := &Commitment{}
			if err := c.DecodeWire(string(v)); err != nil {
				return fmt.Errorf("commitment: %w", err)
			}
			s.Commitment = c
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("handoff state: %w", err)
	}
	if version != stateVersion {
		return nil, errNoVersion
	}
	return s, nil
}

func boolToUint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
