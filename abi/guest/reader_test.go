package guest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestAppendersMatchProtowire checks the inlined fast paths of the
// appenders against protowire, around every boundary they test.
func TestAppendersMatchProtowire(t *testing.T) {
	for _, num := range []protowire.Number{1, 7, 15, 16, 17, 2047, 2048, protowire.MaxValidNumber} {
		for _, n := range []int{0, 1, 126, 127, 128, 129, 300, 20000} {
			s := strings.Repeat("x", n)
			want := []byte("prefix")
			if n > 0 {
				want = protowire.AppendString(protowire.AppendTag(want, num, protowire.BytesType), s)
			}
			if got := AppendString([]byte("prefix"), num, s); !bytes.Equal(got, want) {
				t.Errorf("AppendString(%d, %d bytes) = %x, want %x", num, n, got, want)
			}
			all := protowire.AppendString(protowire.AppendTag([]byte("prefix"), num, protowire.BytesType), s)
			all = protowire.AppendString(protowire.AppendTag(all, num, protowire.BytesType), "")
			if got := AppendStrings([]byte("prefix"), num, []string{s, ""}); !bytes.Equal(got, all) {
				t.Errorf("AppendStrings(%d, %d bytes) = %x, want %x", num, n, got, all)
			}
			rec := []byte(s)
			b, mark := OpenRecord([]byte("prefix"), num)
			b = CloseRecord(append(b, rec...), mark)
			if want := AppendRecord([]byte("prefix"), num, rec); !bytes.Equal(b, want) {
				t.Errorf("OpenRecord/CloseRecord(%d, %d bytes) = %x, want %x", num, n, b, want)
			}
		}
		for _, v := range []uint64{0, 1, 127, 128, 300, 1 << 63, 1<<64 - 1} {
			want := []byte("prefix")
			if v != 0 {
				want = protowire.AppendVarint(protowire.AppendTag(want, num, protowire.VarintType), v)
			}
			if got := AppendVarint([]byte("prefix"), num, v); !bytes.Equal(got, want) {
				t.Errorf("AppendVarint(%d, %d) = %x, want %x", num, v, got, want)
			}
		}
	}
}

// walk lists the fields of b as FieldReader reads them, and the error.
func walk(b []byte) (string, error) {
	var out strings.Builder
	r := FieldReader{Rest: string(b)}
	for r.Next() {
		fmt.Fprintf(&out, "%d/%d/%x/%d ", r.Num, r.Type, r.S, r.N)
	}
	return out.String(), r.Err()
}

// walkFields lists the fields of b as EachField reads them, and the error.
func walkFields(b []byte) (string, error) {
	var out strings.Builder
	err := EachField(b, func(num protowire.Number, _ protowire.Type, v []byte, n uint64) error {
		fmt.Fprintf(&out, "%d/%x/%d ", num, v, n)
		return nil
	})
	return out.String(), err
}

func sameFields(t *testing.T, b []byte) {
	t.Helper()
	got, err := walk(b)
	want, wantErr := walkFields(b)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%x: FieldReader error %v, EachField error %v", b, err, wantErr)
	}
	if err != nil {
		return
	}
	// Drop the wire types FieldReader reports to compare with EachField.
	var trimmed strings.Builder
	for _, f := range strings.Fields(got) {
		parts := strings.SplitN(f, "/", 3)
		fmt.Fprintf(&trimmed, "%s/%s ", parts[0], parts[2])
	}
	if trimmed.String() != want {
		t.Fatalf("%x:\nFieldReader %s\nEachField   %s", b, trimmed.String(), want)
	}
}

var wireCases = [][]byte{
	nil, {0x08, 0x01}, {0x08, 0x96, 0x01}, {0x12, 0x02, 'h', 'i'}, {0x12, 0x00}, {0x12, 0x03, 'h', 'i'},
	{0x08}, {0x0a}, {0x00, 0x01}, {0x08, 0x80}, {0x07}, {0x0d, 1, 2, 3, 4}, {0x0d, 1, 2, 3}, {0x09, 1, 2, 3, 4, 5, 6, 7, 8},
	{0x09, 1}, {0x0b, 0x08, 0x01, 0x0c}, {0x0b, 0x08, 0x01}, {0x0c}, {0x0e}, {0x0f},
	{0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01}, {0xf8, 0xff, 0xff, 0xff, 0x1f, 0x01},
	{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
	{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
	{0x12, 0x80, 0x01, 'x'}, {0x32, 0x04, 0x0a, 0x02, 'i', '1', 0x38, 0x05},
}

func TestFieldReaderMatchesEachField(t *testing.T) {
	for _, b := range wireCases {
		sameFields(t, b)
	}
	long := AppendString(nil, 2, strings.Repeat("y", 300))
	sameFields(t, long)
	sameFields(t, AppendVarint(long, 100, 1<<40))
}

func FuzzFieldReaderMatchesEachField(f *testing.F) {
	for _, b := range wireCases {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameFields(t, b) })
}
