package handoff

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// offerPayload is macp.modes.handoff.v1.HandoffOfferPayload.
type offerPayload struct {
	HandoffID         string // 1
	TargetParticipant string // 2
	Scope             string // 3
	Reason            string // 4
}

// contextPayload is macp.modes.handoff.v1.HandoffContextPayload.
type contextPayload struct {
	HandoffID   string // 1
	ContentType string // 2
	Context     []byte // 3
}

// answerPayload is HandoffAcceptPayload (By = accepted_by, field 4 =
// implicit) or HandoffDeclinePayload (By = declined_by).
type answerPayload struct {
	HandoffID string // 1
	By        string // 2
	Reason    string // 3
	Implicit  bool   // 4, HandoffAcceptPayload only
}

var errUTF8 = errors.New("string field is not valid UTF-8")

// walk calls str for every length-delimited field with the number of a
// string field (checking UTF-8), raw for other length-delimited fields and
// varint for varint fields. Fields with other wire types are skipped, as
// protobuf parsers treat them as unknown.
func walk(b []byte, strFields map[protowire.Number]*string, raw func(protowire.Number, []byte), varint func(protowire.Number, uint64)) error {
	return guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch typ {
		case protowire.BytesType:
			if dst, ok := strFields[num]; ok {
				if !utf8.Valid(v) {
					return fmt.Errorf("field %d: %w", num, errUTF8)
				}
				*dst = string(v)
			} else if raw != nil {
				raw(num, v)
			}
		case protowire.VarintType:
			if varint != nil {
				varint(num, n)
			}
		}
		return nil
	})
}

func decodeOffer(b []byte) (p offerPayload, err error) {
	err = walk(b, map[protowire.Number]*string{
		1: &p.HandoffID, 2: &p.TargetParticipant, 3: &p.Scope, 4: &p.Reason,
	}, nil, nil)
	return p, err
}

func decodeContext(b []byte) (p contextPayload, err error) {
	err = walk(b, map[protowire.Number]*string{1: &p.HandoffID, 2: &p.ContentType},
		func(num protowire.Number, v []byte) {
			if num == 3 {
				p.Context = append([]byte(nil), v...)
			}
		}, nil)
	return p, err
}

func decodeAnswer(b []byte, accept bool) (p answerPayload, err error) {
	err = walk(b, map[protowire.Number]*string{1: &p.HandoffID, 2: &p.By, 3: &p.Reason},
		nil, func(num protowire.Number, n uint64) {
			if accept && num == 4 {
				p.Implicit = n != 0
			}
		})
	return p, err
}
