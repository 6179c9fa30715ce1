package proposal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/internal/fixturetest"
	"github.com/concord-macp/concord/macperr"
	proposalv1 "github.com/concord-macp/concord/proto/macp/modes/proposal/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

const (
	buyer    = "agent://buyer"
	seller   = "agent://seller"
	broker   = "agent://broker"
	outsider = "agent://outsider"
	ie       = macperr.InvalidEnvelope
	forbid   = macperr.Forbidden
)

func session(rules string, participants ...string) guest.Session {
	if participants == nil {
		participants = []string{buyer, seller}
	}
	return guest.Session{
		SessionID: "0123456789abcdefghijklmn", Mode: ModeName, ModeVersion: ModeVersion,
		ConfigurationVersion: "cfg-1", PolicyVersion: "policy.default", Initiator: buyer,
		Participants: participants, PolicyRules: rules, PolicySchemaVersion: 1,
	}
}

func enc(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// step is one envelope of a scripted session and its expected outcome
// ("" = accepted).
type step struct {
	sender, typ string
	payload     []byte
	want        macperr.Code
}

func prop(t *testing.T, from, id string) step {
	return step{from, typeProposal, enc(t, &proposalv1.ProposalPayload{ProposalId: id, Title: "t " + id}), ""}
}

func counter(t *testing.T, from, id, supersedes string) step {
	return step{from, typeCounterProposal, enc(t, &proposalv1.CounterProposalPayload{
		ProposalId: id, SupersedesProposalId: supersedes}), ""}
}

func accept(t *testing.T, from, id string) step {
	return step{from, typeAccept, enc(t, &proposalv1.AcceptPayload{ProposalId: id}), ""}
}

func rejectMsg(t *testing.T, from, id string, terminal bool) step {
	return step{from, typeReject, enc(t, &proposalv1.RejectPayload{ProposalId: id, Terminal: terminal}), ""}
}

func withdraw(t *testing.T, from, id string) step {
	return step{from, typeWithdraw, enc(t, &proposalv1.WithdrawPayload{ProposalId: id}), ""}
}

func commitMsg(t *testing.T, positive bool) step {
	action := "proposal.accepted"
	if !positive {
		action = "proposal.rejected"
	}
	return step{buyer, typeCommitment, enc(t, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: action, AuthorityScope: "test", Reason: "r", ModeVersion: ModeVersion,
		ConfigurationVersion: "cfg-1", OutcomePositive: positive}), ""}
}

func (s step) fails(code macperr.Code) step { s.want = code; return s }

// run starts a session and applies the steps, checking each outcome, and
// returns the final state bytes.
func run(t *testing.T, sess guest.Session, steps ...step) []byte {
	t.Helper()
	var m Mode
	res := m.Step(&guest.StepRequest{
		Envelope: guest.Envelope{MessageType: typeSessionStart, Sender: sess.Initiator}, Session: sess,
	})
	if !res.Accepted {
		t.Fatalf("SessionStart: %s %s", res.Code, res.Message)
	}
	st := res.State
	for i, s := range steps {
		res := m.Step(&guest.StepRequest{
			State:    st,
			Envelope: guest.Envelope{MessageType: s.typ, MessageID: fmt.Sprint(i), Sender: s.sender, Payload: s.payload},
			Session:  sess,
		})
		switch {
		case s.want == "" && !res.Accepted:
			t.Fatalf("step %d %s from %s: rejected %s: %s", i, s.typ, s.sender, res.Code, res.Message)
		case s.want != "" && res.Accepted:
			t.Fatalf("step %d %s from %s: accepted, want %s", i, s.typ, s.sender, s.want)
		case s.want != "" && res.Code != s.want:
			t.Fatalf("step %d %s from %s: code %s (%s), want %s", i, s.typ, s.sender, res.Code, res.Message, s.want)
		case res.Accepted:
			checkRoundTrip(t, res.State)
			st = res.State
		}
		if !res.Accepted && res.State != nil {
			t.Fatalf("step %d: rejection carries state", i)
		}
	}
	return st
}

func view(t *testing.T, st []byte, sess guest.Session) map[string]any {
	t.Helper()
	b, err := Mode{}.View(st, &sess)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func phaseOf(t *testing.T, st []byte) string {
	t.Helper()
	s, err := decodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	return s.Phase.String()
}

func TestDescribe(t *testing.T) {
	d := Mode{}.Describe()
	if d.Mode != ModeName || d.ModeVersion != "1.0.0" || d.DeterminismClass != "semantic-deterministic" ||
		d.ParticipantModel != "peer" {
		t.Fatalf("descriptor %+v", d)
	}
	want := []string{"SessionStart", "Proposal", "CounterProposal", "Accept", "Reject", "Withdraw", "Commitment"}
	if fmt.Sprint(d.MessageTypes) != fmt.Sprint(want) {
		t.Fatalf("message types %v", d.MessageTypes)
	}
	if fmt.Sprint(d.TerminalMessageTypes) != "[Commitment]" || d.SchemaURIs["protobuf"] == "" {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestSessionStart(t *testing.T) {
	cases := []struct {
		name, rules string
		want        macperr.Code
		crit        criterion
		rounds      uint64
		terminal    bool
	}{
		{"empty", "", "", criterionAllParties, 0, false},
		{"default", "{}", "", criterionAllParties, 0, false},
		{"null", "null", "", criterionAllParties, 0, false},
		{"all", `{"acceptance":{"criterion":"counterparty"},"counter_proposal":{"max_rounds":3},` +
			`"rejection":{"terminal_on_any_reject":true},"commitment":{"authority":"any_participant"}}`,
			"", criterionCounterparty, 3, true},
		{"initiator", `{"acceptance":{"criterion":"initiator"}}`, "", criterionInitiator, 0, false},
		{"integral float", `{"counter_proposal":{"max_rounds":2.0}}`, "", criterionAllParties, 2, false},
		{"decision keys ignored", `{"voting":{"algorithm":"none"}}`, "", criterionAllParties, 0, false},
		{"bad criterion", `{"acceptance":{"criterion":"everyone"}}`, ie, 0, 0, false},
		{"criterion case", `{"acceptance":{"criterion":"All_Parties"}}`, ie, 0, 0, false},
		{"negative rounds", `{"counter_proposal":{"max_rounds":-1}}`, ie, 0, 0, false},
		{"fractional rounds", `{"counter_proposal":{"max_rounds":1.5}}`, ie, 0, 0, false},
		{"huge rounds", `{"counter_proposal":{"max_rounds":1e12}}`, ie, 0, 0, false},
		{"wrong type", `{"rejection":{"terminal_on_any_reject":"yes"}}`, ie, 0, 0, false},
		{"not an object", `[1]`, ie, 0, 0, false},
		{"malformed", `{"acceptance":`, ie, 0, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := Mode{}.Step(&guest.StepRequest{
				Envelope: guest.Envelope{MessageType: typeSessionStart, Sender: buyer},
				Session:  session(c.rules),
			})
			if c.want != "" {
				if res.Accepted || res.Code != c.want {
					t.Fatalf("got %v %s %s, want %s", res.Accepted, res.Code, res.Message, c.want)
				}
				return
			}
			if !res.Accepted {
				t.Fatalf("rejected %s %s", res.Code, res.Message)
			}
			s, err := decodeState(res.State)
			if err != nil {
				t.Fatal(err)
			}
			if s.Phase != phaseNegotiating || s.Criterion != c.crit || s.MaxRounds != c.rounds ||
				s.TerminalOnAnyReject != c.terminal {
				t.Fatalf("state %+v", s)
			}
		})
	}
}

func TestStartEdgeCases(t *testing.T) {
	var m Mode
	sess := session("{}")
	st := run(t, sess)
	res := m.Step(&guest.StepRequest{State: st, Envelope: guest.Envelope{MessageType: typeSessionStart}, Session: sess})
	if res.Accepted || res.Code != ie {
		t.Fatalf("second SessionStart: %+v", res)
	}
	res = m.Step(&guest.StepRequest{Envelope: guest.Envelope{MessageType: typeProposal, Sender: seller}, Session: sess})
	if res.Accepted || res.Code != macperr.InternalError {
		t.Fatalf("no state: %+v", res)
	}
	res = m.Step(&guest.StepRequest{State: []byte{0xff}, Envelope: guest.Envelope{MessageType: typeProposal,
		Sender: seller}, Session: sess})
	if res.Accepted || res.Code != macperr.InternalError {
		t.Fatalf("corrupt state: %+v", res)
	}
	// Participants may be empty: the session starts, nobody may negotiate.
	empty := session("{}", []string{}...)
	empty.Participants = []string{}
	run(t, empty, prop(t, buyer, "p1").fails(forbid))
}

func TestAuthorization(t *testing.T) {
	sess := session("{}")
	garbage := []byte{0x0a, 0x05, 'a'} // truncated
	run(t, sess,
		prop(t, outsider, "p1").fails(forbid),
		step{outsider, typeProposal, garbage, forbid},
		step{outsider, "Vote", nil, ie},
		step{seller, "Vote", nil, ie},
		step{seller, "proposal", nil, ie},
		step{seller, typeProposal, garbage, ie},
		prop(t, seller, "p1"),
		accept(t, outsider, "p1").fails(forbid),
		rejectMsg(t, outsider, "p1", true).fails(forbid),
		withdraw(t, outsider, "p1").fails(forbid),
		counter(t, outsider, "p2", "p1").fails(forbid),
	)
	// The initiator is not an implicit participant.
	run(t, session("{}", seller, broker), prop(t, buyer, "p1").fails(forbid))
}

func TestProposalRules(t *testing.T) {
	sess := session("{}")
	badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "p\xff")
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)
	st := run(t, sess,
		prop(t, seller, "").fails(ie),
		prop(t, seller, "  ").fails(ie),
		step{seller, typeProposal, badUTF8, ie},
		step{seller, typeProposal, wrongType, ie}, // field 1 ignored: id empty
		prop(t, seller, "p1"),
		prop(t, buyer, "p1").fails(ie),
		counter(t, buyer, "p1", "p1").fails(ie),
		prop(t, buyer, "p2"),
	)
	v := view(t, st, sess)
	if fmt.Sprint(v["proposal_order"]) != "[p1 p2]" || v["phase"] != "Negotiating" {
		t.Fatalf("view %v", v)
	}
	p1 := v["proposals"].(map[string]any)["p1"].(map[string]any)
	if p1["proposer"] != seller || p1["disposition"] != "Live" || p1["kind"] != "proposal" || p1["title"] != "t p1" {
		t.Fatalf("p1 %v", p1)
	}
}

func TestProposalKeepsTags(t *testing.T) {
	sess := session("{}")
	st := run(t, sess, step{seller, typeProposal, enc(t, &proposalv1.ProposalPayload{
		ProposalId: "p1", Tags: []string{"b", "", "a"}, Details: []byte("x")}), ""})
	p1 := view(t, st, sess)["proposals"].(map[string]any)["p1"].(map[string]any)
	if fmt.Sprint(p1["tags"]) != "[b  a]" {
		t.Fatalf("tags %v", p1["tags"])
	}
}

func TestCounterProposal(t *testing.T) {
	sess := session("{}")
	st := run(t, sess,
		counter(t, seller, "p0", "nothing").fails(ie),
		prop(t, seller, "p1"),
		counter(t, buyer, "p2", "").fails(ie),
		counter(t, buyer, "p2", " ").fails(ie),
		counter(t, buyer, "p2", "p9").fails(ie),
		counter(t, buyer, "", "p1").fails(ie),
		counter(t, buyer, "p2", "p1"),
		counter(t, buyer, "p2", "p1").fails(ie),
		// The original stays live and acceptable.
		accept(t, buyer, "p1"),
		accept(t, seller, "p1"),
	)
	if phaseOf(t, st) != "Converged" {
		t.Fatalf("phase %s", phaseOf(t, st))
	}
	v := view(t, st, sess)
	p2 := v["proposals"].(map[string]any)["p2"].(map[string]any)
	if p2["kind"] != "counter_proposal" || p2["supersedes_proposal_id"] != "p1" || p2["proposer"] != buyer ||
		v["counter_proposals"] != 1.0 || v["converged_proposal_id"] != "p1" {
		t.Fatalf("view %v", v)
	}
	// A withdrawn proposal can still be countered.
	run(t, sess, prop(t, seller, "p1"), withdraw(t, seller, "p1"), counter(t, buyer, "p2", "p1"))
}

func TestMaxRounds(t *testing.T) {
	sess := session(`{"counter_proposal":{"max_rounds":2}}`)
	run(t, sess,
		prop(t, seller, "p1"),
		counter(t, buyer, "p2", "p1"),
		withdraw(t, buyer, "p2"), // withdrawn counters still count
		counter(t, seller, "p3", "p2"),
		counter(t, buyer, "p4", "p3").fails(ie),
		prop(t, buyer, "p5"), // plain proposals are not rounds
	)
	// 0 means unlimited.
	steps := []step{prop(t, seller, "p0")}
	for i := 1; i <= 20; i++ {
		steps = append(steps, counter(t, seller, fmt.Sprint("p", i), fmt.Sprint("p", i-1)))
	}
	run(t, session(`{"counter_proposal":{"max_rounds":0}}`), steps...)
}

func TestAcceptAndConvergence(t *testing.T) {
	sess := session("{}")
	st := run(t, sess,
		accept(t, buyer, "p1").fails(ie),
		prop(t, seller, "p1"),
		prop(t, seller, "p2"),
		accept(t, buyer, "p9").fails(ie),
		accept(t, buyer, "p1"),
		accept(t, seller, "p2"),
	)
	if phaseOf(t, st) != "Negotiating" {
		t.Fatal(phaseOf(t, st))
	}
	// A later Accept replaces the earlier one.
	st = run(t, sess,
		prop(t, seller, "p1"), prop(t, seller, "p2"),
		accept(t, buyer, "p1"), accept(t, seller, "p2"), accept(t, buyer, "p2"),
	)
	v := view(t, st, sess)
	if v["phase"] != "Converged" || fmt.Sprint(v["accepts"]) != "map[agent://buyer:p2 agent://seller:p2]" {
		t.Fatalf("view %v", v)
	}
	for key := range v["proposals"].(map[string]any)["p2"].(map[string]any) {
		if strings.Contains(key, "accept") {
			t.Fatalf("proposal record carries %q: acceptance belongs in accepts only", key)
		}
	}
	// Converged is recomputed: moving away un-converges.
	st = run(t, sess, prop(t, seller, "p1"), prop(t, seller, "p2"),
		accept(t, buyer, "p1"), accept(t, seller, "p1"), accept(t, seller, "p2"))
	if phaseOf(t, st) != "Negotiating" {
		t.Fatal(phaseOf(t, st))
	}
}

func TestCriteria(t *testing.T) {
	three := []string{buyer, seller, broker}
	cases := []struct {
		name, rules  string
		participants []string
		steps        func(t *testing.T) []step
		want         string
	}{
		{"all_parties needs the proposer", "{}", three, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, buyer, "p1"), accept(t, broker, "p1")}
		}, "Negotiating"},
		{"all_parties met", `{"acceptance":{"criterion":"all_parties"}}`, three, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, buyer, "p1"), accept(t, broker, "p1"), accept(t, seller, "p1")}
		}, "Converged"},
		{"counterparty met", `{"acceptance":{"criterion":"counterparty"}}`, three, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, buyer, "p1"), accept(t, broker, "p1")}
		}, "Converged"},
		{"counterparty partial", `{"acceptance":{"criterion":"counterparty"}}`, three, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, buyer, "p1"), accept(t, seller, "p1")}
		}, "Negotiating"},
		{"counterparty alone", `{"acceptance":{"criterion":"counterparty"}}`, []string{seller}, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1")}
		}, "Negotiating"},
		{"initiator met", `{"acceptance":{"criterion":"initiator"}}`, three, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, buyer, "p1")}
		}, "Converged"},
		{"initiator others irrelevant", `{"acceptance":{"criterion":"initiator"}}`, three, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, seller, "p1"), accept(t, broker, "p1")}
		}, "Negotiating"},
		{"initiator outside roster", `{"acceptance":{"criterion":"initiator"}}`, []string{seller, broker}, func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), accept(t, seller, "p1"), accept(t, broker, "p1")}
		}, "Negotiating"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := run(t, session(c.rules, c.participants...), c.steps(t)...)
			if got := phaseOf(t, st); got != c.want {
				t.Fatalf("phase %s, want %s", got, c.want)
			}
		})
	}
}

func TestReject(t *testing.T) {
	sess := session("{}")
	st := run(t, sess,
		rejectMsg(t, buyer, "p1", false).fails(ie),
		prop(t, seller, "p1"),
		rejectMsg(t, buyer, "p9", true).fails(ie),
		rejectMsg(t, buyer, "p1", false),
	)
	if phaseOf(t, st) != "Negotiating" {
		t.Fatal(phaseOf(t, st))
	}
	st = run(t, sess, prop(t, seller, "p1"), prop(t, seller, "p2"),
		accept(t, buyer, "p2"), accept(t, seller, "p2"), // converged on p2
		rejectMsg(t, buyer, "p1", true))
	v := view(t, st, sess)
	if v["phase"] != "TerminalRejected" {
		t.Fatalf("terminal rejection must win over convergence: %v", v)
	}
	rej := v["rejections"].([]any)[0].(map[string]any)
	if rej["terminal"] != true || rej["standing"] != true || rej["sender"] != buyer || rej["proposal_id"] != "p1" {
		t.Fatalf("rejection %v", rej)
	}
	// Withdrawn proposals cannot be rejected; withdrawing drops the
	// standing terminal rejection.
	st = run(t, sess, prop(t, seller, "p1"), rejectMsg(t, buyer, "p1", true), withdraw(t, seller, "p1"),
		rejectMsg(t, buyer, "p1", true).fails(ie))
	v = view(t, st, sess)
	if v["phase"] != "Negotiating" || v["rejections"].([]any)[0].(map[string]any)["standing"] != false {
		t.Fatalf("view %v", v)
	}
	// terminal_on_any_reject makes every Reject terminal.
	st = run(t, session(`{"rejection":{"terminal_on_any_reject":true}}`),
		prop(t, seller, "p1"), rejectMsg(t, buyer, "p1", false))
	if phaseOf(t, st) != "TerminalRejected" {
		t.Fatal(phaseOf(t, st))
	}
}

func TestWithdraw(t *testing.T) {
	sess := session("{}")
	st := run(t, sess,
		withdraw(t, seller, "p1").fails(ie),
		prop(t, seller, "p1"),
		counter(t, buyer, "p2", "p1"),
		withdraw(t, seller, "p2").fails(forbid),
		withdraw(t, buyer, "p1").fails(forbid),
		accept(t, buyer, "p1"), accept(t, seller, "p1"),
		withdraw(t, seller, "p1"),
		withdraw(t, seller, "p1").fails(ie),
		accept(t, buyer, "p1").fails(ie),
		withdraw(t, buyer, "p2"),
	)
	v := view(t, st, sess)
	if v["phase"] != "Negotiating" || len(v["accepts"].(map[string]any)) != 0 {
		t.Fatalf("view %v", v)
	}
	for _, id := range []string{"p1", "p2"} {
		if d := v["proposals"].(map[string]any)[id].(map[string]any)["disposition"]; d != "Withdrawn" {
			t.Fatalf("%s disposition %v", id, d)
		}
	}
	// Withdraw by an outsider is FORBIDDEN before the payload is read.
	run(t, sess, step{outsider, typeWithdraw, []byte{0xff}, forbid})
}

func TestCommitment(t *testing.T) {
	sess := session("{}")
	converged := func(t *testing.T) []step {
		return []step{prop(t, seller, "p1"), accept(t, buyer, "p1"), accept(t, seller, "p1")}
	}
	rejected := func(t *testing.T) []step {
		return []step{prop(t, seller, "p1"), rejectMsg(t, buyer, "p1", true)}
	}
	both := func(t *testing.T) []step {
		return []step{prop(t, seller, "p1"), prop(t, seller, "p2"), rejectMsg(t, buyer, "p1", true),
			accept(t, buyer, "p2"), accept(t, seller, "p2")}
	}
	cases := []struct {
		name     string
		prefix   func(t *testing.T) []step
		positive bool
		want     macperr.Code
	}{
		{"empty session", func(*testing.T) []step { return nil }, true, ie},
		{"negotiating positive", func(t *testing.T) []step { return []step{prop(t, seller, "p1")} }, true, ie},
		{"negotiating negative", func(t *testing.T) []step { return []step{prop(t, seller, "p1")} }, false, ie},
		{"non-terminal reject", func(t *testing.T) []step {
			return []step{prop(t, seller, "p1"), rejectMsg(t, buyer, "p1", false)}
		}, false, ie},
		{"converged positive", converged, true, ""},
		{"converged negative", converged, false, ie},
		{"rejected negative", rejected, false, ""},
		{"rejected positive", rejected, true, ie},
		{"both positive", both, true, ""},
		{"both negative", both, false, ""},
		{"withdrawn after convergence", func(t *testing.T) []step {
			return append(converged(t), withdraw(t, seller, "p1"))
		}, true, ie},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			steps := append(c.prefix(t), commitMsg(t, c.positive).fails(c.want))
			st := run(t, sess, steps...)
			if c.want == "" && phaseOf(t, st) != "Committed" {
				t.Fatalf("phase %s", phaseOf(t, st))
			}
		})
	}
	// Malformed commitment payload; nothing is accepted after the commitment.
	st := run(t, sess, append(converged(t),
		step{buyer, typeCommitment, []byte{0x0a, 0x09}, ie},
		commitMsg(t, true),
		commitMsg(t, true).fails(ie),
		prop(t, seller, "p2").fails(ie))...)
	if view(t, st, sess)["phase"] != "Committed" {
		t.Fatal("not committed")
	}
}

func TestDeterminism(t *testing.T) {
	sess := session(`{"acceptance":{"criterion":"counterparty"},"counter_proposal":{"max_rounds":5}}`,
		buyer, seller, broker)
	script := func(t *testing.T) []step {
		return []step{
			prop(t, seller, "p1"), counter(t, buyer, "p2", "p1"), accept(t, broker, "p2"),
			accept(t, seller, "p2"), accept(t, buyer, "p1"), rejectMsg(t, broker, "p1", false),
			prop(t, broker, "p3"), withdraw(t, broker, "p3"),
		}
	}
	a := run(t, sess, script(t)...)
	b := run(t, sess, script(t)...)
	if !bytes.Equal(a, b) {
		t.Fatal("same history, different state bytes")
	}
	va, err := Mode{}.View(a, &sess)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		vb, _ := Mode{}.View(b, &sess)
		if !bytes.Equal(va, vb) {
			t.Fatal("view not deterministic")
		}
	}
	if phaseOf(t, a) != "Converged" {
		t.Fatalf("phase %s (p2: counterparty of buyer = seller, broker)", phaseOf(t, a))
	}
	// Accepts are stored sorted whatever the arrival order.
	s, _ := decodeState(a)
	for i := 1; i < len(s.Accepts); i++ {
		if s.Accepts[i-1].Participant >= s.Accepts[i].Participant {
			t.Fatalf("accepts not sorted: %+v", s.Accepts)
		}
	}
}

func TestViewShape(t *testing.T) {
	sess := session("{}")
	st := run(t, sess)
	b, err := Mode{}.View(st, &sess)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"Negotiating","accepts":{},"proposals":{},"proposal_order":[],"rejections":[],` +
		`"counter_proposals":0,"converged_proposal_id":"","rules":{"criterion":"all_parties","max_rounds":0,` +
		`"terminal_on_any_reject":false}}`
	if string(b) != want {
		t.Fatalf("view\n%s\nwant\n%s", b, want)
	}
	if _, err := (Mode{}).View([]byte{0xff}, &sess); err == nil {
		t.Fatal("corrupt state viewed")
	}
	// HTML-significant characters are written as they are.
	st = run(t, session("{}", "a&b", seller), prop(t, "a&b", "<p1>"))
	b, _ = Mode{}.View(st, &sess)
	if !bytes.Contains(b, []byte(`"proposer":"a&b"`)) || !bytes.Contains(b, []byte(`"<p1>"`)) {
		t.Fatalf("view %s", b)
	}
}

func TestSubset(t *testing.T) {
	got := map[string]any{"a": []any{1.0, 2.0}, "b": map[string]any{"c": "x", "d": true}}
	for _, c := range []struct {
		want any
		ok   bool
	}{
		{map[string]any{"a": []any{1.0}}, true},
		{map[string]any{"b": map[string]any{"c": "x"}}, true},
		{map[string]any{"a": []any{2.0}}, false},
		{map[string]any{"b": map[string]any{"c": "y"}}, false},
		{map[string]any{"z": 1.0}, false},
		{map[string]any{"a": []any{1.0, 2.0, 3.0}}, false},
	} {
		if ok := fixturetest.Subset(c.want, got, "$") == nil; ok != c.ok {
			t.Fatalf("subset(%v) = %v", c.want, ok)
		}
	}
}
