package guest

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Helpers for modes that encode their state as a protobuf-wire message by
// hand. Scalar fields follow proto3 and are omitted when zero, so the same
// state always encodes to the same bytes.
//
// They take a fast path for the common case of a field number below 16 and
// a value or length below 128, each one byte: inside a WebAssembly guest a
// call into protowire costs several times the bytes it writes. Both paths
// give the same bytes.

// AppendString appends string field num, omitted when empty.
func AppendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

// AppendStrings appends one string field num per element, empty ones
// included, so that positions survive a round trip.
func AppendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = appendStringAlways(b, num, s)
	}
	return b
}

// appendStringAlways appends string field num, even an empty one.
func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	if uint64(num) < 16 && len(s) < 0x80 {
		b = append(b, byte(num)<<3|byte(protowire.BytesType), byte(len(s)))
		return append(b, s...)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// AppendBytes appends bytes field num, omitted when empty.
func AppendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return AppendRecord(b, num, v)
}

// AppendVarint appends varint field num, omitted when zero.
func AppendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	if uint64(num) < 16 && v < 0x80 {
		return append(b, byte(num)<<3|byte(protowire.VarintType), byte(v))
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// AppendRecord appends a nested message (a record) as field num, even an
// empty one: a record's presence is information.
func AppendRecord(b []byte, num protowire.Number, rec []byte) []byte {
	if uint64(num) < 16 && len(rec) < 0x80 {
		b = append(b, byte(num)<<3|byte(protowire.BytesType), byte(len(rec)))
		return append(b, rec...)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, rec)
}

// AppendFloat64 appends double field num, omitted when its bits are zero
// (+0).
func AppendFloat64(b []byte, num protowire.Number, v float64) []byte {
	bits := math.Float64bits(v)
	if bits == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, bits)
}
