// Package kit holds the few helpers the example extension modes share:
// strict decoding of JSON payloads and policy rules, the protowire helpers
// their hand-written state encodings use, the Commitment record every mode
// keeps, the eligibility check of a Commitment, and a deterministic JSON
// encoder for views.
//
// Payloads decode two ways with the same result: DecodePayload, with
// encoding/json into any struct, and Object, a hand-written decoder for flat
// objects of strings, unsigned integers, booleans and arrays of strings
// that is many times cheaper inside a WebAssembly guest (no reflection,
// next to no allocation). Likewise for state: Fields walks a record with a
// callback, FieldReader in a loop over one copy of the state, and the
// appenders and OpenRecord/CloseRecord write records without calls into
// protowire in the common case. A mode on a hot path uses the cheaper ones;
// the MPAC mode does.
//
// It depends only on encoding/json and protowire, never on the reflection
// based protobuf runtime, so the WebAssembly modules stay small. It is short
// on purpose: an author starting a mode in another repository copies what
// they need.
package kit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
)

// Forbidden rejects an envelope whose sender may not send it.
func Forbidden(format string, args ...any) guest.Result {
	return guest.Reject(macperr.Forbidden, format, args...)
}

// Invalid rejects a malformed envelope, a bad reference or a message sent in
// the wrong phase.
func Invalid(format string, args ...any) guest.Result {
	return guest.Reject(macperr.InvalidEnvelope, format, args...)
}

// Internal rejects an envelope because the state handed back by the host is
// unusable; it never happens with a correct host.
func Internal(format string, args ...any) guest.Result {
	return guest.Reject(macperr.InternalError, format, args...)
}

// Blank reports whether s is empty after trimming white space.
func Blank(s string) bool { return strings.TrimSpace(s) == "" }

// IsMember reports whether id is the initiator or a declared participant.
func IsMember(s *guest.Session, id string) bool {
	return id == s.Initiator || s.IsParticipant(id)
}

// DecodePayload decodes a JSON object payload into v, strictly: the payload
// must be valid UTF-8 holding exactly one JSON object whose keys are all
// fields of v. An unknown key is an error rather than silently ignored, so a
// misspelt field never changes what a message means.
func DecodePayload(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the payload is empty; send a JSON object")
	}
	return decodeObject(b, v)
}

func decodeObject(b []byte, v any) error {
	if !utf8.Valid(b) {
		return errors.New("the payload is not valid UTF-8")
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("the payload is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// ReadRules decodes the object under key in the policy rules text into v,
// strictly (see DecodePayload). It reports false, leaving v alone, when the
// rules are empty or have no such key (or it is null). Other keys of the
// rules, such as the host's "commitment", are not the mode's and are
// ignored.
func ReadRules(text, key string, v any) (bool, error) {
	if Blank(text) {
		return false, nil
	}
	var rules map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &rules); err != nil {
		return false, fmt.Errorf("policy rules: %w", err)
	}
	raw, ok := rules[key]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return false, nil
	}
	if err := decodeObject(raw, v); err != nil {
		return false, fmt.Errorf("policy rules %q: %w", key, err)
	}
	return true, nil
}

// MarshalView encodes v as compact JSON without HTML escaping. encoding/json
// writes struct fields in declaration order and map keys sorted, so equal
// values give equal bytes.
func MarshalView(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
