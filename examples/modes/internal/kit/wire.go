package kit

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// The state of every example mode is a protobuf-wire message written by
// hand: scalar fields as varints, records as nested length-delimited
// messages, repeated records in a fixed order. Zero values are omitted, so a
// given state has exactly one encoding.

// AppendString appends a string field, omitting "".
func AppendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// AppendStrings appends one string field per element, "" included, so that
// positions survive a round trip.
func AppendStrings(b []byte, num protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return b
}

// AppendVarint appends a varint field, omitting 0.
func AppendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// AppendBool appends a bool field, omitting false.
func AppendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return AppendVarint(b, num, 1)
}

// AppendRecord appends a nested record, even an empty one.
func AppendRecord(b []byte, num protowire.Number, r []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, r)
}

// Fields walks the fields of an encoded record: v holds a length-delimited
// value, n a varint. Wire types the state never uses are passed with empty
// v and zero n.
func Fields(b []byte, fn func(num protowire.Number, v []byte, n uint64) error) error {
	return guest.EachField(b, func(num protowire.Number, _ protowire.Type, v []byte, n uint64) error {
		return fn(num, v, n)
	})
}
