package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func TestTestCustomReportsEachTest(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	failing := twoManRule + "\ntest_always_fails if { false }\n"
	results, err := e.TestCustom(ctx, customDesc("policy.acme.two-man", ModeDecision, `{}`), []byte(failing))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range results {
		got[r.Name] = r.Passed
	}
	want := map[string]bool{
		"concord.custom.test_two_approvers_pass": true,
		"concord.custom.test_one_approver_fails": true,
		"concord.custom.test_always_fails":       false,
	}
	for name, pass := range want {
		if p, ok := got[name]; !ok || p != pass {
			t.Errorf("test %s: got passed=%t (reported %t), want %t; all %+v", name, p, ok, pass, results)
		}
	}
	if len(results) != len(want) {
		t.Errorf("got %d results, want %d: %+v", len(results), len(want), results)
	}
	if _, err := reg.Get("policy.acme.two-man"); err == nil {
		t.Fatal("TestCustom registered the policy")
	}
}

func TestTestCustomRefusesWhatRegisterCustomRefuses(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t)
	cases := map[string]struct {
		desc   *macpv1.PolicyDescriptor
		source string
		want   string
	}{
		"syntax":       {customDesc("p.a", ModeDecision, `{}`), "package concord.custom\nmode := ", "does not parse"},
		"wrong mode":   {customDesc("p.b", ModeTask, `{}`), twoManRule, "written for mode"},
		"no govern":    {customDesc("p.c", ModeDecision, `{}`), "package concord.custom\nmode := \"macp.mode.decision.v1\"\n", "govern"},
		"bad rules":    {customDesc("p.d", ModeDecision, `[1]`), twoManRule, "JSON object"},
		"no id":        {customDesc("", ModeDecision, `{}`), twoManRule, "policy_id"},
		"empty source": {customDesc("p.e", ModeDecision, `{}`), "  ", "empty"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.TestCustom(ctx, c.desc, []byte(c.source))
			if macperr.CodeOf(err) != macperr.InvalidPolicyDefinition || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want INVALID_POLICY_DEFINITION mentioning %q", err, c.want)
			}
		})
	}
}

func TestDecideAuthorityThenGovernance(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	majority := register(t, reg, desc("policy.t.majority", ModeDecision, 1, `{"voting":{"algorithm":"majority","threshold":0.5}}`))
	sess := session(ModeDecision, "boss", "a", "b")
	in := func(sender, state string) *Input {
		return &Input{Policy: majority, Session: sess, Sender: sender,
			Commitment: &macpv1.CommitmentPayload{OutcomePositive: true}, ModeState: stateJSON(state)}
	}
	v, err := e.Decide(ctx, in("a", decisionState("a:APPROVE")))
	if err != nil {
		t.Fatal(err)
	}
	if v.Authorized || len(v.AuthorityReasons) == 0 || v.Allowed() {
		t.Fatalf("a participant is not the initiator: got %+v", v)
	}
	v, err = e.Decide(ctx, in("boss", decisionState("a:APPROVE", "b:APPROVE")))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Allowed() {
		t.Fatalf("two approvals under majority: got %+v", v)
	}
	v, err = e.Decide(ctx, in("boss", decisionState("a:REJECT", "b:REJECT")))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Authorized || v.Governance.Allow || len(v.Governance.Reasons) == 0 {
		t.Fatalf("two rejections under majority: got %+v", v)
	}
}

func TestCandidateDecidesWithoutRegistering(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	sess := session(ModeDecision, "boss", "a", "b")
	oneApproval := &Input{Session: sess, Sender: "boss",
		Commitment: &macpv1.CommitmentPayload{OutcomePositive: true}, ModeState: stateJSON(decisionState("a:APPROVE"))}

	rego, err := e.NewCandidate(customDesc("policy.acme.two-man-v2", ModeDecision, `{"min_approvers":2}`), []byte(twoManRule))
	if err != nil {
		t.Fatal(err)
	}
	v, err := rego.Decide(ctx, oneApproval)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Authorized || v.Governance.Allow || !strings.Contains(strings.Join(v.Governance.Reasons, ";"), "2 distinct approvers needed, 1 found") {
		t.Fatalf("Rego candidate on one approval: got %+v", v)
	}
	if !strings.Contains(rego.Descriptor().GetRules(), SourceDigest([]byte(twoManRule))) {
		t.Fatalf("candidate descriptor %s does not name its source", rego.Descriptor().GetRules())
	}

	declarative, err := e.NewCandidate(desc("policy.t.any-v2", ModeDecision, 1, `{"commitment":{"authority":"any_participant"}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	asParticipant := *oneApproval
	asParticipant.Sender = "a"
	if v, err = declarative.Decide(ctx, &asParticipant); err != nil || !v.Allowed() {
		t.Fatalf("declarative candidate with any_participant authority: %+v, %v", v, err)
	}

	if _, err := declarative.Decide(ctx, &Input{Session: session(ModeTask, "boss"), Sender: "boss"}); macperr.CodeOf(err) != macperr.InvalidPolicyDefinition {
		t.Fatalf("candidate of another mode: got %v, want INVALID_POLICY_DEFINITION", err)
	}
	if _, err := e.NewCandidate(desc("policy.t.bad", ModeDecision, 1, `{"voting":{"algorithm":"coin-toss"}}`), nil); macperr.CodeOf(err) != macperr.InvalidPolicyDefinition {
		t.Fatalf("invalid rules: got %v, want INVALID_POLICY_DEFINITION", err)
	}
	if n := len(reg.List(ModeDecision)); n != 4 { // policy.default and the three standard profiles
		t.Fatalf("the registry serves %d decision policies, want 4: candidates must not register", n)
	}
}

func TestSourceOfUploadedPolicy(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	stored, err := e.RegisterCustom(ctx, customDesc("policy.acme.src", ModeDecision, `{}`), []byte(twoManRule))
	if err != nil {
		t.Fatal(err)
	}
	src, custom, err := e.Source(ctx, stored)
	if err != nil || !custom || string(src) != twoManRule {
		t.Fatalf("Source of an upload: custom=%t err=%v, source matches=%t", custom, err, string(src) == twoManRule)
	}
	def, _ := reg.Get(DefaultID)
	if src, custom, err := e.Source(ctx, def); err != nil || custom || src != nil {
		t.Fatalf("Source of a declarative policy: %q %t %v", src, custom, err)
	}
}
