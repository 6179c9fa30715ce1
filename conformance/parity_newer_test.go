package conformance_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	multiroundv1 "github.com/concord-macp/concord/proto/macp/modes/multi_round/v1"
	proposalv1 "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
)

// Contract revisions newer than the vendored copy add a proposal_disposition
// section and collision_* Contribute vectors. TestParityContract asserts
// them whenever the copy it reads has them; the two tests below assert the
// same behaviour with the values SPEC-DIGEST gives, so that the assertions
// run today.

// ─── proposal_disposition ───────────────────────────────────────────────

func checkProposalDispositionSection(t *testing.T, srv *servertest.Server, raw json.RawMessage) {
	var s struct {
		sectionHead
		ModeStateDispositions []string `json:"mode_state_dispositions"`
		// ProjectionStatusValues are the statuses the SDKs' session
		// projections derive from the dispositions; a runtime keeps no
		// projection, so there is nothing of it to assert here.
		ProjectionStatusValues []string `json:"projection_status_values"`
		AcceptanceTracking     string   `json:"acceptance_tracking"`
	}
	strictJSON(t, "proposal_disposition", raw, &s)
	checkProposalDispositions(t, srv, s.ModeStateDispositions, s.AcceptanceTracking)
}

// TestProposalDispositions asserts the Proposal mode state of SPEC-DIGEST
// §6.2: every proposal carries a disposition, Live or Withdrawn, and
// acceptance is a relation of its own, one current accept per sender.
func TestProposalDispositions(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	checkProposalDispositions(t, srv, []string{"Live", "Withdrawn"}, "per_sender")
}

// checkProposalDispositions runs a Proposal session that leaves proposals
// in every disposition, then reads the mode state: the dispositions seen
// must be exactly dispositions, and acceptance must be tracked as tracking
// says ("per_sender": an accepts object of sender → proposal id, each
// sender's latest Accept replacing its earlier one, and nothing about
// acceptance on the proposal records).
func checkProposalDispositions(t *testing.T, srv *servertest.Server, dispositions []string, tracking string) {
	t.Helper()
	const mode = "macp.mode.proposal.v1"
	sid := servertest.NewSessionID()
	start := decisionStart("1.0.0", "cfg-1", "")
	start.Participants = []string{"buyer", "seller"}
	steps := []struct {
		sender, typ string
		payload     proto.Message
	}{
		{"buyer", "SessionStart", start},
		{"seller", "Proposal", &proposalv1.ProposalPayload{ProposalId: "p1", Title: "list price"}},
		{"seller", "Proposal", &proposalv1.ProposalPayload{ProposalId: "p3", Title: "bulk price"}},
		{"buyer", "CounterProposal", &proposalv1.CounterProposalPayload{ProposalId: "p2", SupersedesProposalId: "p1", Title: "lower price"}},
		{"buyer", "Withdraw", &proposalv1.WithdrawPayload{ProposalId: "p2"}},
		{"seller", "Accept", &proposalv1.AcceptPayload{ProposalId: "p3"}},
		{"seller", "Accept", &proposalv1.AcceptPayload{ProposalId: "p1"}},
		{"buyer", "Accept", &proposalv1.AcceptPayload{ProposalId: "p1"}},
	}
	for i, st := range steps {
		env := servertest.Envelope(mode, st.typ, fmt.Sprintf("m%d", i), sid, st.payload)
		if ack := srv.Send(t, st.sender, env); !ack.GetOk() {
			t.Fatalf("%s %s: %v", st.sender, st.typ, ack.GetError())
		}
	}
	state := modeState(t, srv, "buyer", sid)
	proposals, _ := state["proposals"].(map[string]any)
	wantDisposition := map[string]string{"p1": "Live", "p2": "Withdrawn", "p3": "Live"}
	var seen []string
	for id, want := range wantDisposition {
		rec, _ := proposals[id].(map[string]any)
		got, _ := rec["disposition"].(string)
		if got != want {
			t.Errorf("proposal %s has disposition %q, want %q", id, got, want)
		}
		if !slices.Contains(seen, got) {
			seen = append(seen, got)
		}
		for key := range rec {
			if tracking == "per_sender" && strings.Contains(key, "accept") {
				t.Errorf("proposal %s's record carries %q: acceptance is tracked per sender, not on the proposal", id, key)
			}
		}
	}
	if !sameSet(seen, dispositions) {
		t.Errorf("the mode state uses dispositions %v, the contract names %v", seen, dispositions)
	}
	switch tracking {
	case "per_sender":
		accepts, _ := state["accepts"].(map[string]any)
		if len(accepts) != 2 || accepts["buyer"] != "p1" || accepts["seller"] != "p1" {
			t.Errorf("accepts = %v, want each sender's latest accept: buyer → p1, seller → p1 (not p3)", state["accepts"])
		}
	default:
		t.Errorf("acceptance_tracking %q: Concord tracks acceptance per sender", tracking)
	}
}

// ─── collision_* Contribute vectors ─────────────────────────────────────

// TestContributeCollisions sends Contribute payloads whose canonical
// protobuf bytes also parse as JSON: the length byte after the 0x0a tag is
// 0x0a, 0x0d or 0x20 (JSON white space) or 0x7b ('{'), at value lengths 10,
// 13, 32 and 123, the lengths the specification's checker names for its
// collision_* vectors. A decoder that tries JSON first reads another value,
// or none; Concord reads the protobuf value, which the vectors pin.
func TestContributeCollisions(t *testing.T) {
	values := []string{
		`{"a":"bc"}`,                                  // 10 bytes: "\n\n" then a JSON object without "value"
		`{"value":"x"}`,                               // 13 bytes: "\n\r" then an object whose value is "x"
		`{"value":"0123456789abcdefghij"}`,            // 32 bytes: "\n " then an object with a value
		`"value":"` + strings.Repeat("z", 112) + `"}`, // 123 bytes: "\n{" opens the object itself
	}
	var cases []contribution
	for _, v := range values {
		pb, err := proto.Marshal(&multiroundv1.ContributePayload{Value: v})
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(pb) {
			t.Fatalf("value of %d bytes: %q does not parse as JSON, so it is no collision", len(v), pb)
		}
		cases = append(cases, contribution{name: fmt.Sprintf("collision_%d", len(v)), payload: pb, value: v})
	}
	if got := []int{len(values[0]), len(values[1]), len(values[2]), len(values[3])}; !slices.Equal(got, []int{10, 13, 32, 123}) {
		t.Fatalf("collision values have lengths %v", got)
	}
	checkContributions(t, servertest.Start(t, server.Config{Memory: true}), cases)
}
