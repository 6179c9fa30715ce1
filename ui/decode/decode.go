// Package decode turns envelope payloads into readable fields for the admin
// UI. Payloads of the built-in modes and of the runtime's own message types
// are decoded with their protobuf types; other payloads (uploaded modes)
// are read as JSON when they are JSON, and otherwise walked as protobuf
// wire format by field number. Bytes are never shown raw.
package decode

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The built-in modes' payload types, registered for lookup by name.
	_ "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	_ "github.com/concord-macp/concord/proto/macp/v1"
)

// Field is one decoded value: a dotted path and its text.
type Field struct {
	Name, Value string
}

// Payload is a decoded payload.
type Payload struct {
	// Kind says how it was decoded: the protobuf type's full name, "json",
	// "protobuf wire format" or "empty".
	Kind   string
	Fields []Field
}

// coreTypes are the payload types every mode shares.
var coreTypes = map[string]string{
	"SessionStart":   "macp.v1.SessionStartPayload",
	"Commitment":     "macp.v1.CommitmentPayload",
	"SessionCancel":  "macp.v1.SessionCancelPayload",
	"SessionSuspend": "macp.v1.SessionSuspendPayload",
	"SessionResume":  "macp.v1.SessionResumePayload",
	"Signal":         "macp.v1.SignalPayload",
	"Progress":       "macp.v1.ProgressPayload",
}

// modePackage returns the protobuf package of a built-in mode's payloads:
// macp.mode.<name>.v1 and ext.<name>.v1 live in macp.modes.<name>.v1.
func modePackage(mode string) string {
	for _, prefix := range []string{"macp.mode.", "ext."} {
		if rest, ok := strings.CutPrefix(mode, prefix); ok && strings.Count(rest, ".") == 1 {
			return "macp.modes." + rest
		}
	}
	return ""
}

// typeOf finds the registered payload type of messageType in mode.
func typeOf(mode, messageType string) (protoreflect.MessageType, bool) {
	name, ok := coreTypes[messageType]
	if !ok {
		pkg := modePackage(mode)
		if pkg == "" {
			return nil, false
		}
		name = pkg + "." + messageType + "Payload"
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	return mt, err == nil
}

// maxFields bounds what one payload shows.
const maxFields = 200

// Decode decodes the payload of a messageType envelope of mode.
func Decode(mode, messageType string, payload []byte) Payload {
	if len(payload) == 0 {
		return Payload{Kind: "empty"}
	}
	if mt, ok := typeOf(mode, messageType); ok {
		m := mt.New().Interface()
		if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(payload, m); err == nil {
			if b, err := (protojson.MarshalOptions{UseProtoNames: true}).Marshal(m); err == nil {
				var v any
				if json.Unmarshal(b, &v) == nil {
					return Payload{Kind: string(mt.Descriptor().FullName()), Fields: flatten(v)}
				}
			}
		}
	}
	if json.Valid(payload) {
		var v any
		if json.Unmarshal(payload, &v) == nil {
			return Payload{Kind: "json", Fields: flatten(v)}
		}
	}
	if fields, ok := wire(payload, "", 0); ok {
		return Payload{Kind: "protobuf wire format", Fields: cap200(fields)}
	}
	return Payload{Kind: "binary", Fields: []Field{{Name: "bytes", Value: describeBytes(payload)}}}
}

func cap200(fs []Field) []Field {
	if len(fs) > maxFields {
		return append(fs[:maxFields:maxFields], Field{Name: "…", Value: fmt.Sprintf("%d more fields", len(fs)-maxFields)})
	}
	return fs
}

// flatten turns a decoded JSON value into sorted dotted fields.
func flatten(v any) []Field {
	var out []Field
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if len(out) > maxFields {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 && prefix != "" {
				out = append(out, Field{prefix, "{}"})
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(join(prefix, k), x[k])
			}
		case []any:
			if len(x) == 0 {
				out = append(out, Field{prefix, "[]"})
			}
			for i, e := range x {
				walk(prefix+"["+strconv.Itoa(i)+"]", e)
			}
		case string:
			out = append(out, Field{prefix, x})
		case nil:
			out = append(out, Field{prefix, "null"})
		default:
			b, _ := json.Marshal(x)
			out = append(out, Field{prefix, string(b)})
		}
	}
	walk("", v)
	if len(out) == 1 && out[0].Name == "" {
		out[0].Name = "value"
	}
	return cap200(out)
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// wire walks b as protobuf wire format. Length-delimited fields are shown
// as text when they are printable UTF-8, as a nested message when they
// parse as one, and otherwise described.
func wire(b []byte, prefix string, depth int) ([]Field, bool) {
	var out []Field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num <= 0 {
			return nil, false
		}
		b = b[n:]
		name := join(prefix, strconv.Itoa(int(num)))
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, false
			}
			out = append(out, Field{name, strconv.FormatUint(v, 10)})
			b = b[n:]
		case protowire.Fixed32Type:
			v, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return nil, false
			}
			out = append(out, Field{name, strconv.FormatUint(uint64(v), 10)})
			b = b[n:]
		case protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return nil, false
			}
			out = append(out, Field{name, strconv.FormatUint(v, 10)})
			b = b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false
			}
			b = b[n:]
			switch {
			case printable(v):
				out = append(out, Field{name, string(v)})
			case depth < 8:
				if nested, ok := wire(v, name, depth+1); ok && len(nested) > 0 {
					out = append(out, nested...)
					continue
				}
				out = append(out, Field{name, describeBytes(v)})
			default:
				out = append(out, Field{name, describeBytes(v)})
			}
		default:
			return nil, false
		}
	}
	return out, true
}

// printable reports whether b is UTF-8 text without control characters
// other than white space.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

// describeBytes says what binary data is without dumping it.
func describeBytes(b []byte) string {
	preview := b
	if len(preview) > 16 {
		preview = preview[:16]
	}
	s := fmt.Sprintf("%d bytes of binary data (hex %s", len(b), hex.EncodeToString(preview))
	if len(b) > len(preview) {
		s += "…"
	}
	return s + ")"
}
