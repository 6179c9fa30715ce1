// Package policy decides who may commit a session and whether a commitment
// passes governance. A session binds one immutable policy descriptor at
// SessionStart; every decision is a pure function of that descriptor, the
// session's bound context and its accepted history (through the mode's state
// view).
//
// Registry holds the descriptors (RFC-MACP-0012: admission with the per-mode
// rule schemas, binding, the standard profiles, change notification,
// persistence through Persister). Engine is the Governor: it evaluates every
// policy with OPA, the declarative rule sets as input to the built-in Rego
// modules under rego/ (one per mode, plus commitment authority), and
// operator-uploaded Rego (RegisterCustom). Default is the Rego-free stand-in
// that knows only policy.default.
package policy

import (
	"context"
	"strings"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// DefaultID is the policy every session binds when SessionStart names none.
const DefaultID = "policy.default"

// Input is what a governance decision may look at.
type Input struct {
	// Policy is the descriptor the session bound at SessionStart.
	Policy *macpv1.PolicyDescriptor
	// Session is the session's metadata (initiator, participants, …).
	Session *macpv1.SessionMetadata
	// Sender is the authenticated sender of the commitment.
	Sender string
	// Commitment is the decoded commitment being decided.
	Commitment *macpv1.CommitmentPayload
	// ModeState renders the mode's state view as JSON, on demand.
	ModeState func(ctx context.Context) ([]byte, error)
	// NowUnixMs is the host clock at the decision.
	NowUnixMs int64
}

// Decision is the outcome of governance for one commitment.
type Decision struct {
	Allow bool
	// Reasons explain a denial (and may annotate an allow).
	Reasons []string
}

// Governor binds policies to sessions and decides commitments under them.
type Governor interface {
	// Bind resolves the policy_version a SessionStart names for mode; ""
	// binds the default policy. Unknown ids fail with UNKNOWN_POLICY_VERSION,
	// a policy of another mode with INVALID_POLICY_DEFINITION.
	Bind(ctx context.Context, mode, policyVersion string) (*macpv1.PolicyDescriptor, error)
	// Authorize decides whether in.Sender holds commitment authority; a
	// refusal is FORBIDDEN.
	Authorize(ctx context.Context, in *Input) error
	// Govern decides a commitment the mode already found eligible.
	Govern(ctx context.Context, in *Input) (Decision, error)
}

// DefaultDescriptor returns the descriptor of policy.default: any mode, no
// rules, so initiator-only authority and commitments taken at face value.
func DefaultDescriptor() *macpv1.PolicyDescriptor {
	return &macpv1.PolicyDescriptor{
		PolicyId:      DefaultID,
		Mode:          "*",
		Description:   "Default policy: initiator-only commitment authority; outcomes taken at face value.",
		Rules:         "{}",
		SchemaVersion: 1,
	}
}

// Default is the Governor that knows only policy.default. It stands in until
// the Rego engine governs sessions.
type Default struct{}

var _ Governor = Default{}

// Bind accepts "" and "policy.default" and refuses every other id.
func (Default) Bind(_ context.Context, _, policyVersion string) (*macpv1.PolicyDescriptor, error) {
	switch strings.TrimSpace(policyVersion) {
	case "", DefaultID:
		return DefaultDescriptor(), nil
	default:
		return nil, macperr.New(macperr.UnknownPolicyVersion, "policy %q is not registered", policyVersion)
	}
}

// Authorize grants commitment authority to the initiator only.
func (Default) Authorize(_ context.Context, in *Input) error {
	if in.Sender != in.Session.GetInitiator() {
		return macperr.New(macperr.Forbidden, "only the initiator %q may commit this session", in.Session.GetInitiator())
	}
	return nil
}

// Govern allows every eligible commitment at face value.
func (Default) Govern(context.Context, *Input) (Decision, error) {
	return Decision{Allow: true}, nil
}
