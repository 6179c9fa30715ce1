package guest

import "google.golang.org/protobuf/encoding/protowire"

// Helpers for modes that encode their state as a protobuf-wire message by
// hand. Scalar fields follow proto3 and are omitted when zero, so the same
// state always encodes to the same bytes.

// AppendString appends string field num, omitted when empty.
func AppendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// AppendBytes appends bytes field num, omitted when empty.
func AppendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// AppendVarint appends varint field num, omitted when zero.
func AppendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// AppendRecord appends a nested message (a record) as field num, even an
// empty one: a record's presence is information.
func AppendRecord(b []byte, num protowire.Number, rec []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, rec)
}
