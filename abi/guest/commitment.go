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
