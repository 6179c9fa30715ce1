package decision

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/concord-macp/concord/internal/fixturetest"
)

// viewSchema compiles ViewSchema.
func viewSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ViewSchema))
	if err != nil {
		t.Fatalf("ViewSchema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("view.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("view.schema.json")
	if err != nil {
		t.Fatalf("ViewSchema does not compile: %v", err)
	}
	return s
}

// checkView renders state and validates the view against the schema.
func checkView(t *testing.T, schema *jsonschema.Schema, state []byte) {
	t.Helper()
	view, err := Mode{}.View(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(view))
	if err != nil {
		t.Fatalf("view is not JSON: %v\n%s", err, view)
	}
	if err := schema.Validate(v); err != nil {
		t.Fatalf("view does not match ViewSchema: %v\n%s", err, view)
	}
}

// TestViewMatchesSchema checks that every view the mode renders is what it
// declares: the view after every accepted step of every Decision fixture,
// and states with every kind of record, awkward strings and a commitment.
func TestViewMatchesSchema(t *testing.T) {
	schema := viewSchema(t)
	fixturetest.Run(t, Mode{}, "decision_*.json", fixturetest.Options{
		AfterStep: func(t *testing.T, state []byte) { checkView(t, schema, state) },
	})
	s := &State{}
	for i, str := range awkwardStrings {
		s.Proposals = append(s.Proposals, Proposal{ProposalID: str + string(rune('a'+i)), Option: str, Rationale: str, Sender: str})
		s.Evaluations = append(s.Evaluations, Evaluation{ProposalID: str, Recommendation: "APPROVE", Confidence: awkwardNumbers[i%len(awkwardNumbers)], Reason: str, Sender: str})
		s.Objections = append(s.Objections, Objection{ProposalID: str, Severity: "high", Reason: str, Sender: str})
		s.Votes = append(s.Votes, Vote{ProposalID: str, Voter: str + string(rune('a'+i)), Vote: "REJECT", Reason: str})
	}
	checkView(t, schema, s.Marshal())
	s.Commitment = &Commitment{CommitmentID: "c", Action: "decision.selected", OutcomePositive: true, Sender: "agent://lead"}
	checkView(t, schema, s.Marshal())
	checkView(t, schema, initialState())
}

// TestSchemaIsClosed checks that the schema is strict enough to catch a
// view that changed shape: an unknown key, a missing one, a wrong type.
func TestSchemaIsClosed(t *testing.T) {
	schema := viewSchema(t)
	base := `"ballots":[],"evaluations":[],"objections":[],"phase":"Proposal","proposal_order":[],"proposals":{},"votes":{}`
	for _, bad := range []string{
		`{` + base + `,"ballot_box":[]}`,
		`{"ballots":[],"evaluations":[],"objections":[],"phase":"Proposal","proposal_order":[],"proposals":{}}`,
		`{` + base + `,"commitment":{"commitment_id":"c","action":"a","outcome_positive":"yes","sender":"s"}}`,
		`{"ballots":[],"evaluations":[],"objections":[],"phase":"Done","proposal_order":[],"proposals":{},"votes":{}}`,
	} {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(bad)))
		if err != nil {
			t.Fatal(err)
		}
		if schema.Validate(v) == nil {
			t.Errorf("the schema accepts %s", bad)
		}
	}
}
