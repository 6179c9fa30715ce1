package decision

import (
	"bytes"
	"encoding/json"
	"github.com/concord-macp/concord/abi/guest"
	"math"
	"testing"
)

func TestViewGolden(t *testing.T) {
	got, err := Mode{}.View(sampleState().Marshal(), defaultSession)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"ballots":[` +
		`{"proposal_id":"p2","reason":"no","vote":"REJECT","voter":"agent://b"},` +
		`{"proposal_id":"p1","reason":"","vote":"APPROVE","voter":"agent://a"},` +
		`{"proposal_id":"p1","reason":"unsure","vote":"ABSTAIN","voter":"agent://b"}],` +
		`"commitment":{"action":"decision.selected","commitment_id":"c1","outcome_positive":true,"sender":"agent://orchestrator"},` +
		`"evaluations":[` +
		`{"confidence":0.7,"proposal_id":"p1","reason":"fine","recommendation":"APPROVE","sender":"agent://a"},` +
		`{"confidence":0,"proposal_id":"p2","reason":"","recommendation":"REVIEW","sender":"agent://a"},` +
		`{"confidence":1,"proposal_id":"p1","reason":"line\nbreak","recommendation":"BLOCK","sender":"agent://b"}],` +
		`"objections":[{"proposal_id":"p1","reason":"freeze","sender":"agent://b","severity":"critical"}],` +
		`"phase":"Committed",` +
		`"proposal_order":["p1","p2"],` +
		`"proposals":{` +
		`"p1":{"option":"deploy","proposal_id":"p1","rationale":"ready","sender":"agent://orchestrator"},` +
		`"p2":{"option":"wait ✓","proposal_id":"p2","rationale":"","sender":"agent://b"}},` +
		`"votes":{"p1":{"agent://a":{"reason":"","vote":"APPROVE"},"agent://b":{"reason":"unsure","vote":"ABSTAIN"}},` +
		`"p2":{"agent://b":{"reason":"no","vote":"REJECT"}}}}`
	if string(got) != want {
		t.Fatalf("view:\n got %s\nwant %s", got, want)
	}
}

func TestViewInitial(t *testing.T) {
	const want = `{"ballots":[],"evaluations":[],"objections":[],"phase":"Proposal","proposal_order":[],"proposals":{},"votes":{}}`
	for _, state := range [][]byte{nil, initialState()} {
		got, err := Mode{}.View(state, defaultSession)
		if err != nil || string(got) != want {
			t.Fatalf("View(%x) = %s, %v", state, got, err)
		}
	}
}

func TestViewCorrupt(t *testing.T) {
	if _, err := (Mode{}).View([]byte{0xff}, defaultSession); err == nil {
		t.Fatal("View accepted a corrupt state")
	}
}

var (
	awkwardStrings = []string{
		"", "plain", `quote " and \ backslash`, "\x00\x01\x1f\x7f", "\b\f\n\r\t",
		"<html> & 'x'", "\u2028\u2029", "é ✓ 😀", "/slash/",
	}
	awkwardNumbers = []float64{0, 1, 0.5, 0.1, 1.0 / 3, 1e-7, 2.5e-9, 5e-324, 0.000001, 0.9999999999999999, 1e21, 123456789}
)

// jsonEncode is encoding/json without HTML escaping and without the newline.
func jsonEncode(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestJSONScalarsMatchEncodingJSON(t *testing.T) {
	for _, s := range append(awkwardStrings, "bad \xff utf-8 \xe2\x82") {
		if got, want := guest.AppendJSONString(nil, s), jsonEncode(t, s); !bytes.Equal(got, want) {
			t.Errorf("string %q: got %s, want %s", s, got, want)
		}
	}
	for _, f := range append(awkwardNumbers, -0.25, -1e-9) {
		if got, want := guest.AppendJSONFloat(nil, f), jsonEncode(t, f); !bytes.Equal(got, want) {
			t.Errorf("number %v: got %s, want %s", f, got, want)
		}
	}
}

// TestViewMatchesEncodingJSON checks that the hand-written JSON is exactly
// what encoding/json (sorted keys, no HTML escaping) makes of the same value,
// for awkward strings and numbers.
func TestViewMatchesEncodingJSON(t *testing.T) {
	strs, nums := awkwardStrings, awkwardNumbers
	s := &State{}
	for i, str := range strs {
		s.Proposals = append(s.Proposals, Proposal{ProposalID: str + string(rune('a'+i)), Option: str, Rationale: str, Sender: str})
		s.Votes = append(s.Votes, Vote{ProposalID: str, Voter: str + string(rune('a'+i)), Vote: str, Reason: str})
	}
	for _, n := range nums {
		s.Evaluations = append(s.Evaluations, Evaluation{Confidence: n})
	}
	got := s.AppendJSON(nil)
	var v any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, got)
	}
	if want := jsonEncode(t, v); !bytes.Equal(got, want) {
		t.Fatalf("differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

func TestViewNonFiniteConfidence(t *testing.T) {
	s := &State{Evaluations: []Evaluation{{Confidence: math.NaN()}, {Confidence: math.Inf(-1)}}}
	var v any
	if err := json.Unmarshal(s.AppendJSON(nil), &v); err != nil {
		t.Fatal(err)
	}
}
