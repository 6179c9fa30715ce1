package decision

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/macperr"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// msg is one envelope offered to the mode in a test.
type msg struct {
	sender  string
	typ     string
	payload []byte
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func proposal(t testing.TB, sender, id, option string) msg {
	return msg{sender, MsgProposal, marshal(t, &decisionv1.ProposalPayload{
		ProposalId: id, Option: option, Rationale: "because", SupportingData: []byte{0xff, 0x00},
	})}
}

func evaluation(t testing.TB, sender, id, rec string, confidence float64) msg {
	return msg{sender, MsgEvaluation, marshal(t, &decisionv1.EvaluationPayload{
		ProposalId: id, Recommendation: rec, Confidence: confidence, Reason: "analysed",
	})}
}

func objection(t testing.TB, sender, id, severity string) msg {
	return msg{sender, MsgObjection, marshal(t, &decisionv1.ObjectionPayload{
		ProposalId: id, Reason: "concern", Severity: severity,
	})}
}

func vote(t testing.TB, sender, id, v string) msg {
	return msg{sender, MsgVote, marshal(t, &decisionv1.VotePayload{ProposalId: id, Vote: v, Reason: "why " + v})}
}

func commitment(t testing.TB, sender string, positive bool) msg {
	action := "decision.selected"
	if !positive {
		action = "decision.rejected"
	}
	return msg{sender, MsgCommitment, marshal(t, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "test", Reason: "done",
		ModeVersion: ModeVersion, ConfigurationVersion: "cfg-1", OutcomePositive: positive,
	})}
}

func newSession(initiator string, participants ...string) *guest.Session {
	return &guest.Session{
		SessionID:            "0b6f1c1e-8f5a-4c47-9d4e-1f2a3b4c5d6e",
		Mode:                 ModeName,
		ModeVersion:          ModeVersion,
		ConfigurationVersion: "cfg-1",
		PolicyVersion:        "policy.default",
		Initiator:            initiator,
		Participants:         participants,
	}
}

// defaultSession has the initiator among the participants, like most fixtures.
var defaultSession = newSession("orch", "orch", "a", "b")

func run(sess *guest.Session, state []byte, m msg) guest.Result {
	return Mode{}.Step(&guest.StepRequest{
		State:    state,
		Session:  *sess,
		Envelope: guest.Envelope{MACPVersion: "1.0", Mode: ModeName, MessageType: m.typ, MessageID: "m", SessionID: sess.SessionID, Sender: m.sender, Payload: m.payload},
	})
}

// start returns the initial state of sess.
func start(t testing.TB, sess *guest.Session) []byte {
	t.Helper()
	res := run(sess, nil, msg{sess.Initiator, MsgSessionStart, nil})
	if !res.Accepted || len(res.State) == 0 {
		t.Fatalf("SessionStart: %+v", res)
	}
	return res.State
}

// replay starts sess and applies history, every message of which must be
// accepted, and returns the state.
func replay(t testing.TB, sess *guest.Session, history ...msg) []byte {
	t.Helper()
	state := start(t, sess)
	for i, m := range history {
		res := run(sess, state, m)
		if !res.Accepted {
			t.Fatalf("history[%d] %s from %s rejected: %s %s", i, m.typ, m.sender, res.Code, res.Message)
		}
		state = res.State
	}
	return state
}

func view(t testing.TB, state []byte) map[string]any {
	t.Helper()
	b, err := Mode{}.View(state, defaultSession)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("view is not JSON: %v\n%s", err, b)
	}
	return v
}

func TestStepRules(t *testing.T) {
	const (
		ok = ""
		fb = macperr.Forbidden
		ie = macperr.InvalidEnvelope
	)
	p1 := proposal(t, "orch", "p1", "deploy")
	notListed := newSession("orch", "a", "b")
	nobody := newSession("orch")
	truncated := []byte{0x0a, 0x05, 'p'}

	tests := []struct {
		name    string
		session *guest.Session // defaultSession when nil
		history []msg
		msg     msg
		want    macperr.Code
	}{
		// Authorization: declared participants only, checked before anything else.
		{name: "outsider proposal", msg: proposal(t, "x", "p1", "deploy"), want: fb},
		{name: "outsider evaluation", history: []msg{p1}, msg: evaluation(t, "x", "p1", "APPROVE", 0.5), want: fb},
		{name: "outsider objection", history: []msg{p1}, msg: objection(t, "x", "p1", "high"), want: fb},
		{name: "outsider vote", history: []msg{p1}, msg: vote(t, "x", "p1", "APPROVE"), want: fb},
		{name: "outsider malformed payload", msg: msg{"x", MsgProposal, truncated}, want: fb},
		{name: "outsider after first vote", history: []msg{p1, vote(t, "a", "p1", "APPROVE")}, msg: proposal(t, "x", "p2", "other"), want: fb},
		{name: "outsider vote on unknown proposal", msg: vote(t, "x", "nope", "maybe"), want: fb},
		{name: "empty sender", msg: proposal(t, "", "p1", "deploy"), want: fb},
		{name: "unlisted initiator proposal", session: notListed, msg: proposal(t, "orch", "p1", "deploy"), want: fb},
		{name: "unlisted initiator vote", session: notListed, history: []msg{proposal(t, "a", "p1", "deploy")}, msg: vote(t, "orch", "p1", "APPROVE"), want: fb},
		{name: "zero participants", session: nobody, msg: proposal(t, "orch", "p1", "deploy"), want: fb},
		{name: "participant ids are case-sensitive", msg: proposal(t, "A", "p1", "deploy"), want: fb},
		{name: "unlisted initiator commitment is the host's call", session: notListed, history: []msg{proposal(t, "a", "p1", "deploy")}, msg: commitment(t, "orch", true), want: ok},

		// Proposal.
		{name: "proposal", msg: p1, want: ok},
		{name: "proposal from non-initiator", msg: proposal(t, "b", "p1", "deploy"), want: ok},
		{name: "second proposal", history: []msg{p1}, msg: proposal(t, "a", "p2", "wait"), want: ok},
		{name: "proposal after evaluation and objection", history: []msg{p1, evaluation(t, "a", "p1", "REVIEW", 0.1), objection(t, "b", "p1", "low")}, msg: proposal(t, "a", "p2", "wait"), want: ok},
		{name: "proposal empty id", msg: proposal(t, "orch", "", "deploy"), want: ie},
		{name: "proposal blank id", msg: proposal(t, "orch", " \t", "deploy"), want: ie},
		{name: "proposal empty option", msg: proposal(t, "orch", "p1", ""), want: ie},
		{name: "proposal blank option", msg: proposal(t, "orch", "p1", "  "), want: ie},
		{name: "proposal duplicate id", history: []msg{p1}, msg: proposal(t, "a", "p1", "other"), want: ie},
		{name: "proposal ids are case-sensitive", history: []msg{p1}, msg: proposal(t, "a", "P1", "other"), want: ok},
		{name: "proposal after first vote", history: []msg{p1, vote(t, "a", "p1", "ABSTAIN")}, msg: proposal(t, "b", "p2", "other"), want: ie},
		{name: "proposal malformed", msg: msg{"a", MsgProposal, truncated}, want: ie},
		{name: "proposal empty payload", msg: msg{"a", MsgProposal, nil}, want: ie},
		{name: "proposal invalid UTF-8", msg: msg{"a", MsgProposal, rawStrings(1, "p\xff", 2, "deploy")}, want: ie},
		{name: "proposal unknown fields skipped", msg: msg{"a", MsgProposal, append(rawStrings(1, "p1", 2, "deploy", 99, "x"), 0x08, 0x01)}, want: ok},
		{name: "proposal wrong wire type skipped", msg: msg{"a", MsgProposal, append(rawStrings(1, "p1", 2, "deploy"), 0x18, 0x07)}, want: ok},
		{name: "proposal sender field in payload ignored", msg: msg{"a", MsgProposal, rawStrings(1, "p1", 2, "deploy", 15, "orch")}, want: ok},

		// Evaluation.
		{name: "evaluation APPROVE", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", 0.9), want: ok},
		{name: "evaluation REVIEW", history: []msg{p1}, msg: evaluation(t, "a", "p1", "REVIEW", 0.5), want: ok},
		{name: "evaluation BLOCK", history: []msg{p1}, msg: evaluation(t, "a", "p1", "BLOCK", 0.5), want: ok},
		{name: "evaluation REJECT", history: []msg{p1}, msg: evaluation(t, "a", "p1", "REJECT", 0.5), want: ok},
		{name: "evaluation confidence 0", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", 0), want: ok},
		{name: "evaluation confidence 1", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", 1), want: ok},
		{name: "evaluation confidence -0", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", math.Copysign(0, -1)), want: ok},
		{name: "second evaluation by the same sender", history: []msg{p1, evaluation(t, "a", "p1", "REVIEW", 0.2)}, msg: evaluation(t, "a", "p1", "APPROVE", 0.9), want: ok},
		{name: "evaluation before any proposal", msg: evaluation(t, "a", "p1", "APPROVE", 0.5), want: ie},
		{name: "evaluation unknown proposal", history: []msg{p1}, msg: evaluation(t, "a", "p2", "APPROVE", 0.5), want: ie},
		{name: "evaluation empty proposal id", history: []msg{p1}, msg: evaluation(t, "a", "", "APPROVE", 0.5), want: ie},
		{name: "evaluation lower-case recommendation", history: []msg{p1}, msg: evaluation(t, "a", "p1", "approve", 0.5), want: ie},
		{name: "evaluation mixed-case recommendation", history: []msg{p1}, msg: evaluation(t, "a", "p1", "Approve", 0.5), want: ie},
		{name: "evaluation empty recommendation", history: []msg{p1}, msg: evaluation(t, "a", "p1", "", 0.5), want: ie},
		{name: "evaluation vote-only value", history: []msg{p1}, msg: evaluation(t, "a", "p1", "ABSTAIN", 0.5), want: ie},
		{name: "evaluation confidence below 0", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", -0.01), want: ie},
		{name: "evaluation confidence above 1", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", 1.0001), want: ie},
		{name: "evaluation confidence NaN", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", math.NaN()), want: ie},
		{name: "evaluation confidence +Inf", history: []msg{p1}, msg: evaluation(t, "a", "p1", "APPROVE", math.Inf(1)), want: ie},
		{name: "evaluation after first vote", history: []msg{p1, vote(t, "a", "p1", "APPROVE")}, msg: evaluation(t, "b", "p1", "APPROVE", 0.7), want: ie},
		{name: "evaluation malformed", history: []msg{p1}, msg: msg{"a", MsgEvaluation, truncated}, want: ie},

		// Objection.
		{name: "objection low", history: []msg{p1}, msg: objection(t, "b", "p1", "low"), want: ok},
		{name: "objection medium", history: []msg{p1}, msg: objection(t, "b", "p1", "medium"), want: ok},
		{name: "objection high", history: []msg{p1}, msg: objection(t, "b", "p1", "high"), want: ok},
		{name: "objection critical", history: []msg{p1}, msg: objection(t, "b", "p1", "critical"), want: ok},
		{name: "objection empty severity", history: []msg{p1}, msg: objection(t, "b", "p1", ""), want: ok},
		{name: "objection by the proposer", history: []msg{p1}, msg: objection(t, "orch", "p1", "low"), want: ok},
		{name: "objection before any proposal", msg: objection(t, "b", "p1", "high"), want: ie},
		{name: "objection unknown proposal", history: []msg{p1}, msg: objection(t, "b", "p-does-not-exist", "high"), want: ie},
		{name: "objection upper-case severity", history: []msg{p1}, msg: objection(t, "b", "p1", "CRITICAL"), want: ie},
		{name: "objection unknown severity", history: []msg{p1}, msg: objection(t, "b", "p1", "urgent"), want: ie},
		{name: "objection blank severity", history: []msg{p1}, msg: objection(t, "b", "p1", " "), want: ie},
		{name: "objection after first vote", history: []msg{p1, vote(t, "a", "p1", "REJECT")}, msg: objection(t, "b", "p1", "critical"), want: ie},
		{name: "objection malformed", history: []msg{p1}, msg: msg{"b", MsgObjection, truncated}, want: ie},

		// Vote.
		{name: "vote APPROVE", history: []msg{p1}, msg: vote(t, "a", "p1", "APPROVE"), want: ok},
		{name: "vote REJECT", history: []msg{p1}, msg: vote(t, "a", "p1", "REJECT"), want: ok},
		{name: "vote ABSTAIN", history: []msg{p1}, msg: vote(t, "a", "p1", "ABSTAIN"), want: ok},
		{name: "vote by the initiator when listed", history: []msg{p1}, msg: vote(t, "orch", "p1", "APPROVE"), want: ok},
		{name: "vote by a second voter", history: []msg{p1, vote(t, "a", "p1", "APPROVE")}, msg: vote(t, "b", "p1", "REJECT"), want: ok},
		{name: "vote on a second proposal", history: []msg{p1, proposal(t, "a", "p2", "wait"), vote(t, "a", "p1", "APPROVE")}, msg: vote(t, "a", "p2", "REJECT"), want: ok},
		{name: "vote after evaluations and objections", history: []msg{p1, evaluation(t, "a", "p1", "BLOCK", 0.4), objection(t, "b", "p1", "")}, msg: vote(t, "a", "p1", "REJECT"), want: ok},
		{name: "vote before any proposal", msg: vote(t, "a", "p1", "APPROVE"), want: ie},
		{name: "vote unknown proposal", history: []msg{p1}, msg: vote(t, "a", "p2", "APPROVE"), want: ie},
		{name: "vote lower-case", history: []msg{p1}, msg: vote(t, "a", "p1", "approve"), want: ie},
		{name: "vote empty", history: []msg{p1}, msg: vote(t, "a", "p1", ""), want: ie},
		{name: "vote evaluation-only value", history: []msg{p1}, msg: vote(t, "a", "p1", "BLOCK"), want: ie},
		{name: "second vote, different value", history: []msg{p1, vote(t, "a", "p1", "APPROVE")}, msg: vote(t, "a", "p1", "REJECT"), want: ie},
		{name: "second vote, same value", history: []msg{p1, vote(t, "a", "p1", "APPROVE")}, msg: vote(t, "a", "p1", "APPROVE"), want: ie},
		{name: "second vote after an abstention", history: []msg{p1, vote(t, "a", "p1", "ABSTAIN")}, msg: vote(t, "a", "p1", "APPROVE"), want: ie},
		{name: "vote malformed", history: []msg{p1}, msg: msg{"a", MsgVote, truncated}, want: ie},

		// Commitment (authority and payload fields are the host's).
		{name: "positive commitment before any proposal", msg: commitment(t, "orch", true), want: ie},
		{name: "negative commitment before any proposal", msg: commitment(t, "orch", false), want: ie},
		{name: "positive commitment after a proposal", history: []msg{p1}, msg: commitment(t, "orch", true), want: ok},
		{name: "negative commitment after a proposal", history: []msg{p1}, msg: commitment(t, "orch", false), want: ok},
		{name: "commitment after votes", history: []msg{p1, vote(t, "a", "p1", "APPROVE"), vote(t, "b", "p1", "APPROVE")}, msg: commitment(t, "orch", true), want: ok},
		{name: "commitment with empty payload", history: []msg{p1}, msg: msg{"orch", MsgCommitment, nil}, want: ok},
		{name: "commitment malformed", history: []msg{p1}, msg: msg{"orch", MsgCommitment, truncated}, want: ie},
		{name: "second commitment", history: []msg{p1, commitment(t, "orch", true)}, msg: commitment(t, "orch", false), want: ie},
		{name: "proposal after commitment", history: []msg{p1, commitment(t, "orch", true)}, msg: proposal(t, "a", "p2", "x"), want: ie},
		{name: "vote after commitment", history: []msg{p1, commitment(t, "orch", true)}, msg: vote(t, "a", "p1", "APPROVE"), want: ie},

		// Other message types.
		{name: "unknown message type", history: []msg{p1}, msg: msg{"a", "Accept", nil}, want: ie},
		{name: "lower-case message type", history: []msg{p1}, msg: msg{"a", "vote", vote(t, "a", "p1", "APPROVE").payload}, want: ie},
		{name: "empty message type", msg: msg{"a", "", nil}, want: ie},
		{name: "SessionCancel", history: []msg{p1}, msg: msg{"orch", "SessionCancel", nil}, want: ie},
		{name: "Signal", msg: msg{"a", "Signal", nil}, want: ie},
		{name: "second SessionStart", msg: msg{"orch", MsgSessionStart, nil}, want: ie},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sess := tc.session
			if sess == nil {
				sess = defaultSession
			}
			state := replay(t, sess, tc.history...)
			before := slices.Clone(state)
			res := run(sess, state, tc.msg)
			if !bytes.Equal(state, before) {
				t.Fatal("Step modified its input state")
			}
			if tc.want == ok {
				if !res.Accepted || res.Code != "" {
					t.Fatalf("rejected with %s: %s", res.Code, res.Message)
				}
				if bytes.Equal(res.State, state) {
					t.Fatal("accepted without changing the state")
				}
				assertCanonical(t, res.State)
				return
			}
			if res.Accepted || res.Code != tc.want {
				t.Fatalf("got accepted=%v code=%q (%s), want %s", res.Accepted, res.Code, res.Message, tc.want)
			}
			if res.Message == "" {
				t.Error("rejection without a message")
			}
			if res.State != nil {
				t.Error("rejection carries a state")
			}
		})
	}
}

// rawStrings encodes pairs of (field number, string) as length-delimited
// fields, without UTF-8 checks.
func rawStrings(kv ...any) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = protowire.AppendTag(b, protowire.Number(kv[i].(int)), protowire.BytesType)
		b = protowire.AppendString(b, kv[i+1].(string))
	}
	return b
}

// assertCanonical checks that state decodes and re-encodes to itself.
func assertCanonical(t testing.TB, state []byte) *State {
	t.Helper()
	s, err := Unmarshal(state)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if again := s.Marshal(); !bytes.Equal(again, state) {
		t.Fatalf("state is not canonical:\n got %x\nwant %x", state, again)
	}
	return s
}

func TestPhases(t *testing.T) {
	steps := []struct {
		m     msg
		phase string
	}{
		{proposal(t, "orch", "p1", "deploy"), PhaseEvaluation},
		{evaluation(t, "a", "p1", "APPROVE", 0.8), PhaseEvaluation},
		{objection(t, "b", "p1", "low"), PhaseEvaluation},
		{proposal(t, "b", "p2", "wait"), PhaseEvaluation},
		{vote(t, "a", "p1", "APPROVE"), PhaseVoting},
		{vote(t, "b", "p2", "REJECT"), PhaseVoting},
		{commitment(t, "orch", true), PhaseCommitted},
	}
	state := start(t, defaultSession)
	if got := view(t, state)["phase"]; got != PhaseProposal {
		t.Fatalf("initial phase %v", got)
	}
	for i, s := range steps {
		res := run(defaultSession, state, s.m)
		if !res.Accepted {
			t.Fatalf("step %d rejected: %s", i, res.Message)
		}
		state = res.State
		if got := view(t, state)["phase"]; got != s.phase {
			t.Fatalf("after step %d (%s): phase %v, want %s", i, s.m.typ, got, s.phase)
		}
	}
}

func TestFirstVoteStands(t *testing.T) {
	state := replay(t, defaultSession, proposal(t, "orch", "p1", "deploy"), vote(t, "a", "p1", "APPROVE"))
	res := run(defaultSession, state, vote(t, "a", "p1", "REJECT"))
	if res.Accepted || res.Code != macperr.InvalidEnvelope {
		t.Fatalf("second vote: %+v", res)
	}
	got := view(t, state)["votes"].(map[string]any)["p1"].(map[string]any)["a"].(map[string]any)["vote"]
	if got != "APPROVE" {
		t.Fatalf("vote = %v, want the first one (APPROVE)", got)
	}
}

func TestEmptySeverityIsMedium(t *testing.T) {
	state := replay(t, defaultSession, proposal(t, "orch", "p1", "deploy"), objection(t, "b", "p1", ""))
	objs := view(t, state)["objections"].([]any)
	if len(objs) != 1 || objs[0].(map[string]any)["severity"] != "medium" {
		t.Fatalf("objections = %v", objs)
	}
}

func TestSenderComesFromEnvelope(t *testing.T) {
	state := replay(t, defaultSession, msg{"a", MsgProposal, rawStrings(1, "p1", 2, "deploy", 15, "orch")})
	s := assertCanonical(t, state)
	if s.Proposals[0].Sender != "a" {
		t.Fatalf("sender = %q, want the envelope's", s.Proposals[0].Sender)
	}
}

func TestEmptyStateIsInitial(t *testing.T) {
	// A host that passes no state at all gets the same result as one that
	// passes the SessionStart state.
	m := proposal(t, "a", "p1", "deploy")
	fromNil := run(defaultSession, nil, m)
	fromStart := run(defaultSession, start(t, defaultSession), m)
	if !fromNil.Accepted || !bytes.Equal(fromNil.State, fromStart.State) {
		t.Fatalf("nil state: %+v, start state: %+v", fromNil, fromStart)
	}
}

func TestCorruptStateIsInternalError(t *testing.T) {
	for _, state := range [][]byte{
		{0xff},
		{0x08, 0x03},             // unknown state version
		{0x08, 0x01},             // the previous version, read by the previous module
		{0x12, 0x00},             // a record before the version
		{0x08, 0x02, 0x12, 0x05}, // truncated group
	} {
		res := run(defaultSession, state, proposal(t, "a", "p1", "deploy"))
		if res.Accepted || res.Code != macperr.InternalError {
			t.Errorf("state %x: %+v", state, res)
		}
	}
}

func TestDescribe(t *testing.T) {
	d := Mode{}.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || d.DeterminismClass != "semantic-deterministic" ||
		d.ParticipantModel != "declared" || d.Title == "" || d.Description == "" || d.SchemaURIs["protobuf"] == "" {
		t.Fatalf("descriptor: %+v", d)
	}
	if want := []string{"SessionStart", "Proposal", "Evaluation", "Objection", "Vote", "Commitment"}; !slices.Equal(d.MessageTypes, want) {
		t.Errorf("message types %v", d.MessageTypes)
	}
	if !slices.Equal(d.TerminalMessageTypes, []string{"Commitment"}) {
		t.Errorf("terminal message types %v", d.TerminalMessageTypes)
	}
}
