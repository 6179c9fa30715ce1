package policy_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

var quiet = slog.New(slog.DiscardHandler)

// An Engine decides commitments under the policy a session bound: first who
// may commit (Authorize), then whether an eligible commitment passes
// governance (Govern), reading the mode's state view only when the rules
// need it.
func Example() {
	ctx := context.Background()
	reg, _ := policy.NewRegistry(ctx, policy.RegistryOptions{Logger: quiet})
	engine, _ := policy.NewEngine(ctx, policy.EngineOptions{Registry: reg, Logger: quiet})

	// A declarative Decision policy: any participant may commit, and a
	// commitment needs a majority of the declared participants.
	_, err := reg.Register(ctx, &macpv1.PolicyDescriptor{
		PolicyId: "policy.team.v1", Mode: policy.ModeDecision, SchemaVersion: 1,
		Description: "majority of the team, any member commits",
		Rules:       `{"voting":{"algorithm":"majority"},"commitment":{"authority":"any_participant"}}`,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	bound, _ := engine.Bind(ctx, policy.ModeDecision, "policy.team.v1")

	in := &policy.Input{
		Policy:     bound,
		Session:    &macpv1.SessionMetadata{SessionId: "s1", Mode: policy.ModeDecision, Initiator: "boss", Participants: []string{"a", "b", "c"}},
		Sender:     "a",
		Commitment: &macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", OutcomePositive: true},
		// The Decision mode's state view: two of three approve p1.
		ModeState: func(context.Context) ([]byte, error) {
			return []byte(`{"phase":"Voting","proposals":{"p1":{"proposal_id":"p1","option":"ship","rationale":"","sender":"a"}},` +
				`"evaluations":[],"objections":[],` +
				`"votes":{"p1":{"a":{"vote":"APPROVE","reason":""},"b":{"vote":"APPROVE","reason":""}}}}`), nil
		},
	}
	fmt.Println("a may commit:", engine.Authorize(ctx, in) == nil)

	d, err := engine.Govern(ctx, in)
	fmt.Println("allowed:", d.Allow, err)

	in.Sender = "outsider"
	fmt.Println("an outsider:", macperr.CodeOf(engine.Authorize(ctx, in)))
	// Output:
	// a may commit: true
	// allowed: true <nil>
	// an outsider: FORBIDDEN
}

// A denial carries the reason of the first rule that decided it.
func ExampleEngine_Govern() {
	ctx := context.Background()
	reg, _ := policy.NewRegistry(ctx, policy.RegistryOptions{Logger: quiet})
	engine, _ := policy.NewEngine(ctx, policy.EngineOptions{Registry: reg, Logger: quiet})
	_, _ = reg.Register(ctx, &macpv1.PolicyDescriptor{
		PolicyId: "policy.unanimous.v1", Mode: policy.ModeDecision, SchemaVersion: 1,
		Description: "every participant approves",
		Rules:       `{"voting":{"algorithm":"unanimous"}}`,
	})
	bound, _ := engine.Bind(ctx, policy.ModeDecision, "policy.unanimous.v1")
	d, _ := engine.Govern(ctx, &policy.Input{
		Policy:     bound,
		Session:    &macpv1.SessionMetadata{SessionId: "s1", Mode: policy.ModeDecision, Initiator: "boss", Participants: []string{"a", "b"}},
		Sender:     "boss",
		Commitment: &macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", OutcomePositive: true},
		ModeState: func(context.Context) ([]byte, error) {
			return []byte(`{"phase":"Voting","proposals":{"p1":{"proposal_id":"p1","option":"ship","rationale":"","sender":"a"}},` +
				`"evaluations":[],"objections":[],"votes":{"p1":{"a":{"vote":"APPROVE","reason":""}}}}`), nil
		},
	})
	fmt.Println(d.Allow, d.Reasons)
	// Output:
	// false [the vote failed (unanimous: 1 approve, 0 reject, 2 declared participant(s) must all approve); a positive commitment is not authorized]
}
