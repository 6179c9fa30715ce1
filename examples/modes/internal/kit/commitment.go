package kit

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// Commitment is what a mode keeps of its accepted Commitment.
type Commitment struct {
	CommitmentID    string `json:"commitment_id"`
	Action          string `json:"action"`
	OutcomePositive bool   `json:"outcome_positive"`
	Sender          string `json:"sender"`
}

// Append appends c as a record under num.
func (c *Commitment) Append(b []byte, num protowire.Number) []byte {
	var r []byte
	r = guest.AppendString(r, 1, c.CommitmentID)
	r = guest.AppendString(r, 2, c.Action)
	r = AppendBool(r, 3, c.OutcomePositive)
	r = guest.AppendString(r, 4, c.Sender)
	return guest.AppendRecord(b, num, r)
}

// DecodeCommitmentRecord decodes a record written by Commitment.Append.
func DecodeCommitmentRecord(b []byte) (*Commitment, error) {
	c := &Commitment{}
	err := Fields(b, func(num protowire.Number, v []byte, n uint64) error {
		switch num {
		case 1:
			c.CommitmentID = string(v)
		case 2:
			c.Action = string(v)
		case 3:
			c.OutcomePositive = n != 0
		case 4:
			c.Sender = string(v)
		}
		return nil
	})
	return c, err
}

// Eligibility tells which Commitment outcomes a mode's state allows.
type Eligibility struct {
	Positive bool `json:"positive"`
	Negative bool `json:"negative"`
}

// Commit decides on a Commitment envelope. The host has already checked its
// authority and common payload fields; Commit decodes it, refuses it with
// INVALID_ENVELOPE when e allows no outcome (why says what is missing) or
// not the outcome it asks for, and otherwise returns the record to keep.
func Commit(env *guest.Envelope, e Eligibility, why string) (*Commitment, guest.Result, bool) {
	c, err := guest.DecodeCommitment(env.Payload)
	switch {
	case err != nil:
		return nil, Invalid("Commitment payload: %v", err), false
	case !e.Positive && !e.Negative:
		return nil, Invalid("no Commitment is eligible yet: %s", why), false
	case c.OutcomePositive && !e.Positive:
		return nil, Invalid("only a negative Commitment (outcome_positive=false) is eligible: %s", why), false
	case !c.OutcomePositive && !e.Negative:
		return nil, Invalid("only a positive Commitment (outcome_positive=true) is eligible: %s", why), false
	}
	return &Commitment{
		CommitmentID:    c.CommitmentID,
		Action:          c.Action,
		OutcomePositive: c.OutcomePositive,
		Sender:          env.Sender,
	}, guest.Result{}, true
}
