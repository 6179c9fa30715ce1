package decision

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"testing"
)

func sampleState() *State {
	return &State{
		Proposals: []Proposal{
			{ProposalID: "p1", Option: "deploy", Rationale: "ready", Sender: "agent://orchestrator"},
			{ProposalID: "p2", Option: "wait ✓", Sender: "agent://b"},
		},
		Evaluations: []Evaluation{
			{ProposalID: "p1", Recommendation: "APPROVE", Confidence: 0.7, Reason: "fine", Sender: "agent://a"},
			{ProposalID: "p2", Recommendation: "REVIEW", Sender: "agent://a"},
			{ProposalID: "p1", Recommendation: "BLOCK", Confidence: 1, Reason: "line\nbreak", Sender: "agent://b"},
		},
		Objections: []Objection{
			{ProposalID: "p1", Severity: "critical", Reason: "freeze", Sender: "agent://b"},
		},
		Votes: []Vote{
			{ProposalID: "p2", Voter: "agent://b", Vote: "REJECT", Reason: "no"},
			{ProposalID: "p1", Voter: "agent://a", Vote: "APPROVE"},
			{ProposalID: "p1", Voter: "agent://b", Vote: "ABSTAIN", Reason: "unsure"},
		},
		Commitment: &Commitment{CommitmentID: "c1", Action: "decision.selected", OutcomePositive: true, Sender: "agent://orchestrator"},
	}
}

func TestStateRoundTrip(t *testing.T) {
	for name, s := range map[string]*State{
		"empty":    {},
		"sample":   sampleState(),
		"negative": {Proposals: []Proposal{{ProposalID: "p"}}, Commitment: &Commitment{}},
		"deliberation only": {
			Proposals:  []Proposal{{ProposalID: "p", Option: "o"}},
			Objections: []Objection{{ProposalID: "p", Severity: "low"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := s.Marshal()
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(s)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
			}
			if again := got.Marshal(); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
			}
			if !bytes.Equal(s.Marshal(), b) {
				t.Fatal("Marshal is not deterministic")
			}
		})
	}
}

// normalize makes nil and empty slices compare equal.
func normalize(s *State) State {
	c := *s
	if len(c.Proposals) == 0 {
		c.Proposals = nil
	}
	if len(c.Evaluations) == 0 {
		c.Evaluations = nil
	}
	if len(c.Objections) == 0 {
		c.Objections = nil
	}
	if len(c.Votes) == 0 {
		c.Votes = nil
	}
	return c
}

func TestRecordStringsAreNotUTF8Checked(t *testing.T) {
	// Payload strings are checked at Step; the sender comes from the host
	// and is stored as given. A state holding invalid UTF-8 still decodes,
	// and View writes U+FFFD.
	state := replay(t, defaultSession, proposal(t, "orch", "p1", "deploy"))
	res := run(defaultSession, state, commitment(t, "bad\xff", true))
	if !res.Accepted {
		t.Fatalf("commitment: %+v", res)
	}
	b, err := Mode{}.View(res.State, defaultSession)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"sender":"bad\ufffd"`)) {
		t.Fatalf("view: %s", b)
	}
}

func TestNegativeZeroConfidence(t *testing.T) {
	s := &State{Evaluations: []Evaluation{{ProposalID: "p", Confidence: math.Copysign(0, -1)}}}
	got, err := Unmarshal(s.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Evaluations[0].Confidence; c != 0 || math.Signbit(c) {
		t.Fatalf("confidence %v", c)
	}
}

func TestEmptyStateUnmarshal(t *testing.T) {
	for _, b := range [][]byte{nil, initialState()} {
		s, err := Unmarshal(b)
		if err != nil || s.Phase() != PhaseProposal || len(s.Proposals) != 0 {
			t.Fatalf("Unmarshal(%x) = %+v, %v", b, s, err)
		}
	}
}

func TestUnmarshalRejectsCorruptState(t *testing.T) {
	valid := sampleState().Marshal()
	rec := func(field byte, body ...byte) []byte { return append([]byte{field<<3 | 2, byte(len(body))}, body...) }
	header := []byte{0x08, 0x02}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for name, b := range map[string][]byte{
		"garbage":                 {0xff, 0xff},
		"no version":              rec(2, 0x0a, 0x01, 'p'),
		"version 0":               {0x08, 0x00},
		"version 1":               {0x08, 0x01},
		"version 3":               {0x08, 0x03},
		"version wrong wire type": {0x09, 1, 0, 0, 0, 0, 0, 0, 0},
		"truncated":               valid[:len(valid)-1],
		"record wrong wire type":  cat(header, []byte{0x10, 0x01}),
		"unknown record":          cat(header, rec(7)),
		"second version":          cat(header, header),
		"groups out of order":     cat(header, rec(5, 0x0a, 0x01, 'p'), rec(2, 0x0a, 0x01, 'p')),
		"two commitments":         cat(header, rec(2, 0x0a, 0x01, 'p'), rec(6), rec(6)),
		"truncated inside record": cat(header, rec(2, 0x0a, 0x05, 'p')),
		"record after commitment": cat(header, rec(6), rec(5)),
		"empty group":             cat(header, rec(2)),
		"a group twice":           cat(header, rec(2, 0x0a, 0x01, 'p'), rec(2, 0x0a, 0x01, 'p')),
		"foreign field in group":  cat(header, rec(3, 0x12, 0x01, 'p')),
	} {
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("%s: Unmarshal(%x) succeeded", name, b)
		}
	}
}

// script is a session that exercises every record kind, with rejections in
// between.
func script(t testing.TB) []msg {
	return []msg{
		proposal(t, "orch", "p1", "deploy"),
		objection(t, "b", "p1", "critical"),
		evaluation(t, "a", "p1", "APPROVE", 0.75),
		proposal(t, "x", "p9", "outsider"), // rejected
		proposal(t, "b", "p2", "wait"),
		objection(t, "a", "p2", ""),
		evaluation(t, "b", "p2", "REVIEW", 0),
		proposal(t, "a", "p1", "again"), // rejected
		vote(t, "a", "p2", "REJECT"),
		evaluation(t, "b", "p1", "BLOCK", 1), // rejected
		vote(t, "orch", "p1", "APPROVE"),
		vote(t, "a", "p1", "ABSTAIN"),
		vote(t, "a", "p1", "APPROVE"), // rejected
		vote(t, "b", "p1", "REJECT"),
		commitment(t, "orch", false),
	}
}

// TestStepMatchesModel runs a script and checks after every accepted step
// that Step's spliced state equals the canonical encoding of the expected
// history, so the bytes depend only on the history.
func TestStepMatchesModel(t *testing.T) {
	var model State
	state := start(t, defaultSession)
	if !bytes.Equal(state, model.Marshal()) {
		t.Fatalf("initial state %x", state)
	}
	accepted := 0
	for i, m := range script(t) {
		res := run(defaultSession, state, m)
		if !res.Accepted {
			continue
		}
		accepted++
		switch m.typ {
		case MsgProposal:
			p, _ := decodeProposal(m.payload, true)
			p.Sender = m.sender
			model.Proposals = append(model.Proposals, p)
		case MsgEvaluation:
			e, _ := decodeEvaluation(m.payload, true)
			e.Sender = m.sender
			model.Evaluations = append(model.Evaluations, e)
		case MsgObjection:
			o, _ := decodeObjection(m.payload, true)
			o.Sender = m.sender
			if o.Severity == "" {
				o.Severity = "medium"
			}
			model.Objections = append(model.Objections, o)
		case MsgVote:
			v, _ := decodeVote(m.payload, true)
			v.Voter = m.sender
			model.Votes = append(model.Votes, v)
		case MsgCommitment:
			model.Commitment = &Commitment{CommitmentID: "c1", Action: "decision.rejected", Sender: m.sender}
		}
		if want := model.Marshal(); !bytes.Equal(res.State, want) {
			t.Fatalf("step %d (%s): state\n%x\nwant\n%x", i, m.typ, res.State, want)
		}
		state = res.State
	}
	if accepted != 11 {
		t.Fatalf("%d steps accepted, want 11", accepted)
	}
}

func TestSameHistorySameBytes(t *testing.T) {
	a := replayAll(t, script(t))
	b := replayAll(t, script(t))
	if !bytes.Equal(a, b) {
		t.Fatal("the same history produced different states")
	}
	va, _ := Mode{}.View(a, defaultSession)
	vb, _ := Mode{}.View(b, defaultSession)
	if !bytes.Equal(va, vb) {
		t.Fatal("the same state produced different views")
	}
}

// replayAll applies msgs, skipping rejections, and returns the final state.
func replayAll(t testing.TB, msgs []msg) []byte {
	state := start(t, defaultSession)
	for _, m := range msgs {
		if res := run(defaultSession, state, m); res.Accepted {
			state = res.State
		}
	}
	return state
}

func FuzzStep(f *testing.F) {
	for _, m := range script(f) {
		f.Add(replayAll(f, script(f)[:3]), m.typ, m.sender, m.payload)
	}
	f.Add([]byte{}, MsgVote, "a", []byte{0x0a, 0x80})
	f.Fuzz(func(t *testing.T, state []byte, typ, sender string, payload []byte) {
		res := run(defaultSession, state, msg{sender, typ, payload})
		if res.Accepted {
			in, err := Unmarshal(state)
			if err != nil {
				// A step reads only the groups its rules need (the
				// evaluations and objections never), so damage elsewhere
				// goes unseen: the host only ever passes back the bytes
				// the mode wrote. The property for such input is that
				// Step does not panic.
				return
			}
			// Step keeps the bytes it is given, so only a canonical input
			// must give a canonical output.
			if len(state) == 0 || bytes.Equal(in.Marshal(), state) {
				assertCanonical(t, res.State)
			}
			if _, err := (Mode{}).View(res.State, defaultSession); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func BenchmarkVote(b *testing.B) {
	voters := []string{"v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"}
	sess := newSession("orch", voters...)
	history := []msg{proposal(b, "v0", "p1", "deploy")}
	for _, v := range voters[:9] {
		history = append(history, vote(b, v, "p1", "APPROVE"))
	}
	state := replay(b, sess, history...)
	last := vote(b, "v9", "p1", "REJECT")
	b.ReportAllocs()
	for b.Loop() {
		if res := run(sess, state, last); !res.Accepted {
			b.Fatal(res.Message)
		}
	}
}

// BenchmarkEvaluationAsHistoryGrows steps one more Evaluation into a session
// that already holds n of them: the step reads the framing and the
// proposals, never the evaluations, so its cost should not grow with n
// beyond copying the state (compare the sub-benchmarks' ns/op).
func BenchmarkEvaluationAsHistoryGrows(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("evaluations=%d", n), func(b *testing.B) {
			state := start(b, defaultSession)
			state = run(defaultSession, state, proposal(b, "a", "p1", "deploy")).State
			next := evaluation(b, "b", "p1", "APPROVE", 0.5)
			for range n {
				res := run(defaultSession, state, next)
				if !res.Accepted {
					b.Fatal(res.Message)
				}
				state = res.State
			}
			b.ReportMetric(float64(len(state)), "state-bytes")
			b.ReportAllocs()
			for b.Loop() {
				if res := run(defaultSession, state, next); !res.Accepted {
					b.Fatal(res.Message)
				}
			}
		})
	}
}
