package kit

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// The state of every example mode is a protobuf-wire message written by
// hand: scalar fields as varints, records as nested length-delimited
// messages, repeated records in a fixed order. Zero values are omitted, so a
// given state has exactly one encoding.

// The scalar and record appenders are abi/guest's (guest.AppendString,
// guest.AppendStrings, guest.AppendVarint, guest.AppendRecord).

// AppendBool appends a bool field, omitting false.
func AppendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return guest.AppendVarint(b, num, 1)
}

// Fields walks the fields of an encoded record: v holds a length-delimited
// value, n a varint. Wire types the state never uses are passed with empty
// v and zero n.
func Fields(b []byte, fn func(num protowire.Number, v []byte, n uint64) error) error {
	return guest.EachField(b, func(num protowire.Number, _ protowire.Type, v []byte, n uint64) error {
		return fn(num, v, n)
	})
}

// OpenRecord starts a nested record under num in place: it appends the tag
// and one byte for the length, and returns where that byte is. Append the
// record's fields to b, then call CloseRecord. This is AppendRecord without
// the scratch buffer, and without copying the record when it is shorter
// than 128 bytes.
func OpenRecord(b []byte, num protowire.Number) ([]byte, int) {
	if uint64(num) < 16 {
		b = append(b, byte(num)<<3|byte(protowire.BytesType), 0)
	} else {
		b = append(protowire.AppendTag(b, num, protowire.BytesType), 0)
	}
	return b, len(b) - 1
}

// CloseRecord writes the length of the record opened at mark, moving the
// record when its length takes more than one byte.
func CloseRecord(b []byte, mark int) []byte {
	if n := len(b) - mark - 1; n < 0x80 {
		b[mark] = byte(n)
		return b
	}
	return closeLongRecord(b, mark)
}

func closeLongRecord(b []byte, mark int) []byte {
	n := len(b) - mark - 1
	k := protowire.SizeVarint(uint64(n))
	for range k - 1 {
		b = append(b, 0)
	}
	copy(b[mark+k:], b[mark+1:mark+1+n])
	protowire.AppendVarint(b[:mark], uint64(n))
	return b
}

// FieldReader reads the fields of an encoded record held as a string, in a
// loop:
//
//	r := kit.FieldReader{Rest: string(b)}
//	for r.Next() {
//		switch r.Num { ... } // r.S or r.N holds the value
//	}
//	if err := r.Err(); err != nil { ... }
//
// A decoder thus copies its state once and takes every string of it as a
// substring, and walks it without a callback per field; both matter inside a
// WebAssembly guest, where allocations and calls are dear. Next takes an
// inlined path for one-byte tags and lengths. It accepts and refuses exactly
// what Fields does; groups, which the state never uses, are skipped whole
// (S and N empty).
type FieldReader struct {
	// Rest is what is left to read.
	Rest string
	// Num and Type are the number and wire type of the field Next read.
	Num  protowire.Number
	Type protowire.Type
	// S is the value of a length-delimited field, a substring of the
	// record.
	S string
	// N is the value of a varint, fixed32 or fixed64 field.
	N   uint64
	err error
}

// Next reads the next field and reports whether there was one. It reports
// false at the end of the record and at a malformed field (see Err).
func (r *FieldReader) Next() bool {
	s := r.Rest
	if len(s) >= 2 && s[0] < 0x80 && s[1] < 0x80 && s[0] >= 8 {
		switch protowire.Type(s[0] & 7) {
		case protowire.VarintType:
			r.Num, r.Type, r.S, r.N, r.Rest = protowire.Number(s[0]>>3), protowire.VarintType, "", uint64(s[1]), s[2:]
			return true
		case protowire.BytesType:
			if n := int(s[1]); n <= len(s)-2 {
				r.Num, r.Type, r.S, r.N, r.Rest = protowire.Number(s[0]>>3), protowire.BytesType, s[2:2+n], 0, s[2+n:]
				return true
			}
		}
	}
	if s == "" || r.err != nil {
		return false
	}
	var err error
	r.Num, r.Type, r.S, r.N, r.Rest, err = nextField(s)
	if err != nil {
		r.err, r.Rest = err, ""
		return false
	}
	return true
}

// Err returns the error that stopped Next, or nil at the end of the record.
func (r *FieldReader) Err() error { return r.err }

// nextField reads the field at the start of rec, which must not be empty,
// and returns it with the rest of rec.
func nextField(rec string) (num protowire.Number, typ protowire.Type, v string, n uint64, rest string, err error) {
	tag, l := uvarint(rec)
	if l < 0 {
		return 0, 0, "", 0, "", fmt.Errorf("malformed field tag: %w", protowire.ParseError(l))
	}
	num, typ = protowire.DecodeTag(tag)
	if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
		return 0, 0, "", 0, "", fmt.Errorf("malformed field tag: field number %d out of range", num)
	}
	rec = rec[l:]
	switch typ {
	case protowire.VarintType:
		n, l = uvarint(rec)
	case protowire.BytesType:
		var size uint64
		if size, l = uvarint(rec); l >= 0 {
			if size > uint64(len(rec)-l) {
				return 0, 0, "", 0, "", fmt.Errorf("malformed field %d: length exceeds the message", num)
			}
			v = rec[l : l+int(size)]
			l += int(size)
		}
	case protowire.Fixed32Type, protowire.Fixed64Type:
		l = 4
		if typ == protowire.Fixed64Type {
			l = 8
		}
		if len(rec) < l {
			l = errTruncated
			break
		}
		for i := l - 1; i >= 0; i-- {
			n = n<<8 | uint64(rec[i])
		}
	default:
		l = protowire.ConsumeFieldValue(num, typ, []byte(rec))
	}
	if l < 0 {
		return 0, 0, "", 0, "", fmt.Errorf("malformed field %d: %w", num, protowire.ParseError(l))
	}
	return num, typ, v, n, rec[l:], nil
}

// protowire's error codes for a value cut short and for a varint above
// 2^64-1.
var (
	errTruncated = func() int { _, n := protowire.ConsumeVarint(nil); return n }()
	errOverflow  = func() int {
		_, n := protowire.ConsumeVarint([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		return n
	}()
)

// uvarint decodes a varint at the start of s as protowire.ConsumeVarint
// does (at most 10 bytes, no overflow), returning a negative protowire
// error code for a bad one.
func uvarint(s string) (uint64, int) {
	if len(s) > 0 && s[0] < 0x80 {
		return uint64(s[0]), 1
	}
	var v uint64
	for i := 0; i < len(s) && i < 10; i++ {
		c := s[i]
		if i == 9 && c > 1 {
			break // overflow
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	if len(s) < 10 {
		return 0, errTruncated
	}
	return 0, errOverflow
}
