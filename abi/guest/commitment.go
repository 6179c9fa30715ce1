package guest

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Commitment is the decoded macp.v1.CommitmentPayload.
type Commitment struct {
	CommitmentID         string
	Action               string
	AuthorityScope       string
	Reason               string
	ModeVersion          string
	PolicyVersion        string
	ConfigurationVersion string
	OutcomePositive      bool
	// Supersedes is nil when the payload names no superseded commitment.
	Supersedes *CommitmentRef
}

// CommitmentRef is the decoded macp.v1.CommitmentRef.
type CommitmentRef struct {
	SessionID      string
	CommitmentHash string
}

// DecodeCommitment decodes a macp.v1.CommitmentPayload. Unknown fields are
// skipped, as protobuf requires.
func DecodeCommitment(b []byte) (Commitment, error) {
	var c Commitment
	err := EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			c.CommitmentID = string(v)
		case num == 2 && typ == protowire.BytesType:
			c.Action = string(v)
		case num == 3 && typ == protowire.BytesType:
			c.AuthorityScope = string(v)
		case num == 4 && typ == protowire.BytesType:
			c.Reason = string(v)
		case num == 5 && typ == protowire.BytesType:
			c.ModeVersion = string(v)
		case num == 6 && typ == protowire.BytesType:
			c.PolicyVersion = string(v)
		case num == 7 && typ == protowire.BytesType:
			c.ConfigurationVersion = string(v)
		case num == 8 && typ == protowire.VarintType:
			c.OutcomePositive = n != 0
		case num == 9 && typ == protowire.BytesType:
			ref := &CommitmentRef{}
			if err := EachField(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if typ == protowire.BytesType && num == 1 {
					ref.SessionID = string(v)
				} else if typ == protowire.BytesType && num == 2 {
					ref.CommitmentHash = string(v)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("supersedes: %w", err)
			}
			c.Supersedes = ref
		}
		return nil
	})
	return c, err
}

// EachField walks the top-level fields of a protobuf message. For
// length-delimited fields v holds the bytes; for varint fields n holds the
// value; fixed32/fixed64 values are in n as well. The walk stops at the first
// malformed field or error from fn.
func EachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if err := fn(f.num, f.typ, f.v, f.n); err != nil {
			return err
		}
	}
	return nil
}

// CommitmentRecord is what a mode keeps of its accepted Commitment: enough
// for its view and for policies, while the full payload stays in the log.
// Its record encoding is {1: commitment_id, 2: action, 3: outcome_positive,
// 4: sender}, zero values omitted; its view is the JSON object
// {"commitment_id", "action", "outcome_positive", "sender"}.
type CommitmentRecord struct {
	CommitmentID    string
	Action          string
	OutcomePositive bool
	Sender          string
}

// AppendWire appends the fields of the record (not an enclosing tag).
func (c *CommitmentRecord) AppendWire(b []byte) []byte {
	b = AppendString(b, 1, c.CommitmentID)
	b = AppendString(b, 2, c.Action)
	b = AppendBool(b, 3, c.OutcomePositive)
	return AppendString(b, 4, c.Sender)
}

// AppendRecordTo appends c as a record under field num.
func (c *CommitmentRecord) AppendRecordTo(b []byte, num protowire.Number) []byte {
	b, mark := OpenRecord(b, num)
	return CloseRecord(c.AppendWire(b), mark)
}

// DecodeWire decodes the fields of a record written by AppendWire into c.
// Unknown fields and fields of another wire type are skipped.
func (c *CommitmentRecord) DecodeWire(rec string) error {
	r := FieldReader{Rest: rec}
	for r.Next() {
		switch {
		case r.Num == 1 && r.Type == protowire.BytesType:
			c.CommitmentID = r.S
		case r.Num == 2 && r.Type == protowire.BytesType:
			c.Action = r.S
		case r.Num == 3 && r.Type == protowire.VarintType:
			c.OutcomePositive = r.N != 0
		case r.Num == 4 && r.Type == protowire.BytesType:
			c.Sender = r.S
		}
	}
	return r.Err()
}

// AppendJSON appends the record's view, keys in a fixed order.
func (c *CommitmentRecord) AppendJSON(b []byte) []byte {
	b = append(b, `{"commitment_id":`...)
	b = AppendJSONString(b, c.CommitmentID)
	b = append(b, `,"action":`...)
	b = AppendJSONString(b, c.Action)
	b = append(b, `,"outcome_positive":`...)
	b = AppendJSONBool(b, c.OutcomePositive)
	b = append(b, `,"sender":`...)
	b = AppendJSONString(b, c.Sender)
	return append(b, '}')
}

// Eligibility tells which Commitment outcomes a mode's state allows now.
type Eligibility struct {
	Positive bool
	Negative bool
}

// AppendJSON appends {"positive": …, "negative": …}.
func (e Eligibility) AppendJSON(b []byte) []byte {
	b = append(b, `{"positive":`...)
	b = AppendJSONBool(b, e.Positive)
	b = append(b, `,"negative":`...)
	b = AppendJSONBool(b, e.Negative)
	return append(b, '}')
}

// Commit decides on a Commitment envelope whose authority and common
// payload fields the host has already checked: it decodes the payload and
// refuses it with INVALID_ENVELOPE when e allows no outcome (why says what
// is missing) or not the outcome it asks for. Otherwise it returns the
// record to keep, sent by env.Sender.
func Commit(env *Envelope, e Eligibility, why string) (*CommitmentRecord, error) {
	c, err := DecodeCommitment(env.Payload)
	switch {
	case err != nil:
		return nil, Invalid("Commitment payload: %v", err)
	case !e.Positive && !e.Negative:
		return nil, Invalid("no Commitment is eligible yet: %s", why)
	case c.OutcomePositive && !e.Positive:
		return nil, Invalid("only a negative Commitment (outcome_positive=false) is eligible: %s", why)
	case !c.OutcomePositive && !e.Negative:
		return nil, Invalid("only a positive Commitment (outcome_positive=true) is eligible: %s", why)
	}
	return &CommitmentRecord{
		CommitmentID:    c.CommitmentID,
		Action:          c.Action,
		OutcomePositive: c.OutcomePositive,
		Sender:          env.Sender,
	}, nil
}
