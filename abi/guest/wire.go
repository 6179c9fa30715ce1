package guest

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// field is one field of an encoded protobuf message.
type field struct {
	num protowire.Number
	typ protowire.Type
	// v is the value of a length-delimited field. It is a subslice of the
	// message that keeps the message's end of capacity (strtab relies on it).
	v []byte
	// n is the value of a varint, fixed32 or fixed64 field.
	n uint64
}

var errTruncated = errors.New("length exceeds the message")

// nextField reads the field at the start of b, which must not be empty, and
// returns it with the bytes that follow. Groups are skipped whole (f.v and
// f.n are empty).
//
// It is written as a loop body rather than with a callback and takes a fast
// path for one-byte varints, because function calls and allocations are
// expensive inside a WebAssembly guest and every step decodes a few dozen
// fields.
func nextField(b []byte) (f field, rest []byte, err error) {
	tag, l := uvarint(b)
	if l < 0 {
		return f, nil, fmt.Errorf("malformed field tag: %w", protowire.ParseError(l))
	}
	f.num, f.typ = protowire.DecodeTag(tag)
	if f.num < protowire.MinValidNumber || f.num > protowire.MaxValidNumber {
		return f, nil, fmt.Errorf("malformed field tag: field number %d out of range", f.num)
	}
	b = b[l:]
	switch f.typ {
	case protowire.VarintType:
		f.n, l = uvarint(b)
	case protowire.BytesType:
		var size uint64
		if size, l = uvarint(b); l >= 0 {
			if size > uint64(len(b)-l) {
				return f, nil, fmt.Errorf("malformed field %d: %w", f.num, errTruncated)
			}
			f.v = b[l : l+int(size)]
			l += int(size)
		}
	case protowire.Fixed32Type:
		var x uint32
		x, l = protowire.ConsumeFixed32(b)
		f.n = uint64(x)
	case protowire.Fixed64Type:
		f.n, l = protowire.ConsumeFixed64(b)
	default:
		l = protowire.ConsumeFieldValue(f.num, f.typ, b)
	}
	if l < 0 {
		return f, nil, fmt.Errorf("malformed field %d: %w", f.num, protowire.ParseError(l))
	}
	return f, b[l:], nil
}

// uvarint decodes a varint, inlining the common one-byte case.
func uvarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return protowire.ConsumeVarint(b)
}
