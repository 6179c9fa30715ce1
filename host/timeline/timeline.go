// Package timeline renders a session's log for people: each entry with its
// envelope's payload decoded into JSON through the protobuf type its mode
// defines for that message type (the built-in modes' payloads in
// proto/macp/modes, the common ones in macp.v1), falling back to the
// payload itself when it is JSON and to hex otherwise. The CLI's `concord
// session show`/`watch` and the admin API's SessionTimeline use it.
package timeline

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/concord-macp/concord/abi"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"

	// The payload types of the built-in modes, found by name.
	_ "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/handoff/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/quorum/v1"
	_ "github.com/concord-macp/concord/proto/macp/modes/task/v1"
	_ "github.com/concord-macp/concord/proto/macp/v1"
)

// Entry renders one log entry.
func Entry(e *storev1.Entry) *adminv1.TimelineEntry {
	env := e.GetEnvelope()
	out := &adminv1.TimelineEntry{
		Sequence:         e.GetSequence(),
		AcceptedAtUnixMs: e.GetAcceptedAtUnixMs(),
		Origin:           e.GetOrigin(),
		MessageType:      env.GetMessageType(),
		MessageId:        env.GetMessageId(),
		Sender:           env.GetSender(),
		StateAfter:       e.GetStateAfter(),
		CommitmentHash:   e.GetCommitmentHash(),
		Governance:       e.GetGovernance(),
	}
	if p := env.GetPayload(); len(p) > 0 {
		out.PayloadType, out.PayloadJson, out.PayloadHex = Payload(env.GetMode(), env.GetMessageType(), p)
	}
	return out
}

// Payload decodes a payload of messageType in mode: the protobuf type's
// full name and the payload as JSON when a type fits, "" and the payload
// when it is a JSON document, or only its hex.
func Payload(mode, messageType string, payload []byte) (typeName, jsonText, hexText string) {
	for _, name := range candidates(mode, messageType) {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
		if err != nil {
			continue
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(payload, m); err != nil {
			continue
		}
		if m.ProtoReflect().GetUnknown() != nil {
			continue // fields the type does not know: not this type
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			continue
		}
		return string(name), string(b), ""
	}
	if utf8.Valid(payload) && json.Valid(payload) {
		return "", string(payload), ""
	}
	return "", "", hex.EncodeToString(payload)
}

// candidates names the payload types that may fit: the mode's own package
// first, then the common macp.v1 payloads (SessionStart, Commitment, …).
func candidates(mode, messageType string) []protoreflect.FullName {
	if !protoreflect.Name(messageType + "Payload").IsValid() {
		return nil
	}
	suffix := "." + messageType + "Payload"
	var out []protoreflect.FullName
	if pkg := modePackage(mode); pkg != "" {
		out = append(out, protoreflect.FullName(pkg+suffix))
	}
	return append(out, protoreflect.FullName("macp.v1"+suffix))
}

// modePackage maps a built-in mode's name to the protobuf package of its
// payloads: macp.mode.decision.v1 to macp.modes.decision.v1,
// ext.multi_round.v1 to macp.modes.multi_round.v1; "" for other modes,
// whose payload types Concord does not know.
func modePackage(mode string) string {
	if mode == "ext.multi_round.v1" {
		return "macp.modes.multi_round.v1"
	}
	rest, ok := strings.CutPrefix(mode, abi.StandardPrefix)
	if !ok || !protoreflect.FullName(rest).IsValid() {
		return ""
	}
	return "macp.modes." + rest
}
