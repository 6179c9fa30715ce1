package guest

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The tests in this file check the hand-written codec against the generated
// Go types and the reference protobuf runtime.

func fullStepRequest() *abiv1.StepRequest {
	return &abiv1.StepRequest{
		State: []byte{0, 1, 2, 0xff},
		Envelope: &macpv1.Envelope{
			MacpVersion:     "1.0",
			Mode:            "macp.mode.decision.v1",
			MessageType:     "Vote",
			MessageId:       "m-1",
			SessionId:       "s-ü-1",
			Sender:          "agent://alice",
			TimestampUnixMs: -42,
			Payload:         []byte("\x0a\x03yes"),
		},
		Session: &abiv1.Session{
			SessionId:            "s-ü-1",
			Mode:                 "macp.mode.decision.v1",
			ModeVersion:          "1.0.0",
			ConfigurationVersion: "cfg-7",
			PolicyVersion:        "policy.default",
			Initiator:            "agent://alice",
			Participants:         []string{"agent://alice", "", "agent://bob"},
			StartedAtUnixMs:      1_700_000_000_000,
			PolicyRules:          `{"voting":{"algorithm":"majority"}}`,
			PolicySchemaVersion:  math.MaxUint32,
		},
		NowUnixMs:      1_700_000_000_123,
		RuntimeWritten: true,
		SessionClockMs: 90_061,
	}
}

// wantStepRequest converts a generated StepRequest to the guest type the
// codec must produce.
func wantStepRequest(m *abiv1.StepRequest) StepRequest {
	e, s := m.GetEnvelope(), m.GetSession()
	return StepRequest{
		State: nilIfEmpty(m.GetState()),
		Envelope: Envelope{
			MACPVersion:     e.GetMacpVersion(),
			Mode:            e.GetMode(),
			MessageType:     e.GetMessageType(),
			MessageID:       e.GetMessageId(),
			SessionID:       e.GetSessionId(),
			Sender:          e.GetSender(),
			TimestampUnixMs: e.GetTimestampUnixMs(),
			Payload:         nilIfEmpty(e.GetPayload()),
		},
		Session:        wantSession(s),
		NowUnixMs:      m.GetNowUnixMs(),
		RuntimeWritten: m.GetRuntimeWritten(),
		SessionClockMs: m.GetSessionClockMs(),
	}
}

func wantSession(s *abiv1.Session) Session {
	var parts []string
	if len(s.GetParticipants()) > 0 {
		parts = s.GetParticipants()
	}
	return Session{
		SessionID:            s.GetSessionId(),
		Mode:                 s.GetMode(),
		ModeVersion:          s.GetModeVersion(),
		ConfigurationVersion: s.GetConfigurationVersion(),
		PolicyVersion:        s.GetPolicyVersion(),
		Initiator:            s.GetInitiator(),
		Participants:         parts,
		StartedAtUnixMs:      s.GetStartedAtUnixMs(),
		PolicyRules:          s.GetPolicyRules(),
		PolicySchemaVersion:  s.GetPolicySchemaVersion(),
	}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func TestDecodeStepRequest(t *testing.T) {
	cases := map[string]*abiv1.StepRequest{
		"full":          fullStepRequest(),
		"empty":         {},
		"empty nested":  {Envelope: &macpv1.Envelope{}, Session: &abiv1.Session{}},
		"only envelope": {Envelope: &macpv1.Envelope{MessageType: "SessionStart", Sender: "a"}},
		"negative now":  {NowUnixMs: math.MinInt64},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var got StepRequest
			if err := decodeStepRequest(b, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if want := wantStepRequest(m); !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestDecodeStepRequestMergesRepeatedMessages(t *testing.T) {
	// Protobuf merges an embedded message that occurs twice and appends to
	// repeated fields; the codec must do the same.
	a, _ := proto.Marshal(fullStepRequest())
	b, _ := proto.Marshal(&abiv1.StepRequest{
		Envelope: &macpv1.Envelope{MessageType: "Commitment"},
		Session:  &abiv1.Session{Participants: []string{"agent://carol"}},
	})
	both := append(append([]byte{}, a...), b...)
	var ref abiv1.StepRequest
	if err := proto.Unmarshal(both, &ref); err != nil {
		t.Fatal(err)
	}
	var got StepRequest
	if err := decodeStepRequest(both, &got); err != nil {
		t.Fatal(err)
	}
	if want := wantStepRequest(&ref); !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
	if got.Envelope.Sender != "agent://alice" || len(got.Session.Participants) != 4 {
		t.Fatalf("merge lost fields: %+v", got)
	}
}

func TestDecodedBytesCannotBeAppendedIntoInput(t *testing.T) {
	in, _ := proto.Marshal(fullStepRequest())
	orig := append([]byte{}, in...)
	var req StepRequest
	if err := decodeStepRequest(in, &req); err != nil {
		t.Fatal(err)
	}
	_ = append(req.State, 9, 9, 9)
	_ = append(req.Envelope.Payload, 9, 9, 9)
	if !bytes.Equal(in, orig) {
		t.Fatal("appending to a decoded slice wrote into the input")
	}
}

func TestDecodeViewRequest(t *testing.T) {
	m := &abiv1.ViewRequest{State: []byte("st"), Session: fullStepRequest().GetSession()}
	b, _ := proto.Marshal(m)
	state, s, err := decodeViewRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(state) != "st" || !reflect.DeepEqual(s, wantSession(m.GetSession())) {
		t.Fatalf("got %q %+v", state, s)
	}
}

func TestEncodeStepResponse(t *testing.T) {
	cases := []struct {
		name string
		in   Result
		want *abiv1.StepResponse
	}{
		{"accept", Accept([]byte{1, 2, 3}),
			&abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_ACCEPT, State: []byte{1, 2, 3}}},
		{"accept empty state", Accept(nil),
			&abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_ACCEPT}},
		{"reject", Reject("FORBIDDEN", "agent %q may not vote", "x"),
			&abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_REJECT, ErrorCode: "FORBIDDEN", ErrorMessage: `agent "x" may not vote`}},
		{"accept with timers", Result{Accepted: true, State: []byte{7}, Timers: []Timer{
			{DueSessionClockMs: 30_000, MessageType: "HandoffAccept", MessageID: "implicit-accept:h1", Sender: "agent://bob", Payload: []byte{0x0a, 2, 'h', '1'}},
			{MessageID: "runtime:tick"},
		}}, &abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_ACCEPT, State: []byte{7}, Timers: []*abiv1.Timer{
			{DueSessionClockMs: 30_000, MessageType: "HandoffAccept", MessageId: "implicit-accept:h1", Sender: "agent://bob", Payload: []byte{0x0a, 2, 'h', '1'}},
			{MessageId: "runtime:tick"},
		}}},
		{"reject drops state and timers", Result{Code: "INVALID_ENVELOPE", State: []byte("x"), Timers: []Timer{{MessageID: "runtime:x"}}},
			&abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_REJECT, ErrorCode: "INVALID_ENVELOPE"}},
		{"reject without code", Result{},
			&abiv1.StepResponse{Verdict: abiv1.Verdict_VERDICT_REJECT, ErrorCode: "INTERNAL_ERROR"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := appendStepResponse([]byte("prefix"), &c.in)
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatal("encoder did not append")
			}
			got = got[len("prefix"):]
			want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded %x, reference %x", got, want)
			}
			var back abiv1.StepResponse
			if err := proto.Unmarshal(got, &back); err != nil || !proto.Equal(&back, c.want) {
				t.Fatalf("unmarshal: %v %v", &back, err)
			}
		})
	}
}

func TestEncodeDescriptor(t *testing.T) {
	d := Descriptor{
		Mode:                 "macp.mode.decision.v1",
		ModeVersion:          "1.0.0",
		Title:                "Décision",
		Description:          "vote on proposals",
		DeterminismClass:     "semantic-deterministic",
		ParticipantModel:     "declared",
		MessageTypes:         []string{"Proposal", "Vote", "", "Commitment"},
		TerminalMessageTypes: []string{"Commitment"},
		SchemaURIs: map[string]string{
			"Vote": "macp://schemas/vote", "Proposal": "p", "Empty": "", "": "no key",
			"Zeta": "z", "Alpha": "a", "Mid": "m",
		},
	}
	want := &macpv1.ModeDescriptor{
		Mode: d.Mode, ModeVersion: d.ModeVersion, Title: d.Title, Description: d.Description,
		DeterminismClass: d.DeterminismClass, ParticipantModel: d.ParticipantModel,
		MessageTypes: d.MessageTypes, TerminalMessageTypes: d.TerminalMessageTypes,
		SchemaUris: d.SchemaURIs,
	}
	ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // map iteration order varies; the encoding must not
		got := appendDescriptor(nil, &d)
		if !bytes.Equal(got, ref) {
			t.Fatalf("encoded %x\nreference %x", got, ref)
		}
	}
	if got := appendDescriptor(nil, &Descriptor{}); len(got) != 0 {
		t.Fatalf("empty descriptor encoded to %x", got)
	}
}

func TestEncodeViewResponse(t *testing.T) {
	got := appendViewResponse(nil, []byte(`{"phase":"Voting"}`), "", "")
	var m abiv1.ViewResponse
	if err := proto.Unmarshal(got, &m); err != nil || m.GetJson() != `{"phase":"Voting"}` {
		t.Fatalf("%v %v", &m, err)
	}
	if m.GetErrorCode() != "" || m.GetErrorMessage() != "" {
		t.Fatal("successful view carries error fields")
	}

	got = appendViewResponse(nil, nil, "INTERNAL_ERROR", "bad state")
	m.Reset()
	if err := proto.Unmarshal(got, &m); err != nil || m.GetJson() != "" {
		t.Fatalf("%v %v", &m, err)
	}
	if m.GetErrorCode() != "INTERNAL_ERROR" || m.GetErrorMessage() != "bad state" {
		t.Fatalf("error fields %v", &m)
	}
}

// checkAgainstReference decodes b with the codec and with the reference
// runtime. It fails when the codec panics, accepts what the reference
// rejects for anything but UTF-8 validation, or decodes differently.
func checkAgainstReference(t *testing.T, b []byte) {
	t.Helper()
	var got StepRequest
	err := decodeStepRequest(b, &got)
	var ref abiv1.StepRequest
	refErr := proto.Unmarshal(b, &ref)
	if refErr != nil {
		// The reference also validates UTF-8 in strings; the codec does not.
		// Anything else the reference rejects, the codec must reject too.
		if err == nil && !isUTF8Error(refErr) {
			t.Fatalf("codec accepted %x that the reference rejects: %v", b, refErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("codec rejected %x that the reference accepts: %v", b, err)
	}
	if want := wantStepRequest(&ref); !reflect.DeepEqual(got, want) {
		t.Fatalf("input %x decoded\n%+v\nreference\n%+v", b, got, want)
	}
}

func isUTF8Error(err error) bool {
	return bytes.Contains([]byte(err.Error()), []byte("UTF-8"))
}

func TestDecodeHostileInput(t *testing.T) {
	valid, _ := proto.Marshal(fullStepRequest())
	// Every truncation of a valid request.
	for i := range valid {
		checkAgainstReference(t, valid[:i])
	}
	// Single-byte corruptions at every position.
	for i := range valid {
		for _, x := range []byte{0x00, 0x80, 0xff, 0x07, 0x0b, 0x0c, 0x1a} {
			b := append([]byte{}, valid...)
			b[i] = x
			checkAgainstReference(t, b)
		}
	}
	// Random garbage and random splices, with a fixed seed.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := r.IntN(64)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if r.IntN(2) == 0 && n < len(valid) {
			at := r.IntN(len(valid) - n)
			b = append(append(append([]byte{}, valid[:at]...), b...), valid[at+n:]...)
		}
		checkAgainstReference(t, b)
		// The view decoder shares the walker; it must not panic either.
		_, _, _ = decodeViewRequest(b)
		_, _ = DecodeCommitment(b)
	}
	// Deeply nested groups and huge lengths.
	deep := bytes.Repeat([]byte{0x0b}, 100000) // start group, field 1
	checkAgainstReference(t, deep)
	huge := protowire.AppendTag(nil, 1, protowire.BytesType)
	huge = protowire.AppendVarint(huge, math.MaxUint64)
	checkAgainstReference(t, huge)
}

func FuzzDecodeStepRequest(f *testing.F) {
	valid, _ := proto.Marshal(fullStepRequest())
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x05, 0x1a, 0x03, 'V', 'o'})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstReference(t, b)
		_, _, _ = decodeViewRequest(b)
	})
}

func TestStrtab(t *testing.T) {
	b := []byte("hello, world")
	var tab strtab
	tab.init(b)
	tab.init([]byte("ignored: already initialized"))
	if got := tab.str(b[7:12]); got != "world" {
		t.Fatalf("substring %q", got)
	}
	other := []byte("world")
	if got := tab.str(other[:5:5]); got != "world" {
		t.Fatalf("foreign slice %q", got)
	}
	b[0] = 'j' // the strings are copies: later writes do not show
	if got := tab.str(b[0:5]); got != "hello" {
		t.Fatalf("after write %q", got)
	}
}
