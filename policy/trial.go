package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Trials: evaluating policies without registering them or binding a
// session to them. The admin UI uses them to show an upload's tests before
// it is saved, to ask what a policy version would have decided about a
// recorded commitment, and to measure a candidate's impact on the recorded
// history of its mode. Nothing here changes the registry, the source store
// or a session.

// TestResult is the outcome of one test_ rule of an uploaded policy.
type TestResult struct {
	// Name is the rule's full name, e.g. "concord.custom.test_allows".
	Name    string
	Passed  bool
	Skipped bool
	// Error is set when the test could not be evaluated.
	Error string
}

// TestCustom checks an upload as RegisterCustom would — descriptor,
// parsing, compilation against the input contract, entry points — and runs
// every test_ rule it ships, reporting each one. It registers and stores
// nothing. A problem before the tests (the upload would be refused whatever
// they say) is INVALID_POLICY_DEFINITION.
func (e *Engine) TestCustom(ctx context.Context, d *macpv1.PolicyDescriptor, source []byte) ([]TestResult, error) {
	stored, err := customDescriptor(d, source)
	if err != nil {
		return nil, err
	}
	if limit := e.uploads.limits.MaxSourceBytes; len(source) > limit {
		return nil, invalidDefinition("policy %q: the Rego source is %d bytes, more than the limit of %d", d.GetPolicyId(), len(source), limit)
	}
	mods, err := e.compileCustom(stored, source)
	if err != nil {
		return nil, invalidDefinition("policy %q: %v", d.GetPolicyId(), err)
	}
	// Tests cost what an upload's tests cost: they share its admission.
	var results []TestResult
	err = e.budgeted(ctx, d.GetPolicyId(), func(ctx context.Context) error {
		var err error
		results, err = runTests(ctx, mods, e.uploads.limits.TestTimeout)
		return err
	})
	return results, err
}

// compileCustom is checkCustom without the tests.
func (e *Engine) compileCustom(d *macpv1.PolicyDescriptor, source []byte) (map[string]*ast.Module, error) {
	mods, m, err := e.customModules(source, d.GetMode())
	if err != nil {
		return nil, err
	}
	c := newCustomCompiler(d.GetMode())
	if c.Compile(mods); c.Failed() {
		return nil, fmt.Errorf("the Rego source does not compile against the input contract: %w", c.Errors)
	}
	declared, err := constantString(m, "mode")
	if err != nil {
		return nil, err
	}
	if declared != d.GetMode() {
		return nil, fmt.Errorf("the Rego source is written for mode %q but the descriptor's mode is %q", declared, d.GetMode())
	}
	if err := checkEntry(c, customGovern, true); err != nil {
		return nil, err
	}
	if err := checkEntry(c, customAuthorize, false); err != nil {
		return nil, err
	}
	return mods, nil
}

// Verdict is what a policy decides about one commitment: first commitment
// authority (the kernel answers FORBIDDEN without it), then governance
// (POLICY_DENIED on a denial).
type Verdict struct {
	// Authorized reports whether the sender holds commitment authority.
	Authorized bool
	// AuthorityReasons explain a refusal of authority.
	AuthorityReasons []string
	// Governance is the decision on the commitment; meaningful only when
	// Authorized.
	Governance Decision
}

// Allowed reports whether the commitment would have been accepted.
func (v Verdict) Allowed() bool { return v.Authorized && v.Governance.Allow }

// Decide evaluates in under in.Policy as the kernel does for a Commitment
// the mode found eligible — authority, then governance — and records
// nothing. in.Policy may be any registered or bound descriptor; uploaded
// Rego is read from the source store.
func (e *Engine) Decide(ctx context.Context, in *Input) (Verdict, error) {
	var v Verdict
	if err := e.Authorize(ctx, in); err != nil {
		if macperr.CodeOf(err) != macperr.Forbidden {
			return Verdict{}, err
		}
		v.AuthorityReasons = strings.Split(macperr.As(err).Message, "; ")
		return v, nil
	}
	v.Authorized = true
	d, err := e.Govern(ctx, in)
	if err != nil {
		return Verdict{}, macperr.Wrap(macperr.InternalError, err, "the policy could not be evaluated")
	}
	v.Governance = d
	return v, nil
}

// Candidate is a policy that is not registered: a declarative descriptor
// or a descriptor with Rego source, admitted by the same rules as Register
// and RegisterCustom (except the uploaded tests, which TestCustom runs).
type Candidate struct {
	e      *Engine
	desc   *macpv1.PolicyDescriptor
	source []byte // nil for a declarative candidate
}

// NewCandidate checks d (and source, when it is not empty) and returns a
// candidate that can decide commitments. Refusals are
// INVALID_POLICY_DEFINITION.
func (e *Engine) NewCandidate(d *macpv1.PolicyDescriptor, source []byte) (*Candidate, error) {
	if len(strings.TrimSpace(string(source))) == 0 {
		if _, err := ValidateDescriptor(d); err != nil {
			return nil, err
		}
		return &Candidate{e: e, desc: d}, nil
	}
	stored, err := customDescriptor(d, source)
	if err != nil {
		return nil, err
	}
	if _, err := e.compileCustom(stored, source); err != nil {
		return nil, invalidDefinition("policy %q: %v", d.GetPolicyId(), err)
	}
	return &Candidate{e: e, desc: stored, source: source}, nil
}

// Descriptor returns the descriptor the candidate would be registered with
// (an upload's rules carry its source digest).
func (c *Candidate) Descriptor() *macpv1.PolicyDescriptor { return c.desc }

// Decide evaluates in under the candidate (in.Policy is ignored), as
// Engine.Decide does.
func (c *Candidate) Decide(ctx context.Context, in *Input) (Verdict, error) {
	if c.desc.GetMode() != AnyMode && c.desc.GetMode() != in.Session.GetMode() {
		return Verdict{}, invalidDefinition("policy %q governs %s, not %s", c.desc.GetPolicyId(), c.desc.GetMode(), in.Session.GetMode())
	}
	trial := *in
	trial.Policy = c.desc
	if c.source == nil {
		return c.e.Decide(ctx, &trial)
	}
	rules, err := parseRulesForEval(c.desc.GetRules())
	if err != nil {
		return Verdict{}, invalidDefinition("policy %q: %v", c.desc.GetPolicyId(), err)
	}
	pv := policyValue(c.desc, rules)
	var v Verdict
	authority, err := c.e.prepareCustomSource(ctx, c.desc, pv, c.source, in.Session.GetMode(), true)
	if err != nil {
		return Verdict{}, macperr.Wrap(macperr.InternalError, err, "the candidate could not be prepared")
	}
	a, err := authority.eval(ctx, &trial)
	if err != nil {
		return Verdict{}, macperr.Wrap(macperr.InternalError, err, "the candidate's authority could not be evaluated")
	}
	if !a.Allow {
		v.AuthorityReasons = a.Reasons
		return v, nil
	}
	v.Authorized = true
	govern, err := c.e.prepareCustomSource(ctx, c.desc, pv, c.source, in.Session.GetMode(), false)
	if err != nil {
		return Verdict{}, macperr.Wrap(macperr.InternalError, err, "the candidate could not be prepared")
	}
	if v.Governance, err = govern.eval(ctx, &trial); err != nil {
		return Verdict{}, macperr.Wrap(macperr.InternalError, err, "the candidate could not be evaluated")
	}
	return v, nil
}

// Source returns the Rego source of an uploaded policy descriptor, and
// false for a declarative one.
func (e *Engine) Source(ctx context.Context, d *macpv1.PolicyDescriptor) ([]byte, bool, error) {
	rules, err := parseRulesForEval(d.GetRules())
	if err != nil {
		return nil, false, fmt.Errorf("policy %q: %w", d.GetPolicyId(), err)
	}
	digest, ok := customDigest(rules)
	if !ok {
		return nil, false, nil
	}
	if e.sources == nil {
		return nil, true, errors.New("the engine has no source store")
	}
	src, err := e.sources.Source(ctx, digest)
	if err != nil {
		return nil, true, fmt.Errorf("policy %q: %w", d.GetPolicyId(), err)
	}
	return src, true, nil
}
