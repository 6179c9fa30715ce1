package task

import (
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// kind is the protobuf type of a payload field.
type kind uint8

const (
	kNone   kind = iota
	kString      // string: valid UTF-8
	kBytes       // bytes: only the length is kept
	kVarint      // int64 or bool
	kDouble      // double (fixed64)
)

// maxField is the highest field number of any Task-mode payload.
const maxField = 6

// schema lists the kind of each field number of one payload message.
type schema [maxField + 1]kind

// fields holds one decoded payload.
type fields struct {
	str  [maxField + 1]string
	size [maxField + 1]uint64 // bytes fields: length
	num  [maxField + 1]uint64 // varint and fixed64 fields: raw value
}

// decode parses a payload of the given schema following protobuf rules: the
// last occurrence of a field wins, unknown fields and fields with an
// unexpected wire type are skipped, and a string that is not valid UTF-8 is
// an error.
func decode(b []byte, sc schema) (*fields, error) {
	f := &fields{}
	err := guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		if num < 1 || num > maxField {
			return nil
		}
		switch k := sc[num]; {
		case k == kString && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return fmt.Errorf("field %d is not valid UTF-8", num)
			}
			f.str[num] = string(v)
		case k == kBytes && typ == protowire.BytesType:
			f.size[num] = uint64(len(v))
		case k == kVarint && typ == protowire.VarintType,
			k == kDouble && typ == protowire.Fixed64Type:
			f.num[num] = n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Decoded payloads of macp.modes.task.v1.

type requestPayload struct {
	TaskID, Title, RequestedAssignee string
	InputSize                        uint64
	DeadlineUnixMs                   int64
}

// answerPayload is a TaskAcceptPayload or TaskRejectPayload.
type answerPayload struct {
	TaskID, Assignee, Reason string
}

type updatePayload struct {
	TaskID, Status, Message string
	Progress                float64
	PartialOutputSize       uint64
}

type completePayload struct {
	TaskID, Assignee, Summary string
	OutputSize                uint64
}

type failPayload struct {
	TaskID, Assignee, ErrorCode, Reason string
	Retryable                           bool
}

func decodeRequest(b []byte) (requestPayload, error) {
	f, err := decode(b, schema{1: kString, 2: kString, 3: kString, 4: kString, 5: kBytes, 6: kVarint})
	if err != nil {
		return requestPayload{}, err
	}
	return requestPayload{TaskID: f.str[1], Title: f.str[2], RequestedAssignee: f.str[4],
		InputSize: f.size[5], DeadlineUnixMs: int64(f.num[6])}, nil
}

func decodeAnswer(b []byte) (answerPayload, error) {
	f, err := decode(b, schema{1: kString, 2: kString, 3: kString})
	if err != nil {
		return answerPayload{}, err
	}
	return answerPayload{TaskID: f.str[1], Assignee: f.str[2], Reason: f.str[3]}, nil
}

func decodeUpdate(b []byte) (updatePayload, error) {
	f, err := decode(b, schema{1: kString, 2: kString, 3: kDouble, 4: kString, 5: kBytes})
	if err != nil {
		return updatePayload{}, err
	}
	p := updatePayload{TaskID: f.str[1], Status: f.str[2], Progress: math.Float64frombits(f.num[3]),
		Message: f.str[4], PartialOutputSize: f.size[5]}
	if math.IsNaN(p.Progress) || math.IsInf(p.Progress, 0) {
		return updatePayload{}, fmt.Errorf("progress %v is not a finite number", p.Progress)
	}
	return p, nil
}

func decodeComplete(b []byte) (completePayload, error) {
	f, err := decode(b, schema{1: kString, 2: kString, 3: kBytes, 4: kString})
	if err != nil {
		return completePayload{}, err
	}
	return completePayload{TaskID: f.str[1], Assignee: f.str[2], OutputSize: f.size[3], Summary: f.str[4]}, nil
}

func decodeFail(b []byte) (failPayload, error) {
	f, err := decode(b, schema{1: kString, 2: kString, 3: kString, 4: kString, 5: kVarint})
	if err != nil {
		return failPayload{}, err
	}
	return failPayload{TaskID: f.str[1], Assignee: f.str[2], ErrorCode: f.str[3], Reason: f.str[4],
		Retryable: f.num[5] != 0}, nil
}
