package policy_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/modes-wasm/decision"
	"github.com/concord-macp/concord/modes-wasm/handoff"
	"github.com/concord-macp/concord/modes-wasm/multiround"
	"github.com/concord-macp/concord/modes-wasm/proposal"
	"github.com/concord-macp/concord/modes-wasm/quorum"
	"github.com/concord-macp/concord/modes-wasm/task"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// fuzzModes are the modes a fuzzed descriptor may name: the built-in ones
// (with the mode that reads their rules), any mode, and an extension.
var fuzzModes = []struct {
	name string
	mode guest.Mode
}{
	{"macp.mode.decision.v1", decision.Mode{}},
	{"macp.mode.proposal.v1", proposal.Mode{}},
	{"macp.mode.task.v1", task.Mode{}},
	{"macp.mode.handoff.v1", handoff.Mode{}},
	{"macp.mode.quorum.v1", quorum.Mode{}},
	{"macp.mode.multi_round.v1", multiround.Mode{}},
	{"*", nil},
	{"ext.fuzz.v1", nil},
}

// FuzzValidateDescriptor feeds RegisterPolicy's admission check (the rules
// parser and schema) hostile descriptors. Properties: it never panics; a
// refusal is INVALID_POLICY_DEFINITION; it is deterministic; accepted
// rules re-encoded as plain JSON are accepted again with the same warnings
// (decode∘encode); and rules the registry accepts for a built-in mode are
// rules that mode can read: its SessionStart accepts them, since a mode
// refuses a start whose rules it cannot read.
//
//	go test -run '^$' -fuzz FuzzValidateDescriptor ./policy/
func FuzzValidateDescriptor(f *testing.F) {
	f.Add(uint8(0), uint32(1), `{"voting":{"algorithm":"majority","threshold":0.5,"quorum":{"type":"count","value":2}}}`)
	f.Add(uint8(0), uint32(2), `{"objection_handling":{"critical_severity_vetoes":true,"veto_threshold":1},"evaluation":{"minimum_confidence":0.7}}`)
	f.Add(uint8(1), uint32(1), `{"acceptance":{"criterion":"all_parties"},"counter_proposal":{"max_rounds":3}}`)
	f.Add(uint8(2), uint32(1), `{"assignment":{"allow_reassignment_on_reject":true},"completion":{"require_output":true}}`)
	f.Add(uint8(3), uint32(1), `{"acceptance":{"implicit_accept_timeout_ms":5000}}`)
	f.Add(uint8(4), uint32(1), `{"threshold":{"type":"n_of_m","value":2},"abstention":{"counts_toward_quorum":false}}`)
	f.Add(uint8(0), uint32(3), `{"commitment":{"authority":"designated_role","designated_roles":["alice"]}}`)
	f.Add(uint8(6), uint32(1), `{}`)
	f.Add(uint8(7), uint32(1), `{"anything":[1,2,{"x":null}]}`)
	f.Add(uint8(0), uint32(1), `{"voting":{"algorithm":"majority"},"voting":{}}`)
	f.Fuzz(func(t *testing.T, pick uint8, schema uint32, rules string) {
		m := fuzzModes[int(pick)%len(fuzzModes)]
		d := &macpv1.PolicyDescriptor{PolicyId: "policy.fuzz", Mode: m.name, Description: "fuzz", SchemaVersion: schema, Rules: rules}
		warnings, err := policy.ValidateDescriptor(d)
		w2, err2 := policy.ValidateDescriptor(d)
		if !reflect.DeepEqual(warnings, w2) || errText(err) != errText(err2) {
			t.Fatalf("not deterministic: %v %v, then %v %v", warnings, err, w2, err2)
		}
		if err != nil {
			if code := macperr.CodeOf(err); code != macperr.InvalidPolicyDefinition {
				t.Fatalf("refused with %s (%v), want INVALID_POLICY_DEFINITION", code, err)
			}
			return
		}
		var doc any
		if err := json.Unmarshal([]byte(rules), &doc); err != nil {
			t.Fatalf("accepted rules %q that encoding/json cannot read: %v", rules, err)
		}
		plain, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		d.Rules = string(plain)
		again, err := policy.ValidateDescriptor(d)
		if err != nil || !reflect.DeepEqual(again, warnings) {
			t.Fatalf("rules %q accepted (warnings %v), re-encoded %s: %v %v", rules, warnings, plain, again, err)
		}
		if m.mode == nil {
			return
		}
		sess := guest.Session{
			SessionID: "fuzz-session-0000000001", Mode: m.name, ModeVersion: "1.0.0", ConfigurationVersion: "cfg-1",
			PolicyVersion: "policy.fuzz", Initiator: "agent://coordinator",
			Participants: []string{"agent://coordinator", "agent://alice", "agent://bob"},
			PolicyRules:  rules, PolicySchemaVersion: schema,
		}
		res := m.mode.Step(&guest.StepRequest{
			Envelope: guest.Envelope{MACPVersion: "1.0", Mode: m.name, MessageType: "SessionStart", MessageID: "m0",
				SessionID: sess.SessionID, Sender: sess.Initiator},
			Session: sess, NowUnixMs: 1_000,
		})
		if !res.Accepted {
			t.Fatalf("%s: the registry accepts rules %s (schema %d) but the mode refuses the start: %s %s",
				m.name, rules, schema, res.Code, res.Message)
		}
	})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
