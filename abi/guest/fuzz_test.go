package guest

import (
	"reflect"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/macperr"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// These fuzz targets check the codec's round trips against the reference
// protobuf runtime; FuzzDecodeStepRequest (codec_test.go) checks decoding
// alone.

// toProto is the generated StepRequest holding what the codec decoded.
func toProto(r *StepRequest) *abiv1.StepRequest {
	e, s := r.Envelope, r.Session
	return &abiv1.StepRequest{
		State: r.State,
		Envelope: &macpv1.Envelope{MacpVersion: e.MACPVersion, Mode: e.Mode, MessageType: e.MessageType, MessageId: e.MessageID,
			SessionId: e.SessionID, Sender: e.Sender, TimestampUnixMs: e.TimestampUnixMs, Payload: e.Payload},
		Session: &abiv1.Session{SessionId: s.SessionID, Mode: s.Mode, ModeVersion: s.ModeVersion,
			ConfigurationVersion: s.ConfigurationVersion, PolicyVersion: s.PolicyVersion, Initiator: s.Initiator,
			Participants: s.Participants, StartedAtUnixMs: s.StartedAtUnixMs, PolicyRules: s.PolicyRules,
			PolicySchemaVersion: s.PolicySchemaVersion},
		NowUnixMs: r.NowUnixMs, RuntimeWritten: r.RuntimeWritten, SessionClockMs: r.SessionClockMs,
	}
}

// FuzzStepRequestRoundTrip: whatever the codec decodes, encoded again by
// the reference runtime, decodes to the same request (decode∘encode is the
// identity on decoded values), and decoding is deterministic.
//
//	go test -run '^$' -fuzz FuzzStepRequestRoundTrip ./abi/guest/
func FuzzStepRequestRoundTrip(f *testing.F) {
	valid, _ := proto.Marshal(fullStepRequest())
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x05, 0x1a, 0x03, 'V', 'o', 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got StepRequest
		if err := decodeStepRequest(b, &got); err != nil {
			return
		}
		var twice StepRequest
		if err := decodeStepRequest(b, &twice); err != nil || !reflect.DeepEqual(got, twice) {
			t.Fatalf("decoding %x twice differs: %v", b, err)
		}
		if !validUTF8Request(&got) {
			return // the reference runtime does not encode invalid strings
		}
		again, err := proto.Marshal(toProto(&got))
		if err != nil {
			t.Fatalf("re-encode %+v: %v", got, err)
		}
		var back StepRequest
		if err := decodeStepRequest(again, &back); err != nil {
			t.Fatalf("decode of the re-encoded %x: %v", again, err)
		}
		if !reflect.DeepEqual(got, back) {
			t.Fatalf("round trip of %x:\n%+v\nbecame\n%+v", b, got, back)
		}
	})
}

func validUTF8Request(r *StepRequest) bool {
	e, s := r.Envelope, r.Session
	for _, v := range append([]string{e.MACPVersion, e.Mode, e.MessageType, e.MessageID, e.SessionID, e.Sender,
		s.SessionID, s.Mode, s.ModeVersion, s.ConfigurationVersion, s.PolicyVersion, s.Initiator, s.PolicyRules}, s.Participants...) {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// FuzzStepResponseRoundTrip: a Result the codec encodes decodes, with the
// reference runtime, to the same verdict, code, message, state and timers
// (a rejection without a code becomes INTERNAL_ERROR and drops state and
// timers).
//
//	go test -run '^$' -fuzz FuzzStepResponseRoundTrip ./abi/guest/
func FuzzStepResponseRoundTrip(f *testing.F) {
	f.Add(true, "", "", []byte{1, 2, 3}, int64(30_000), "HandoffAccept", "implicit-accept:h1", "agent://bob", []byte{0x0a, 2, 'h', '1'})
	f.Add(false, "FORBIDDEN", "agent \"x\" may not vote", []byte("x"), int64(0), "", "", "", []byte(nil))
	f.Add(false, "", "", []byte(nil), int64(-1), "T", "runtime:x", "", []byte{})
	f.Fuzz(func(t *testing.T, accepted bool, code, message string, state []byte, due int64, typ, id, sender string, payload []byte) {
		for _, s := range []string{code, message, typ, id, sender} {
			if !utf8.ValidString(s) {
				return // protobuf strings are UTF-8; modes produce only those
			}
		}
		r := Result{Accepted: accepted, Code: macperr.Code(code), Message: message, State: state,
			Timers: []Timer{{DueSessionClockMs: due, MessageType: typ, MessageID: id, Sender: sender, Payload: payload}}}
		var m abiv1.StepResponse
		if err := proto.Unmarshal(appendStepResponse(nil, &r), &m); err != nil {
			t.Fatalf("the reference cannot decode the response to %+v: %v", r, err)
		}
		wantVerdict, wantCode := abiv1.Verdict_VERDICT_REJECT, code
		if accepted {
			wantVerdict = abiv1.Verdict_VERDICT_ACCEPT
		} else if code == "" {
			wantCode = "INTERNAL_ERROR"
		}
		if m.GetVerdict() != wantVerdict || m.GetErrorCode() != wantCode || m.GetErrorMessage() != message {
			t.Fatalf("%+v decoded as %v", r, &m)
		}
		if !accepted {
			if len(m.GetState()) != 0 || len(m.GetTimers()) != 0 {
				t.Fatalf("a rejection kept state or timers: %v", &m)
			}
			return
		}
		tm := m.GetTimers()
		if string(m.GetState()) != string(state) || len(tm) != 1 || tm[0].GetDueSessionClockMs() != due ||
			tm[0].GetMessageType() != typ || tm[0].GetMessageId() != id || tm[0].GetSender() != sender ||
			string(tm[0].GetPayload()) != string(payload) {
			t.Fatalf("%+v decoded as %v", r, &m)
		}
	})
}

// FuzzDecodeCommitment: the guest's Commitment decoder never panics,
// accepts whatever the reference accepts (up to UTF-8 validation, which
// it leaves to the host) and decodes the same fields.
//
//	go test -run '^$' -fuzz FuzzDecodeCommitment ./abi/guest/
func FuzzDecodeCommitment(f *testing.F) {
	full, _ := proto.Marshal(&macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "s",
		Reason: "r", ModeVersion: "1.0.0", PolicyVersion: "policy.default", ConfigurationVersion: "cfg-1", OutcomePositive: true,
		Supersedes: &macpv1.CommitmentRef{SessionId: "s0", CommitmentHash: "sha256:00"}})
	f.Add(full)
	f.Add([]byte{})
	f.Add([]byte{0x4a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeCommitment(b)
		var ref macpv1.CommitmentPayload
		if refErr := proto.Unmarshal(b, &ref); refErr != nil {
			if err == nil && !isUTF8Error(refErr) {
				t.Fatalf("decoder accepted %x that the reference rejects: %v", b, refErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("decoder rejected %x that the reference accepts: %v", b, err)
		}
		want := Commitment{CommitmentID: ref.GetCommitmentId(), Action: ref.GetAction(), AuthorityScope: ref.GetAuthorityScope(),
			Reason: ref.GetReason(), ModeVersion: ref.GetModeVersion(), PolicyVersion: ref.GetPolicyVersion(),
			ConfigurationVersion: ref.GetConfigurationVersion(), OutcomePositive: ref.GetOutcomePositive()}
		if s := ref.GetSupersedes(); s != nil {
			want.Supersedes = &CommitmentRef{SessionID: s.GetSessionId(), CommitmentHash: s.GetCommitmentHash()}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%x decoded\n%+v\nreference\n%+v", b, got, want)
		}
	})
}
