package export

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func sample() *adminv1.SessionExport {
	return &adminv1.SessionExport{
		Session: &storev1.Session{
			Metadata:     &macpv1.SessionMetadata{SessionId: "s-1", Mode: "macp.mode.decision.v1", State: macpv1.SessionState_SESSION_STATE_RESOLVED},
			LastSequence: 2, ModuleDigest: "abc", ModeState: []byte{0, 1, 2},
		},
		Entries: []*storev1.Entry{
			{Sequence: 1, Envelope: &macpv1.Envelope{MessageType: "SessionStart", Payload: []byte{9, 8}}, AcceptedAtUnixMs: 10},
			{Sequence: 2, Origin: storev1.Origin_ORIGIN_RUNTIME, StateAfter: macpv1.SessionState_SESSION_STATE_EXPIRED},
		},
		PolicySource:     "package concord.custom\n",
		ExportedAtUnixMs: 99,
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"format": "concord.session-export.v1"`) || !strings.Contains(buf.String(), `"session_id": "s-1"`) {
		t.Fatalf("unexpected JSON:\n%s", buf.String())
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	if !proto.Equal(got.Session, want.Session) || len(got.Entries) != 2 || !proto.Equal(got.Entries[0], want.Entries[0]) ||
		!proto.Equal(got.Entries[1], want.Entries[1]) || got.PolicySource != want.PolicySource || got.ExportedAtUnixMs != 99 {
		t.Fatalf("round trip changed the file: %+v", got)
	}
}

func TestDecodeRefusesWhatIsNotAnExport(t *testing.T) {
	var good bytes.Buffer
	if err := Encode(&good, sample()); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ in, want string }{
		"not JSON":       {"hello", "not a session export"},
		"other format":   {`{"format":"x","session":{}}`, "format"},
		"unknown field":  {`{"format":"concord.session-export.v1","extra":1}`, "unknown field"},
		"no session":     {`{"format":"concord.session-export.v1"}`, "no session"},
		"no session id":  {`{"format":"concord.session-export.v1","session":{"last_sequence":"0"}}`, "no session_id"},
		"gap in the log": {strings.Replace(good.String(), `"sequence": "2"`, `"sequence": "3"`, 1), "dense"},
		"short log":      {strings.Replace(good.String(), `"last_sequence": "2"`, `"last_sequence": "5"`, 1), "ends at sequence 5"},
		"bad entry":      {strings.Replace(good.String(), `"sequence": "2"`, `"sequence": "two"`, 1), "not a session export"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(strings.NewReader(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}
