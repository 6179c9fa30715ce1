package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// referenceDecision evaluates the built-in module's verdict as a whole on
// the whole input (inputValue, the state view converted entirely): what
// the engine's staged evaluation must reproduce, errors included. The
// Decision, Proposal and Task modules read the mode's state view, the
// others never did.
func referenceDecision(t *testing.T, e *Engine, module string, in *Input) (Decision, error) {
	t.Helper()
	ctx := context.Background()
	d := descriptorOf(in)
	rules, err := parseRulesForEval(d.GetRules())
	if err != nil {
		return Decision{}, err
	}
	var state ast.Value = ast.NewObject()
	if in.ModeState != nil && slices.Contains([]string{"decision", "proposal", "task"}, module) {
		raw, err := in.ModeState(ctx)
		if err != nil {
			return Decision{}, err
		}
		if state, err = stateValue(raw, nil); err != nil {
			return Decision{}, err
		}
	}
	return evalVerdict(ctx, e.builtin[module].reference, inputValue(in, policyValue(d, rules), state), in)
}

// sameOutcome fails unless got and want are the same decision, or both
// errors.
func sameOutcome(t *testing.T, what string, got Decision, gotErr error, want Decision, wantErr error) {
	t.Helper()
	switch {
	case (gotErr != nil) != (wantErr != nil):
		t.Fatalf("%s: error %v, the module as a whole: error %v", what, gotErr, wantErr)
	case gotErr == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// randomSession is a random Decision session at a Commitment.
type randomSession struct {
	rules        string
	version      uint32
	participants []string
	sender       string
	positive     bool
	view         []byte
	canonical    bool // view and rules as the mode and admission produce them
}

var (
	namePool      = []string{"orch", "a", "b", "c", "d", "Z", "é", "agent://p1", "agent://p10"}
	votePool      = []string{"APPROVE", "APPROVE", "REJECT", "ABSTAIN", "maybe"}
	severityPool  = []string{"critical", "critical", "high", "low", "CRITICAL"}
	recPool       = []string{"APPROVE", "REJECT", "REVIEW", "BLOCK"}
	confPool      = []any{0, 0.1, 0.5, 0.7, 0.69999999, 1, 0.30000000000000004, 1e-7}
	thresholdPool = []any{0.5, 0.6, 0.6666666666666666, 0.67, 1, 0.3, 0.75}
	quorumPool    = []any{0, 1, 2, 3, 50, 66.7, 100, 0.5}
	weightPool    = []any{1, 2, 0.5, 0.1, 0.2, 0.3, 0.7, 3, 0.3333333333333333}
	// oddValues replace a rule value now and then: rule sets admission
	// refuses, whose evaluation (and errors) must still be the module's.
	oddValues = []any{"x", -1, nil, true, []any{1}, map[string]any{}, 1e300}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func sometimes(r *rand.Rand, p float64) bool { return r.Float64() < p }

// odd returns v, or now and then a value of another kind.
func odd(r *rand.Rand, v any, canonical *bool) any {
	if sometimes(r, 0.03) {
		*canonical = false
		return pick(r, oddValues)
	}
	return v
}

func randomDecisionRules(r *rand.Rand, version uint32, canonical *bool) map[string]any {
	rules := map[string]any{}
	if sometimes(r, 0.8) {
		voting := map[string]any{}
		algorithms := []string{"none", "majority", "supermajority", "unanimous", "weighted", "plurality"}
		if sometimes(r, 0.05) {
			*canonical = false
			algorithms = append(algorithms, "ranked")
		}
		alg := pick(r, algorithms)
		voting["algorithm"] = odd(r, alg, canonical)
		if sometimes(r, 0.7) {
			voting["threshold"] = odd(r, pick(r, thresholdPool), canonical)
		}
		if sometimes(r, 0.6) {
			q := map[string]any{"type": odd(r, pick(r, []string{"count", "percentage"}), canonical), "value": odd(r, pick(r, quorumPool), canonical)}
			voting["quorum"] = q
		}
		if alg == "weighted" || sometimes(r, 0.1) {
			w := map[string]any{}
			for _, n := range namePool {
				if sometimes(r, 0.6) {
					w[n] = odd(r, pick(r, weightPool), canonical)
				}
			}
			voting["weights"] = w
		}
		rules["voting"] = odd(r, voting, canonical)
	}
	if sometimes(r, 0.4) {
		o := map[string]any{"critical_severity_vetoes": odd(r, sometimes(r, 0.7), canonical)}
		if sometimes(r, 0.5) {
			o["veto_threshold"] = odd(r, 1+r.IntN(3), canonical)
		}
		if version >= 2 && sometimes(r, 0.6) || sometimes(r, 0.05) {
			o["critical_objection_action"] = odd(r, pick(r, []string{"deny", "hold", "finalize_decline"}), canonical)
		}
		rules["objection_handling"] = o
	}
	if sometimes(r, 0.4) {
		ev := map[string]any{"required_before_voting": odd(r, sometimes(r, 0.7), canonical)}
		if sometimes(r, 0.6) {
			ev["minimum_confidence"] = odd(r, pick(r, confPool), canonical)
		}
		rules["evaluation"] = ev
	}
	if sometimes(r, 0.6) {
		c := map[string]any{}
		if sometimes(r, 0.7) {
			c["require_vote_quorum"] = odd(r, sometimes(r, 0.6), canonical)
		}
		if version >= 2 && sometimes(r, 0.4) {
			c["allow_decline_over_approval"] = odd(r, sometimes(r, 0.5), canonical)
		}
		if sometimes(r, 0.5) {
			c["authority"] = pick(r, []string{"initiator_only", "any_participant", "designated_role"})
			if c["authority"] == "designated_role" || sometimes(r, 0.1) {
				c["designated_roles"] = []string{pick(r, namePool), pick(r, namePool)}
			}
		}
		rules["commitment"] = c
	}
	return rules
}

// decisionViewJSON renders a Decision state view the way the mode does
// (every member present, keys sorted), then, when canonical is off,
// perhaps bends it out of shape.
func randomDecisionView(r *rand.Rand, participants []string, canonical *bool) []byte {
	voters := append(slices.Clone(participants), "outsider")
	votes := map[string]any{}
	var ballots []any
	proposals := map[string]any{}
	var order []string
	for _, pid := range []string{"p1", "p2", "p10"} {
		if !sometimes(r, 0.6) {
			continue
		}
		order = append(order, pid)
		proposals[pid] = map[string]any{"proposal_id": pid, "option": "o", "rationale": "r", "sender": "orch"}
		byVoter := map[string]any{}
		for _, v := range voters {
			if sometimes(r, 0.6) {
				vote := pick(r, votePool)
				byVoter[v] = map[string]any{"vote": vote, "reason": "because \"quoted\" \\ é"}
				ballots = append(ballots, map[string]any{"proposal_id": pid, "voter": v, "vote": vote, "reason": ""})
			}
		}
		votes[pid] = byVoter
	}
	var objections, evaluations []any
	for range r.IntN(4) {
		objections = append(objections, map[string]any{"proposal_id": "p1", "severity": pick(r, severityPool), "reason": "no", "sender": pick(r, voters)})
	}
	for range r.IntN(4) {
		evaluations = append(evaluations, map[string]any{"proposal_id": "p1", "recommendation": pick(r, recPool), "confidence": pick(r, confPool), "reason": "", "sender": pick(r, voters)})
	}
	view := map[string]any{
		"ballots": ballots, "evaluations": evaluations, "objections": objections, "phase": "Voting",
		"proposal_order": order, "proposals": proposals, "votes": votes,
	}
	if ballots == nil {
		view["ballots"] = []any{}
	}
	if evaluations == nil {
		view["evaluations"] = []any{}
	}
	if objections == nil {
		view["objections"] = []any{}
	}
	if sometimes(r, 0.15) {
		*canonical = false
		bendView(r, view)
	}
	b, err := json.Marshal(view)
	if err != nil {
		panic(err)
	}
	if !*canonical && sometimes(r, 0.3) {
		b = bendText(r, b)
	}
	return b
}

// bendView changes the view's shape in one of the ways the Go tallies
// refuse and the module as a whole still reads.
func bendView(r *rand.Rand, view map[string]any) {
	switch r.IntN(7) {
	case 0:
		view["votes"] = map[string]any{"p1": map[string]any{"a": "APPROVE"}}
	case 1:
		view["votes"] = nil
	case 2:
		view["objections"] = map[string]any{"x": map[string]any{"severity": "critical"}}
	case 3:
		view["evaluations"] = []any{map[string]any{"recommendation": "APPROVE", "confidence": "0.9"}}
	case 4:
		view["evaluations"] = []any{map[string]any{"recommendation": 5, "confidence": 0.9}}
	case 5:
		delete(view, "votes")
	case 6:
		view["votes"] = map[string]any{"p1": map[string]any{"a": map[string]any{"vote": []any{"APPROVE"}}}}
	}
}

// bendText changes the view's text: a duplicate key, a truncation, an
// empty view, or another top-level value.
func bendText(r *rand.Rand, b []byte) []byte {
	switch r.IntN(5) {
	case 0:
		return []byte(strings.Replace(string(b), `"votes":{`, `"votes":{"p9":{"a":{"vote":"APPROVE"}}},"votes":{`, 1))
	case 1:
		return b[:len(b)/2]
	case 2:
		return nil
	case 3:
		return []byte(`[1, 2]`)
	default:
		return []byte(strings.Replace(string(b), `"orch":{`, `"orch":{"vote":"REJECT","x":1},"orch":{`, 1))
	}
}

func newRandomSession(r *rand.Rand) randomSession {
	s := randomSession{version: uint32(1 + r.IntN(3)), positive: sometimes(r, 0.6), canonical: true}
	rules := randomDecisionRules(r, s.version, &s.canonical)
	b, err := json.Marshal(rules)
	if err != nil {
		panic(err)
	}
	s.rules = string(b)
	for _, n := range namePool {
		if sometimes(r, 0.5) {
			s.participants = append(s.participants, n)
		}
	}
	r.Shuffle(len(s.participants), func(i, j int) { s.participants[i], s.participants[j] = s.participants[j], s.participants[i] })
	if len(s.participants) > 0 && sometimes(r, 0.05) {
		s.participants = append(s.participants, s.participants[0])
	}
	s.sender = pick(r, append([]string{"orch", "", "stranger"}, namePool...))
	s.view = randomDecisionView(r, s.participants, &s.canonical)
	return s
}

func (s randomSession) input() *Input {
	return &Input{
		Policy:     &macpv1.PolicyDescriptor{PolicyId: "policy.random", Mode: ModeDecision, Description: "random", Rules: s.rules, SchemaVersion: s.version},
		Session:    &macpv1.SessionMetadata{SessionId: "s", Mode: ModeDecision, Initiator: "orch", Participants: s.participants},
		Sender:     s.sender,
		Commitment: &macpv1.CommitmentPayload{CommitmentId: "c", OutcomePositive: s.positive},
		ModeState:  func(context.Context) ([]byte, error) { return s.view, nil },
	}
}

// TestStagedDecisionsMatchTheModule decides random Decision sessions with
// the engine (fixed verdicts, Go tallies, staged evaluation, fallbacks) and
// with the modules evaluated as a whole, and requires the same Decision or
// an error from both, for Govern and for Authorize. On canonical sessions
// it also requires that the staged path was the one taken.
func TestStagedDecisionsMatchTheModule(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t)
	n := 1500
	if testing.Short() {
		n = 200
	}
	r := rand.New(rand.NewPCG(1, 2))
	staged, fixed, fallback := 0, 0, 0
	for i := range n {
		s := newRandomSession(r)
		in := s.input()
		what := fmt.Sprintf("session %d (rules %s, v%d, participants %q, sender %q, positive %v, view %.300s)",
			i, s.rules, s.version, s.participants, s.sender, s.positive, s.view)

		got, gotErr := e.Govern(ctx, in)
		want, wantErr := referenceDecision(t, e, "decision", in)
		sameOutcome(t, "Govern "+what, got, gotErr, want, wantErr)

		in.ModeState = nil
		authErr := e.Authorize(ctx, in)
		ref, refErr := referenceDecision(t, e, "authority", in)
		if refErr != nil {
			t.Fatalf("authority reference: %v", refErr)
		}
		if (authErr == nil) != ref.Allow {
			t.Fatalf("Authorize %s: %v, the module as a whole: %+v", what, authErr, ref)
		}
		if authErr != nil && !strings.Contains(authErr.Error(), strings.Join(ref.Reasons, "; ")) {
			t.Fatalf("Authorize %s: %v, the module as a whole: %+v", what, authErr, ref)
		}

		in.ModeState = func(context.Context) ([]byte, error) { return s.view, nil }
		q, err := e.prepared(ctx, in, false)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case q.stage.fixed != nil:
			fixed++
		case q.stage.constants != nil:
			if _, ok := decisionTallies(in, s.view, q.stage.constants); ok {
				staged++
			} else {
				fallback++
				if s.canonical {
					t.Fatalf("the Go tallies declined a canonical session: %s", what)
				}
			}
		default:
			fallback++
			if s.canonical {
				t.Fatalf("stage 1 failed for canonical rules: %s", what)
			}
		}
	}
	t.Logf("%d sessions: %d fixed verdicts, %d staged, %d on the reference evaluation", n, fixed, staged, fallback)
	if staged < n/3 || fixed == 0 || fallback == 0 {
		t.Fatalf("the random sessions exercise too little: %d fixed, %d staged, %d fallback", fixed, staged, fallback)
	}
}

// TestGoTalliesAgree compares each Go tally with the value of the rule it
// replaces, evaluated by OPA on the same input and view, on random
// canonical sessions (Decision tallies, and the authority's facts about
// the sender).
func TestGoTalliesAgree(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t)
	asTerm := rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })
	rules := map[string]rego.PreparedEvalQuery{}
	for module, gt := range goTallies {
		for _, rule := range gt.rules {
			pq, err := rego.New(append([]func(*rego.Rego){
				rego.Query("x = " + builtinPrefix + module + "." + rule),
				rego.ParsedModule(e.modules[module]),
				rego.StrictBuiltinErrors(true),
			}, builtinOptions()...)...).PrepareForEval(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rules[module+"."+rule] = pq
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for i := 0; checked < 400 && i < 4000; i++ {
		s := newRandomSession(r)
		if !s.canonical {
			continue
		}
		in := s.input()
		if sometimes(r, 0.1) {
			in.Commitment = nil // the control plane asks without one
		}
		state, err := stateValue(s.view, nil)
		if err != nil {
			t.Fatal(err)
		}
		for module, gt := range goTallies {
			q, err := e.prepared(ctx, in, module == "authority")
			if err != nil {
				t.Fatal(err)
			}
			if q.stage.constants == nil {
				continue // a fixed verdict: no tallies
			}
			tallies, ok := gt.compute(in, s.view, q.stage.constants)
			if !ok {
				t.Fatalf("%s declined a canonical session: %s %s", module, s.rules, s.view)
			}
			input := inputValue(in, q.policy, state)
			for _, rule := range gt.rules {
				rs, err := rules[module+"."+rule].Eval(ctx, rego.EvalParsedInput(input), asTerm)
				if err != nil {
					t.Fatalf("%s.%s: %v", module, rule, err)
				}
				got := tallies.Get(ast.StringTerm(rule))
				if len(rs) != 1 {
					t.Fatalf("%s.%s is undefined in Rego, %v in Go (rules %s, view %s)", module, rule, got, s.rules, s.view)
				}
				if want := rs[0].Bindings["x"].(*ast.Term); ast.Compare(got, want) != 0 {
					t.Fatalf("%s.%s: Go %v, Rego %v (rules %s, participants %q, sender %q, view %s)",
						module, rule, got, want, s.rules, s.participants, s.sender, s.view)
				}
			}
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d sessions checked", checked)
	}
}

// FuzzDecisionTallies checks, on arbitrary views, that the Go tallies
// either decline or agree with the module evaluated as a whole, for a
// fixed policy of every algorithm.
func FuzzDecisionTallies(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		f.Add(newRandomSession(r).view)
	}
	f.Add([]byte(`{"votes":{"p1":{"a":{"vote":"APPROVE"},"a":{"vote":"REJECT"}}}}`))
	f.Add([]byte(`{"votes":{"p1":{"\u0061":{"vote":"APP\u0052OVE"}}},"objections":[{"severity":"crit\u0069cal"}]}`))
	f.Add([]byte(`{"votes":{"p1":{"a\xff":{"vote":"APPROVE"}}}}`))
	ctx := context.Background()
	e, _ := newTestEngine(f)
	policies := []string{
		`{"voting":{"algorithm":"majority","quorum":{"type":"percentage","value":50}},"commitment":{"require_vote_quorum":true},"evaluation":{"required_before_voting":true,"minimum_confidence":0.5}}`,
		`{"voting":{"algorithm":"unanimous"},"objection_handling":{"critical_severity_vetoes":true}}`,
		`{"voting":{"algorithm":"weighted","threshold":0.6,"weights":{"a":2,"b":0.1,"c":0.2}}}`,
	}
	f.Fuzz(func(t *testing.T, view []byte) {
		for _, rules := range policies {
			for _, positive := range []bool{true, false} {
				in := randomSession{rules: rules, version: 3, participants: []string{"a", "b", "orch"}, sender: "orch", positive: positive, view: view}.input()
				got, gotErr := e.Govern(ctx, in)
				want, wantErr := referenceDecision(t, e, "decision", in)
				sameOutcome(t, fmt.Sprintf("rules %s, view %q", rules, view), got, gotErr, want, wantErr)
			}
		}
	})
}

// TestStagedOtherModes compares every other mode's governance with its
// module evaluated as a whole, over the rule sets and states that decide
// it.
func TestStagedOtherModes(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t)
	cases := []struct {
		mode   string
		rules  []string
		states []string
	}{
		{ModeProposal, []string{`{}`, `{"counter_proposal":{"max_rounds":2}}`, `{"counter_proposal":{"max_rounds":0}}`, `{"counter_proposal":{"max_rounds":"x"}}`},
			[]string{`{"counter_proposals":1}`, `{"counter_proposals":3}`, `{}`, ``, `{"counter_proposals":"9"}`, `{"counter_proposals":`}},
		{ModeTask, []string{`{}`, `{"completion":{"require_output":true}}`, `{"completion":{"require_output":false}}`, `{"completion":{"require_output":"yes"}}`},
			[]string{`{"output_present":true}`, `{"output_present":false}`, `{}`, ``, `[`}},
		{ModeQuorum, []string{`{}`, `{"threshold":{"type":"n_of_m","value":3}}`}, []string{`{}`, `{`}},
		{ModeHandoff, []string{`{}`}, []string{`{}`}},
		{"ext.vendor.v1", []string{`{}`}, []string{`{}`}},
	}
	for _, tc := range cases {
		for _, rules := range tc.rules {
			for _, state := range tc.states {
				for _, positive := range []bool{true, false} {
					in := &Input{
						Policy:     &macpv1.PolicyDescriptor{PolicyId: "policy.other", Mode: tc.mode, Description: "d", Rules: rules, SchemaVersion: 1},
						Session:    session(tc.mode, "boss", "a"),
						Sender:     "boss",
						Commitment: &macpv1.CommitmentPayload{OutcomePositive: positive},
						ModeState:  stateJSON(state),
					}
					got, gotErr := e.Govern(ctx, in)
					want, wantErr := referenceDecision(t, e, governModule(tc.mode), in)
					sameOutcome(t, fmt.Sprintf("%s rules %s state %s positive %v", tc.mode, rules, state, positive), got, gotErr, want, wantErr)
				}
			}
		}
	}
}
