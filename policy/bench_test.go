package policy

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/modes-wasm/decision"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// benchDecision builds a Decision session with n declared participants,
// one proposal, one evaluation, one critical objection and one ballot per
// participant (every third a REJECT), and returns the Decision mode's state
// view of it: what the engine reads for a Commitment.
func benchDecision(tb testing.TB, n int) (*macpv1.SessionMetadata, []byte) {
	tb.Helper()
	meta := &macpv1.SessionMetadata{SessionId: "s", Mode: ModeDecision, Initiator: "boss"}
	for i := range n {
		meta.Participants = append(meta.Participants, fmt.Sprintf("agent://p%02d", i))
	}
	sess := &guest.Session{Mode: ModeDecision, Initiator: "boss", Participants: meta.Participants}
	mode := decision.Mode{}
	step := func(state []byte, sender, typ, payloadType string, payload map[string]any) []byte {
		raw, err := encodeFixturePayload(payloadType, payload)
		if err != nil {
			tb.Fatal(err)
		}
		res := mode.Step(&guest.StepRequest{State: state, Session: *sess,
			Envelope: guest.Envelope{Mode: ModeDecision, MessageType: typ, Sender: sender, Payload: raw}})
		if !res.Accepted {
			tb.Fatalf("%s: %s", typ, res.Message)
		}
		return res.State
	}
	state := mode.Step(&guest.StepRequest{Session: *sess, Envelope: guest.Envelope{MessageType: decision.MsgSessionStart, Sender: "boss"}}).State
	p0 := meta.Participants[0]
	state = step(state, p0, decision.MsgProposal, "macp.modes.decision.v1.ProposalPayload",
		map[string]any{"proposal_id": "p1", "option": "deploy", "rationale": "ready"})
	state = step(state, p0, decision.MsgEvaluation, "macp.modes.decision.v1.EvaluationPayload",
		map[string]any{"proposal_id": "p1", "recommendation": "APPROVE", "confidence": 0.9, "reason": "tests pass"})
	state = step(state, p0, decision.MsgObjection, "macp.modes.decision.v1.ObjectionPayload",
		map[string]any{"proposal_id": "p1", "severity": "critical", "reason": "retention"})
	for i, p := range meta.Participants {
		vote := "APPROVE"
		if i%3 == 2 {
			vote = "REJECT"
		}
		state = step(state, p, decision.MsgVote, "macp.modes.decision.v1.VotePayload",
			map[string]any{"proposal_id": "p1", "vote": vote, "reason": "ok"})
	}
	view, err := mode.View(state, sess)
	if err != nil {
		tb.Fatal(err)
	}
	return meta, view
}

// fullRules exercises every step of the Decision algorithm: veto check,
// evaluation prerequisite, tally, percentage quorum and the mapping.
const fullRules = `{
	"voting": {"algorithm": "majority", "threshold": 0.5, "quorum": {"type": "percentage", "value": 50}},
	"objection_handling": {"critical_severity_vetoes": true, "veto_threshold": 2, "critical_objection_action": "finalize_decline"},
	"evaluation": {"required_before_voting": true, "minimum_confidence": 0.5},
	"commitment": {"authority": "any_participant", "require_vote_quorum": true}
}`

// weightedRules gives every participant of benchDecision weight 1 except
// the first, which weighs 2.
func weightedRules(n int) string {
	w := make([]string, n)
	for i := range n {
		weight := 1
		if i == 0 {
			weight = 2
		}
		w[i] = fmt.Sprintf("%q: %d", fmt.Sprintf("agent://p%02d", i), weight)
	}
	return `{"voting": {"algorithm": "weighted", "threshold": 0.5, "weights": {` + strings.Join(w, ", ") +
		`}, "quorum": {"type": "count", "value": 2}}, "commitment": {"authority": "any_participant", "require_vote_quorum": true}}`
}

// decisionCase is one rule set of the Decision benchmarks.
type decisionCase struct {
	name, policy, rules string
	participants        int
	// allow is the verdict the rule set gives benchDecision's ballots.
	allow bool
}

func decisionCases() []decisionCase {
	return []decisionCase{
		{"full/participants=3", "policy.bench.full", fullRules, 3, true},
		{"full/participants=10", "policy.bench.full", fullRules, 10, true},
		{"full/participants=50", "policy.bench.full", fullRules, 50, true},
		{"std.majority/participants=10", "policy.std.majority", "", 10, true},
		{"default/participants=10", DefaultID, "", 10, true},
		// One rule set per voting algorithm, at 50 participants.
		{"default/participants=50", DefaultID, "", 50, true},
		{"std.majority/participants=50", "policy.std.majority", "", 50, true},
		{"std.supermajority/participants=50", "policy.std.supermajority", "", 50, true},
		// Every third ballot is a REJECT: unanimity fails and the positive
		// commitment is denied, with the tally in the reason.
		{"std.unanimous/participants=50", "policy.std.unanimous", "", 50, false},
		{"weighted/participants=50", "policy.bench.weighted", weightedRules(50), 50, true},
		{"plurality/participants=50", "policy.bench.plurality", `{"voting": {"algorithm": "plurality"}}`, 50, true},
	}
}

// decisionInput registers tc's policy on a fresh engine and returns the
// engine and the Input of one positive Decision Commitment by the
// initiator.
func decisionInput(b *testing.B, tc decisionCase) (*Engine, *Input) {
	ctx := context.Background()
	e, reg := newTestEngine(b)
	if tc.rules != "" {
		register(b, reg, desc(tc.policy, ModeDecision, 3, tc.rules))
	}
	p, err := reg.Bind(ctx, ModeDecision, tc.policy)
	if err != nil {
		b.Fatal(err)
	}
	meta, view := benchDecision(b, tc.participants)
	in := &Input{Policy: p, Session: meta, Sender: "boss",
		Commitment: &macpv1.CommitmentPayload{CommitmentId: "c1", Action: "decision.selected", OutcomePositive: true},
		ModeState:  func(context.Context) ([]byte, error) { return view, nil }}
	if err := e.Authorize(ctx, in); err != nil {
		b.Fatal(err)
	}
	if d, err := e.Govern(ctx, in); err != nil || d.Allow != tc.allow {
		b.Fatalf("%+v %v, want allow %v", d, err, tc.allow)
	}
	return e, in
}

// BenchmarkDecisionCommitment is the engine's cost for one Decision
// Commitment with warm prepared queries: Authorize plus Govern, including
// turning the mode's state view (JSON) into Rego input. Rendering the view
// is the mode's cost and is done before the loop.
func BenchmarkDecisionCommitment(b *testing.B) {
	for _, tc := range decisionCases() {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			e, in := decisionInput(b, tc)
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				if err := e.Authorize(ctx, in); err != nil {
					b.Fatal(err)
				}
				if _, err := e.Govern(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkDecisionCommitmentFreshGoroutine is BenchmarkDecisionCommitment
// with every Commitment decided on a new goroutine, as a server decides
// each request on the request's goroutine: the evaluation starts on a
// small stack every time.
func BenchmarkDecisionCommitmentFreshGoroutine(b *testing.B) {
	for _, tc := range decisionCases() {
		if !strings.HasSuffix(tc.name, "participants=50") {
			continue
		}
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			e, in := decisionInput(b, tc)
			errs := make(chan error)
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				go func() {
					if err := e.Authorize(ctx, in); err != nil {
						errs <- err
						return
					}
					_, err := e.Govern(ctx, in)
					errs <- err
				}()
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkCustomGovern is an uploaded policy (twoManRule, which reuses the
// built-in Decision verdict) deciding the 50-participant session.
func BenchmarkCustomGovern(b *testing.B) {
	ctx := context.Background()
	e, _ := newTestEngine(b)
	p, err := e.RegisterCustom(ctx, customDesc("policy.bench.two-man", ModeDecision,
		`{"min_approvers": 2, "voting": {"algorithm": "majority"}, "commitment": {"authority": "any_participant"}}`), []byte(twoManRule))
	if err != nil {
		b.Fatal(err)
	}
	meta, view := benchDecision(b, 50)
	in := &Input{Policy: p, Session: meta, Sender: "boss",
		Commitment: &macpv1.CommitmentPayload{OutcomePositive: true},
		ModeState:  func(context.Context) ([]byte, error) { return view, nil }}
	if d, err := e.Govern(ctx, in); err != nil || !d.Allow {
		b.Fatalf("%+v %v", d, err)
	}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if _, err := e.Govern(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkAuthorize is the commitment-authority check alone.
func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	e, reg := newTestEngine(b)
	p := register(b, reg, desc("policy.bench.any", ModeDecision, 3, `{"commitment":{"authority":"any_participant"}}`))
	meta, _ := benchDecision(b, 10)
	in := &Input{Policy: p, Session: meta, Sender: meta.Participants[5], Commitment: &macpv1.CommitmentPayload{}}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if err := e.Authorize(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkGovern is Decision governance alone (full rules, 10 voters).
func BenchmarkGovern(b *testing.B) {
	ctx := context.Background()
	e, reg := newTestEngine(b)
	p := register(b, reg, desc("policy.bench.full", ModeDecision, 3, fullRules))
	meta, view := benchDecision(b, 10)
	in := &Input{Policy: p, Session: meta, Sender: "boss",
		Commitment: &macpv1.CommitmentPayload{OutcomePositive: true},
		ModeState:  func(context.Context) ([]byte, error) { return view, nil }}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if _, err := e.Govern(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// cpuTime is the CPU time the process has used. The benchmarks report it
// per operation next to wall time because other work on a shared machine
// inflates wall time but not CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/float64(time.Microsecond), "cpu-µs/op")
}
