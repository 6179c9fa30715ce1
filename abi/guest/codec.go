package guest

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/macperr"
)

// This file is the guest's wire codec for the ABI messages of
// proto/concord/abi/v1 and the parts of proto/macp/v1 they embed. It is
// written by hand with protowire because the reflection-based protobuf
// runtime would make every guest several megabytes larger. Field numbers
// below must follow the .proto files; the tests check them against the
// generated Go types.
//
// Decoding follows protobuf rules: unknown fields and fields with an
// unexpected wire type are skipped, the last value of a scalar wins, and a
// repeated embedded message is merged. Byte slices in decoded values alias
// the input (capacity-limited so an append cannot write into it). Strings
// are copied, but once per request rather than once per field (see strtab),
// because every allocation is expensive inside a WebAssembly guest.

// Field numbers of concord.abi.v1.StepRequest.
const (
	stepReqState    = 1
	stepReqEnvelope = 2
	stepReqSession  = 3
	stepReqNow      = 4
	stepReqRuntime  = 5
	stepReqClock    = 6
)

// Field numbers of concord.abi.v1.StepResponse.
const (
	stepRespVerdict = 1
	stepRespCode    = 2
	stepRespMessage = 3
	stepRespState   = 4
	stepRespTimer   = 5
)

// Field numbers of concord.abi.v1.Timer.
const (
	timerDue     = 1
	timerType    = 2
	timerID      = 3
	timerSender  = 4
	timerPayload = 5
)

// Values of concord.abi.v1.Verdict.
const (
	verdictAccept = 1
	verdictReject = 2
)

// Field numbers of concord.abi.v1.ViewRequest and ViewResponse. Fields 2 and 3
// of ViewResponse carry a failed view's error code and message (see
// abi/README.md).
const (
	viewReqState    = 1
	viewReqSession  = 2
	viewRespJSON    = 1
	viewRespCode    = 2
	viewRespMessage = 3
)

// decodeStepRequest decodes a concord.abi.v1.StepRequest into req.
func decodeStepRequest(b []byte, req *StepRequest) error {
	var t strtab
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		cur := b
		b = rest
		switch {
		case f.num == stepReqState && f.typ == protowire.BytesType:
			req.State = clip(f.v)
		case f.num == stepReqEnvelope && f.typ == protowire.BytesType:
			t.init(cur)
			if err := decodeEnvelope(f.v, &req.Envelope, &t); err != nil {
				return fmt.Errorf("envelope: %w", err)
			}
		case f.num == stepReqSession && f.typ == protowire.BytesType:
			t.init(cur)
			if err := decodeSession(f.v, &req.Session, &t); err != nil {
				return fmt.Errorf("session: %w", err)
			}
		case f.num == stepReqNow && f.typ == protowire.VarintType:
			req.NowUnixMs = int64(f.n)
		case f.num == stepReqRuntime && f.typ == protowire.VarintType:
			req.RuntimeWritten = f.n != 0
		case f.num == stepReqClock && f.typ == protowire.VarintType:
			req.SessionClockMs = int64(f.n)
		}
	}
	return nil
}

// decodeViewRequest decodes a concord.abi.v1.ViewRequest.
func decodeViewRequest(b []byte) (state []byte, s Session, err error) {
	var t strtab
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return nil, Session{}, err
		}
		cur := b
		b = rest
		switch {
		case f.num == viewReqState && f.typ == protowire.BytesType:
			state = clip(f.v)
		case f.num == viewReqSession && f.typ == protowire.BytesType:
			t.init(cur)
			if err := decodeSession(f.v, &s, &t); err != nil {
				return nil, Session{}, fmt.Errorf("session: %w", err)
			}
		}
	}
	return state, s, nil
}

// decodeEnvelope decodes a macp.v1.Envelope, merging into e; its strings
// come from t.
func decodeEnvelope(b []byte, e *Envelope, t *strtab) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.VarintType {
			if f.num == 7 {
				e.TimestampUnixMs = int64(f.n)
			}
			continue
		}
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case 1:
			e.MACPVersion = t.str(f.v)
		case 2:
			e.Mode = t.str(f.v)
		case 3:
			e.MessageType = t.str(f.v)
		case 4:
			e.MessageID = t.str(f.v)
		case 5:
			e.SessionID = t.str(f.v)
		case 6:
			e.Sender = t.str(f.v)
		case 8:
			e.Payload = clip(f.v)
		}
	}
	return nil
}

// decodeSession decodes a concord.abi.v1.Session, merging into s; its
// strings come from t.
func decodeSession(b []byte, s *Session, t *strtab) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.VarintType {
			switch f.num {
			case 8:
				s.StartedAtUnixMs = int64(f.n)
			case 10:
				s.PolicySchemaVersion = uint32(f.n)
			}
			continue
		}
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case 1:
			s.SessionID = t.str(f.v)
		case 2:
			s.Mode = t.str(f.v)
		case 3:
			s.ModeVersion = t.str(f.v)
		case 4:
			s.ConfigurationVersion = t.str(f.v)
		case 5:
			s.PolicyVersion = t.str(f.v)
		case 6:
			s.Initiator = t.str(f.v)
		case 7:
			if s.Participants == nil {
				// One allocation covers the usual small sessions.
				s.Participants = make([]string, 0, 8)
			}
			s.Participants = append(s.Participants, t.str(f.v))
		case 9:
			s.PolicyRules = t.str(f.v)
		}
	}
	return nil
}

// strtab hands out the strings of a request as substrings of one copy of
// its bytes, so that decoding costs one string allocation rather than one per
// field. The copy starts at the first embedded message, which leaves out the
// state bytes that the host writes first.
type strtab struct {
	b []byte
	s string
}

// init copies b, the rest of the request from the current field on, unless
// an earlier field already did.
func (t *strtab) init(b []byte) {
	if t.b == nil {
		t.b, t.s = b, string(b)
	}
}

// str returns v, which nextField sliced from t.b, as a string. Such a slice
// keeps t.b's end of capacity, which gives its offset; the offset is checked
// by comparing addresses, and anything else is copied on its own.
func (t *strtab) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	off := cap(t.b) - cap(v)
	if off < 0 || off+len(v) > len(t.b) || &t.b[off] != &v[0] {
		return string(v)
	}
	return t.s[off : off+len(v)]
}

// clip returns v with its capacity limited to its length, or nil when empty,
// so that a mode appending to a decoded slice never writes into the input.
func clip(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return v[:len(v):len(v)]
}

// appendStepResponse appends r encoded as a concord.abi.v1.StepResponse. A
// rejection without a code is reported as INTERNAL_ERROR; the state of a
// rejection is dropped.
func appendStepResponse(b []byte, r *Result) []byte {
	if r.Accepted {
		b = AppendVarint(b, stepRespVerdict, verdictAccept)
	} else {
		b = AppendVarint(b, stepRespVerdict, verdictReject)
	}
	code := r.Code
	if !r.Accepted && code == "" {
		code = macperr.InternalError
	}
	b = AppendString(b, stepRespCode, string(code))
	b = AppendString(b, stepRespMessage, r.Message)
	if r.Accepted {
		b = AppendBytes(b, stepRespState, r.State)
		for i := range r.Timers {
			b = appendTimer(b, &r.Timers[i])
		}
	}
	return b
}

// appendTimer appends t as one element of StepResponse.timers.
func appendTimer(b []byte, t *Timer) []byte {
	var r []byte
	r = AppendVarint(r, timerDue, uint64(t.DueSessionClockMs))
	r = AppendString(r, timerType, t.MessageType)
	r = AppendString(r, timerID, t.MessageID)
	r = AppendString(r, timerSender, t.Sender)
	r = AppendBytes(r, timerPayload, t.Payload)
	b = protowire.AppendTag(b, stepRespTimer, protowire.BytesType)
	return protowire.AppendBytes(b, r)
}

// appendViewResponse appends a concord.abi.v1.ViewResponse holding json, or,
// when code is not empty, the error code and message of a failed view.
func appendViewResponse(b, json []byte, code macperr.Code, message string) []byte {
	b = AppendBytes(b, viewRespJSON, json)
	b = AppendString(b, viewRespCode, string(code))
	return AppendString(b, viewRespMessage, message)
}

// appendDescriptor appends d encoded as a macp.v1.ModeDescriptor. Map entries
// are written in sorted key order so that the encoding is deterministic.
func appendDescriptor(b []byte, d *Descriptor) []byte {
	b = AppendString(b, 1, d.Mode)
	b = AppendString(b, 2, d.ModeVersion)
	b = AppendString(b, 3, d.Title)
	b = AppendString(b, 4, d.Description)
	b = AppendString(b, 5, d.DeterminismClass)
	b = AppendString(b, 6, d.ParticipantModel)
	b = AppendStrings(b, 7, d.MessageTypes)
	b = AppendStrings(b, 8, d.TerminalMessageTypes)
	keys := make([]string, 0, len(d.SchemaURIs))
	for k := range d.SchemaURIs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := d.SchemaURIs[k]
		// A map entry is an embedded message {1: key, 2: value}; both are
		// always written, as the reference encoder does.
		entryLen := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) +
			protowire.SizeTag(2) + protowire.SizeBytes(len(v))
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entryLen))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}
