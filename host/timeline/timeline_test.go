package timeline_test

import (
	"encoding/hex"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/timeline"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPayloadDecodesPerMode(t *testing.T) {
	vote := marshal(t, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE", Reason: "fine"})
	cases := []struct {
		mode, typ string
		payload   []byte
		wantType  string
		wantJSON  map[string]any
		wantHex   string
	}{
		{"macp.mode.decision.v1", "Vote", vote, "macp.modes.decision.v1.VotePayload",
			map[string]any{"proposal_id": "p1", "vote": "APPROVE", "reason": "fine"}, ""},
		{"ext.multi_round.v1", "Contribute", marshal(t, &multiroundv1.ContributePayload{Value: "42"}), "macp.modes.multi_round.v1.ContributePayload",
			map[string]any{"value": "42"}, ""},
		// Common payloads decode in any mode.
		{"ext.acme.thing.v1", "Commitment", marshal(t, &macpv1.CommitmentPayload{CommitmentId: "c1", OutcomePositive: true}), "macp.v1.CommitmentPayload",
			map[string]any{"commitment_id": "c1", "outcome_positive": true}, ""},
		// An extension mode's own payloads: JSON as it is, else hex.
		{"ext.acme.thing.v1", "Poke", []byte(`{"n":1}`), "", map[string]any{"n": float64(1)}, ""},
		{"ext.acme.thing.v1", "Poke", []byte{0xff, 0x00}, "", nil, "ff00"},
		// A type name that is not a protobuf name is never looked up.
		{"macp.mode.decision.v1", "Vote.Payload x", vote, "", nil, hex.EncodeToString(vote)},
	}
	for _, c := range cases {
		typ, js, hx := timeline.Payload(c.mode, c.typ, c.payload)
		if typ != c.wantType || hx != c.wantHex {
			t.Errorf("%s %s: type %q hex %q, want %q %q", c.mode, c.typ, typ, hx, c.wantType, c.wantHex)
			continue
		}
		if c.wantJSON == nil {
			if js != "" {
				t.Errorf("%s %s: json %s, want none", c.mode, c.typ, js)
			}
			continue
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(js), &got); err != nil {
			t.Errorf("%s %s: json %q: %v", c.mode, c.typ, js, err)
			continue
		}
		for k, v := range c.wantJSON {
			if got[k] != v {
				t.Errorf("%s %s: %s = %v, want %v (json %s)", c.mode, c.typ, k, got[k], v, js)
			}
		}
	}
}

func TestEntryWithoutEnvelope(t *testing.T) {
	e := timeline.Entry(&storev1.Entry{Sequence: 7, AcceptedAtUnixMs: 99, Origin: storev1.Origin_ORIGIN_RUNTIME,
		StateAfter: macpv1.SessionState_SESSION_STATE_EXPIRED})
	if e.GetSequence() != 7 || e.GetMessageType() != "" || e.GetPayloadJson() != "" || e.GetStateAfter() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("expiry entry %v", e)
	}
}
