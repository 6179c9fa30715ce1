package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func newTestEngine(t testing.TB) (*Engine, *Registry) {
	t.Helper()
	reg := newTestRegistry(t, RegistryOptions{})
	e, err := NewEngine(context.Background(), EngineOptions{Registry: reg, Logger: quietLog, Sources: NewMemorySourceStore()})
	if err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func register(t testing.TB, reg *Registry, d *macpv1.PolicyDescriptor) *macpv1.PolicyDescriptor {
	t.Helper()
	got, err := reg.Register(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func session(mode, initiator string, participants ...string) *macpv1.SessionMetadata {
	return &macpv1.SessionMetadata{SessionId: "s1", Mode: mode, Initiator: initiator, Participants: participants}
}

func stateJSON(s string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(s), nil }
}

func TestAuthorize(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	anyP := register(t, reg, desc("policy.t.any", AnyMode, 1, `{"commitment":{"authority":"any_participant"}}`))
	roles := register(t, reg, desc("policy.t.roles", ModeTask, 1, `{"commitment":{"authority":"designated_role","designated_roles":["auditor"]}}`))
	cases := []struct {
		name   string
		policy *macpv1.PolicyDescriptor
		mode   string
		sender string
		ok     bool
	}{
		{"no policy: initiator", nil, ModeDecision, "boss", true},
		{"no policy: participant", nil, ModeDecision, "a", false},
		{"default: outsider", DefaultDescriptor(), ModeTask, "x", false},
		{"any_participant: initiator", anyP, ModeProposal, "boss", true},
		{"any_participant: participant", anyP, ModeHandoff, "a", true},
		{"any_participant: outsider", anyP, ModeQuorum, "x", false},
		{"any_participant: multi_round stays initiator-only", anyP, ModeMultiRound, "a", false},
		{"any_participant: extension stays initiator-only", anyP, "ext.vendor.v1", "a", false},
		{"any_participant: extension initiator", anyP, "ext.vendor.v1", "boss", true},
		{"designated_role: role", roles, ModeTask, "auditor", true},
		{"designated_role: initiator is not a role", roles, ModeTask, "boss", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{Policy: tc.policy, Session: session(tc.mode, "boss", "a", "b"), Sender: tc.sender,
				Commitment: &macpv1.CommitmentPayload{OutcomePositive: true}}
			err := e.Authorize(ctx, in)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				wantCode(t, err, macperr.Forbidden, tc.sender)
			}
			// The control plane asks without a commitment.
			in.Commitment = nil
			if err2 := e.Authorize(ctx, in); (err2 == nil) != (err == nil) {
				t.Errorf("without a commitment: %v, with: %v", err2, err)
			}
		})
	}
}

func TestGovernOtherModes(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	prop := register(t, reg, desc("policy.t.prop", ModeProposal, 1, `{"counter_proposal":{"max_rounds":2}}`))
	task := register(t, reg, desc("policy.t.task", ModeTask, 1, `{"completion":{"require_output":true}}`))
	hand := register(t, reg, desc("policy.t.hand", ModeHandoff, 1, `{"acceptance":{"implicit_accept_timeout_ms":10}}`))
	quor := register(t, reg, desc("policy.t.quor", ModeQuorum, 1, `{"threshold":{"type":"n_of_m","value":3}}`))
	ext := register(t, reg, desc("policy.t.ext", "ext.vendor.v1", 1, `{"anything":true}`))
	cases := []struct {
		name     string
		policy   *macpv1.PolicyDescriptor
		mode     string
		state    string
		positive bool
		allow    bool
	}{
		{"proposal within max_rounds", prop, ModeProposal, `{"phase":"Converged","counter_proposals":2}`, true, true},
		{"proposal beyond max_rounds", prop, ModeProposal, `{"phase":"Converged","counter_proposals":3}`, true, false},
		{"task with output", task, ModeTask, `{"phase":"Completed","output_present":true}`, true, true},
		{"task without output", task, ModeTask, `{"phase":"Completed","output_present":false}`, true, false},
		{"task failure without output", task, ModeTask, `{"phase":"Failed","output_present":false}`, false, true},
		{"task default policy", nil, ModeTask, `{"output_present":false}`, true, true},
		{"handoff", hand, ModeHandoff, `{}`, true, true},
		{"quorum", quor, ModeQuorum, `{}`, false, true},
		{"extension", ext, "ext.vendor.v1", `{}`, true, true},
		{"multi_round default", nil, ModeMultiRound, `{}`, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Govern(ctx, &Input{Policy: tc.policy, Session: session(tc.mode, "boss", "a"), Sender: "boss",
				Commitment: &macpv1.CommitmentPayload{OutcomePositive: tc.positive}, ModeState: stateJSON(tc.state)})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow {
				t.Fatalf("allow = %v (%q), want %v", d.Allow, d.Reasons, tc.allow)
			}
			if !d.Allow && len(d.Reasons) == 0 {
				t.Error("a denial without reasons")
			}
		})
	}
}

func TestGovernReadsStateOnlyWhenNeeded(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t)
	calls := 0
	fail := func(context.Context) ([]byte, error) { calls++; return nil, errors.New("view unavailable") }
	if _, err := e.Govern(ctx, &Input{Session: session(ModeHandoff, "boss"), Sender: "boss", ModeState: fail}); err != nil {
		t.Fatalf("handoff governance read the state: %v", err)
	}
	if calls != 0 {
		t.Errorf("state read %d times", calls)
	}
	_, err := e.Govern(ctx, &Input{Session: session(ModeDecision, "boss"), Sender: "boss",
		Commitment: &macpv1.CommitmentPayload{}, ModeState: fail})
	if err == nil || !strings.Contains(err.Error(), "view unavailable") {
		t.Fatalf("err = %v", err)
	}
	_, err = e.Govern(ctx, &Input{Session: session(ModeDecision, "boss"), Sender: "boss",
		Commitment: &macpv1.CommitmentPayload{}, ModeState: stateJSON(`{"votes":`)})
	if err == nil {
		t.Fatal("a malformed state view was accepted")
	}
}

// decisionState renders a Decision state view with the given ballots
// ("voter:VOTE" on p1).
func decisionState(ballots ...string) string {
	var votes []string
	for _, b := range ballots {
		voter, vote, _ := strings.Cut(b, ":")
		votes = append(votes, fmt.Sprintf(`%q:{"vote":%q,"reason":""}`, voter, vote))
	}
	return `{"phase":"Voting","proposals":{"p1":{"proposal_id":"p1","option":"x","rationale":"","sender":"a"}},` +
		`"evaluations":[],"objections":[],"votes":{"p1":{` + strings.Join(votes, ",") + `}}}`
}

func TestStdProfileSemantics(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	super, _ := reg.Bind(ctx, ModeDecision, "policy.std.supermajority")
	maj, _ := reg.Bind(ctx, ModeDecision, "policy.std.majority")
	cases := []struct {
		policy   *macpv1.PolicyDescriptor
		ballots  []string
		positive bool
		allow    bool
	}{
		{super, []string{"a:APPROVE", "b:APPROVE", "c:REJECT"}, true, true},
		{super, []string{"a:APPROVE", "b:REJECT"}, true, false},
		{super, []string{"a:APPROVE"}, true, false}, // quorum count 2
		{super, nil, true, false},                   // v1 empty tally under require_vote_quorum
		{maj, []string{"a:APPROVE", "b:REJECT"}, true, true},
		{maj, []string{"a:REJECT", "b:REJECT"}, false, true},
		{maj, []string{"a:ABSTAIN"}, false, false},
	}
	for i, tc := range cases {
		d, err := e.Govern(ctx, &Input{Policy: tc.policy, Session: session(ModeDecision, "boss", "a", "b", "c"), Sender: "boss",
			Commitment: &macpv1.CommitmentPayload{OutcomePositive: tc.positive}, ModeState: stateJSON(decisionState(tc.ballots...))})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow != tc.allow {
			t.Errorf("case %d (%s %v): allow = %v %q", i, tc.policy.PolicyId, tc.ballots, d.Allow, d.Reasons)
		}
	}
}

func TestPreparedQueriesAreShared(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	p := register(t, reg, desc("policy.t.maj", ModeDecision, 3, `{"voting":{"algorithm":"majority"}}`))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ballot := "a:APPROVE"
			if i%2 == 1 {
				ballot = "a:REJECT"
			}
			in := &Input{Policy: p, Session: session(ModeDecision, "boss", "a", "b"), Sender: "boss",
				Commitment: &macpv1.CommitmentPayload{OutcomePositive: true}, ModeState: stateJSON(decisionState(ballot))}
			if err := e.Authorize(ctx, in); err != nil {
				errs <- err
				return
			}
			d, err := e.Govern(ctx, in)
			if err != nil {
				errs <- err
				return
			}
			if d.Allow != (i%2 == 0) {
				errs <- fmt.Errorf("goroutine %d: allow = %v", i, d.Allow)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.cache.Len(); n != 2 {
		t.Errorf("%d prepared queries, want 2 (authority and decision for one policy)", n)
	}
	// Equal content under another id is another policy.
	other := register(t, reg, desc("policy.t.maj2", ModeDecision, 3, `{"voting":{"algorithm":"majority"}}`))
	if _, err := e.Govern(ctx, &Input{Policy: other, Session: session(ModeDecision, "boss"), Commitment: &macpv1.CommitmentPayload{}, ModeState: stateJSON(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if n := e.cache.Len(); n != 3 {
		t.Errorf("%d prepared queries, want 3", n)
	}
}

func TestQueryCacheEvicts(t *testing.T) {
	c := newQueryCache(2)
	build := func() (*preparedQuery, error) { return &preparedQuery{}, nil }
	keys := [][32]byte{{1}, {2}, {3}}
	for _, k := range keys {
		if _, err := c.get(k, build); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
	if _, ok := c.byKey[keys[0]]; ok {
		t.Error("the least recently used entry survived")
	}
	failed := errors.New("boom")
	if _, err := c.get([32]byte{9}, func() (*preparedQuery, error) { return nil, failed }); !errors.Is(err, failed) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := c.byKey[[32]byte{9}]; ok {
		t.Error("a failed preparation was cached")
	}
}

func TestUnparsableStoredRulesFailClosed(t *testing.T) {
	e, _ := newTestEngine(t)
	bad := desc("policy.t.bad", ModeDecision, 1, `{"voting":`)
	err := e.Authorize(context.Background(), &Input{Policy: bad, Session: session(ModeDecision, "boss"), Sender: "boss"})
	wantCode(t, err, macperr.InternalError)
	if _, err := e.Govern(context.Background(), &Input{Policy: bad, Session: session(ModeDecision, "boss"), Sender: "boss"}); err == nil {
		t.Fatal("governed under unparsable rules")
	}
}

func TestFloat64Builtins(t *testing.T) {
	num := func(s string) *ast.Term { return ast.NewTerm(ast.Number(s)) }
	cmp := func(a, b string) int {
		t.Helper()
		r, err := float64Cmp(rego.BuiltinContext{}, num(a), num(b))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := r.Value.(ast.Number).Int()
		return n
	}
	div := func(a, b string) string {
		t.Helper()
		r, err := float64Div(rego.BuiltinContext{}, num(a), num(b))
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Value.(ast.Number))
	}
	// Decimal comparison would say 0.30000000000000001 > 0.3; binary64
	// says they are the same number.
	if got := cmp("0.30000000000000001", "0.3"); got != 0 {
		t.Errorf("cmp = %d", got)
	}
	if got := cmp(div("2", "3"), "0.6666666666666666"); got != 0 {
		t.Errorf("2/3 vs 0.6666666666666666: %d", got)
	}
	if got := cmp(div("66", "100"), "0.6666666666666666"); got != -1 {
		t.Errorf("66/100: %d", got)
	}
	if got := cmp(div("67", "100"), "0.6666666666666666"); got != 1 {
		t.Errorf("67/100: %d", got)
	}
	arr := ast.ArrayTerm(num("0.1"), num("0.2"))
	r, err := float64Sum(rego.BuiltinContext{}, arr)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.Value.(ast.Number)); got != "0.30000000000000004" {
		t.Errorf("0.1+0.2 = %s, want the binary64 sum", got)
	}
	if _, err := float64Div(rego.BuiltinContext{}, num("1"), num("0")); err == nil {
		t.Error("division by zero")
	}
	if _, err := float64Cmp(rego.BuiltinContext{}, num("1e400"), num("1")); err == nil {
		t.Error("1e400 accepted")
	}
	if _, err := float64Cmp(rego.BuiltinContext{}, ast.StringTerm("1"), num("1")); err == nil {
		t.Error("string accepted")
	}
}

func TestReadVerdict(t *testing.T) {
	if _, err := readVerdict("yes"); err == nil {
		t.Error("non-object verdict")
	}
	if _, err := readVerdict(map[string]any{"allow": "true"}); err == nil {
		t.Error("string allow")
	}
	if _, err := readVerdict(map[string]any{"allow": false, "reasons": []any{1}}); err == nil {
		t.Error("numeric reason")
	}
	d, err := readVerdict(map[string]any{"allow": false})
	if err != nil || len(d.Reasons) != 1 {
		t.Errorf("a reasonless denial must still carry a reason: %+v %v", d, err)
	}
}
