package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// twoManRule reuses the built-in Decision governance and adds one rule: a
// positive commitment needs approvals from two distinct voters. Its
// parameter comes from the descriptor's rules.
const twoManRule = `package concord.custom

mode := "macp.mode.decision.v1"

default min_approvers := 2

min_approvers := input.policy.rules.min_approvers

approvers := {voter |
	some by_voter in input.state.votes
	some voter, b in by_voter
	b.vote == "APPROVE"
}

extra contains sprintf("%d distinct approvers needed, %d found", [min_approvers, count(approvers)]) if {
	input.commitment.outcome_positive
	count(approvers) < min_approvers
}

base := data.concord.builtin.decision.verdict

govern := {"allow": base.allow, "reasons": base.reasons} if count(extra) == 0
else := {"allow": false, "reasons": array.concat(sort(extra), [r | some r in base.reasons; not base.allow])}

state(voters) := {"votes": {"p1": {v: {"vote": "APPROVE", "reason": ""} | some v in voters}}}

policy := {"schema_version": 3, "rules": {"voting": {"algorithm": "majority"}}}

test_two_approvers_pass if {
	govern.allow with input as {"policy": policy, "commitment": {"outcome_positive": true}, "session": {"participants": ["a", "b"]}, "state": state(["a", "b"])}
}

test_one_approver_fails if {
	not govern.allow with input as {"policy": policy, "commitment": {"outcome_positive": true}, "session": {"participants": ["a", "b"]}, "state": state(["a"])}
}
`

func customDesc(id, mode, rules string) *macpv1.PolicyDescriptor {
	return &macpv1.PolicyDescriptor{PolicyId: id, Mode: mode, Description: "uploaded policy", Rules: rules, SchemaVersion: 3}
}

func TestCustomPolicyUploadAndGovern(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	stored, err := e.RegisterCustom(ctx, customDesc("policy.acme.two-man", ModeDecision, `{"min_approvers":2,"commitment":{"authority":"any_participant"}}`), []byte(twoManRule))
	if err != nil {
		t.Fatal(err)
	}
	digest := SourceDigest([]byte(twoManRule))
	if !strings.Contains(stored.Rules, digest) {
		t.Fatalf("stored rules %s do not name the source digest", stored.Rules)
	}
	bound, err := e.Bind(ctx, ModeDecision, "policy.acme.two-man")
	if err != nil {
		t.Fatal(err)
	}
	sess := session(ModeDecision, "boss", "a", "b")
	govern := func(ballots ...string) Decision {
		t.Helper()
		d, err := e.Govern(ctx, &Input{Policy: bound, Session: sess, Sender: "a",
			Commitment: &macpv1.CommitmentPayload{OutcomePositive: true}, ModeState: stateJSON(decisionState(ballots...))})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := govern("a:APPROVE"); d.Allow || !strings.Contains(strings.Join(d.Reasons, ";"), "2 distinct approvers") {
		t.Errorf("one approver: %+v", d)
	}
	if d := govern("a:APPROVE", "b:APPROVE"); !d.Allow {
		t.Errorf("two approvers: %+v", d)
	}
	// Without an authorize rule the built-in authority reads the rules.
	if err := e.Authorize(ctx, &Input{Policy: bound, Session: sess, Sender: "a"}); err != nil {
		t.Errorf("participant refused under any_participant: %v", err)
	}
	wantCode(t, e.Authorize(ctx, &Input{Policy: bound, Session: sess, Sender: "x"}), macperr.Forbidden)

	// Unregistering changes nothing for a session that bound the policy:
	// the source stays addressable by its digest.
	if err := reg.Unregister(ctx, "policy.acme.two-man"); err != nil {
		t.Fatal(err)
	}
	e2, err := NewEngine(context.Background(), EngineOptions{Registry: reg, Sources: e.sources, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e2.Govern(ctx, &Input{Policy: bound, Session: sess, Sender: "a",
		Commitment: &macpv1.CommitmentPayload{OutcomePositive: true}, ModeState: stateJSON(decisionState("a:APPROVE", "b:APPROVE"))})
	if err != nil || !d.Allow {
		t.Fatalf("replay after unregister: %+v %v", d, err)
	}
}

func TestCustomAuthorizeEntryPoint(t *testing.T) {
	ctx := context.Background()
	e, _ := newTestEngine(t)
	src := `package concord.custom

mode := "ext.vendor.v1"

govern := {"allow": true, "reasons": []}

authorize := {"allow": true, "reasons": []} if input.sender in {"ops", input.session.initiator}
else := {"allow": false, "reasons": [sprintf("%s is not on the ops rota", [input.sender])]}
`
	if _, err := e.RegisterCustom(ctx, customDesc("policy.acme.ops", "ext.vendor.v1", `{}`), []byte(src)); err != nil {
		t.Fatal(err)
	}
	bound, _ := e.Bind(ctx, "ext.vendor.v1", "policy.acme.ops")
	sess := session("ext.vendor.v1", "boss", "a")
	if err := e.Authorize(ctx, &Input{Policy: bound, Session: sess, Sender: "ops"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.Authorize(ctx, &Input{Policy: bound, Session: sess, Sender: "a"}), macperr.Forbidden, "ops rota")
}

func TestCustomPolicyRefusals(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		d      *macpv1.PolicyDescriptor
		source string
		want   []string
	}{
		{
			name:   "syntax error",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\ngovern := {\"allow\": true,\n",
			want:   []string{"does not parse"},
		},
		{
			name:   "missing entry point",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\nverdict := {\"allow\": true, \"reasons\": []}\n",
			want:   []string{"entry point concord.custom.govern"},
		},
		{
			name: "failing shipped test",
			d:    customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\ngovern := {\"allow\": true, \"reasons\": []}\n\n" +
				"test_denies_everything if {\n\tnot govern.allow\n}\n",
			want: []string{"shipped tests failed", "test_denies_everything"},
		},
		{
			name:   "wrong mode",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.task.v1\"\n\ngovern := {\"allow\": true, \"reasons\": []}\n",
			want:   []string{`written for mode "macp.mode.task.v1"`, ModeDecision},
		},
		{
			name:   "mode not declared",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\ngovern := {\"allow\": true, \"reasons\": []}\n",
			want:   []string{"does not declare concord.custom.mode"},
		},
		{
			name:   "wrong package",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package acme\n\nmode := \"macp.mode.decision.v1\"\n\ngovern := {\"allow\": true, \"reasons\": []}\n",
			want:   []string{"package concord.custom"},
		},
		{
			name:   "input contract",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\ngovern := {\"allow\": count(input.state.ballot_box) == 0, \"reasons\": []}\n",
			want:   []string{"input contract", "ballot_box"},
		},
		{
			name:   "non-deterministic built-in",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\ngovern := {\"allow\": time.now_ns() > 0, \"reasons\": []}\n",
			want:   []string{"time.now_ns"},
		},
		{
			name:   "entry point is a partial set",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\ngovern contains \"x\" if true\n",
			want:   []string{"single-value rule"},
		},
		{
			name:   "entry point of the wrong type",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\ngovern := true\n",
			want:   []string{"must be an object"},
		},
		{
			name:   "std namespace",
			d:      customDesc("policy.std.custom", ModeDecision, `{}`),
			source: twoManRule,
			want:   []string{"reserved"},
		},
		{
			name:   "runtime key in rules",
			d:      customDesc("policy.acme.x", ModeDecision, `{"concord.rego":"sha256:00"}`),
			source: twoManRule,
			want:   []string{"set by the runtime"},
		},
		{
			name:   "bad authority",
			d:      customDesc("policy.acme.x", ModeDecision, `{"commitment":{"authority":"designated_role"}}`),
			source: twoManRule,
			want:   []string{"designated_roles"},
		},
		{
			name:   "empty source",
			d:      customDesc("policy.acme.x", ModeDecision, `{}`),
			source: "  \n",
			want:   []string{"empty"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, reg := newTestEngine(t)
			_, err := e.RegisterCustom(ctx, tc.d, []byte(tc.source))
			wantCode(t, err, macperr.InvalidPolicyDefinition, tc.want...)
			t.Log(err)
			if _, err := reg.Get(tc.d.PolicyId); err == nil {
				t.Error("the policy was registered")
			}
			if _, err := e.sources.Source(ctx, SourceDigest([]byte(tc.source))); err == nil {
				t.Error("the source was stored")
			}
		})
	}
}

func TestCustomPolicyDuplicateID(t *testing.T) {
	ctx := context.Background()
	e, reg := newTestEngine(t)
	register(t, reg, desc("policy.acme.x", ModeDecision, 1, `{}`))
	_, err := e.RegisterCustom(ctx, customDesc("policy.acme.x", ModeDecision, `{}`), []byte(twoManRule))
	wantCode(t, err, macperr.InvalidPolicyDefinition, "already registered")
}

func TestCustomPolicyNeedsSourceStore(t *testing.T) {
	reg := newTestRegistry(t, RegistryOptions{})
	e, err := NewEngine(context.Background(), EngineOptions{Registry: reg, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.RegisterCustom(context.Background(), customDesc("policy.acme.x", ModeDecision, `{}`), []byte(twoManRule))
	wantCode(t, err, macperr.InvalidPolicyDefinition, "source store")
}
