package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Uploaded ("custom") policies are Rego source an operator registers with a
// descriptor. The source must declare
//
//	package concord.custom
//	mode := "<the descriptor's mode>"        # the state view it reads
//	govern := {"allow": bool, "reasons": [string, ...]}
//	authorize := {"allow": bool, "reasons": [...]}   # optional
//
// and may ship test_ rules, which must all pass before the upload is
// accepted. Without authorize, the built-in commitment authority applies to
// the descriptor's rules. The modules read the same input as the built-in
// ones (input.policy is the bound descriptor with its rules parsed) and may
// reuse them (for example data.concord.builtin.decision.verdict). Only deterministic built-ins are
// available: no clock, network or randomness.
//
// The source is content-addressed: its sha256 is recorded in the stored
// descriptor's rules under "concord.rego", so the descriptor a session binds
// names the exact source it is governed by, and the source is kept forever
// (replay needs it) even after the descriptor is unregistered.

// Entry points of an uploaded policy.
const (
	customPackage   = "concord.custom"
	customGovern    = "data.concord.custom.govern"
	customAuthorize = "data.concord.custom.authorize"
	customMode      = "data.concord.custom.mode"
)

// ErrSourceNotFound is returned by a SourceStore for an unknown digest.
var ErrSourceNotFound = errors.New("policy source not found")

// SourceStore keeps uploaded Rego source by digest ("sha256:<hex>").
// Sources are immutable and never deleted.
type SourceStore interface {
	PutSource(ctx context.Context, digest string, source []byte) error
	// Source returns the source with digest, or an error wrapping
	// ErrSourceNotFound.
	Source(ctx context.Context, digest string) ([]byte, error)
}

// MemorySourceStore is a SourceStore in memory.
type MemorySourceStore struct {
	mu sync.RWMutex
	m  map[string][]byte
}

var _ SourceStore = (*MemorySourceStore)(nil)

// NewMemorySourceStore returns an empty MemorySourceStore.
func NewMemorySourceStore() *MemorySourceStore {
	return &MemorySourceStore{m: map[string][]byte{}}
}

// PutSource stores a copy of source.
func (s *MemorySourceStore) PutSource(_ context.Context, digest string, source []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[digest] = slices.Clone(source)
	return nil
}

// Source returns a copy of the stored source.
func (s *MemorySourceStore) Source(_ context.Context, digest string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.m[digest]
	if !ok {
		return nil, fmt.Errorf("%s: %w", digest, ErrSourceNotFound)
	}
	return slices.Clone(b), nil
}

// SourceDigest returns the content address of source.
func SourceDigest(source []byte) string {
	sum := sha256.Sum256(source)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// customDigest returns the source digest a custom descriptor's rules name.
func customDigest(rules ast.Object) (string, bool) {
	t := rules.Get(ast.StringTerm(customRegoKey))
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}

// RegisterCustom admits an uploaded policy: the descriptor (its rules are
// parameters for the source and may be any JSON object; a commitment block
// is checked like the built-in modes'), then the source — it must parse,
// compile against the input contract, declare the entry points and pass
// every test_ rule it ships. Only then are the source stored and the
// descriptor registered, with the source's digest added to its rules. Every
// refusal is INVALID_POLICY_DEFINITION and registers nothing.
func (e *Engine) RegisterCustom(ctx context.Context, d *macpv1.PolicyDescriptor, source []byte) (*macpv1.PolicyDescriptor, error) {
	if e.sources == nil {
		return nil, invalidDefinition("this runtime does not accept uploaded Rego policies (no source store)")
	}
	stored, err := customDescriptor(d, source)
	if err != nil {
		return nil, err
	}
	id := d.GetPolicyId()
	limits := e.uploads.limits
	if len(source) > limits.MaxSourceBytes {
		return nil, invalidDefinition("policy %q: the Rego source is %d bytes, more than the limit of %d", id, len(source), limits.MaxSourceBytes)
	}
	if _, err := e.reg.Get(id); err == nil {
		return nil, invalidDefinition("policy %q is already registered; policy ids are immutable, upload new source under a new id", id)
	}
	if err := e.budgeted(ctx, id, func(ctx context.Context) error { return e.checkCustom(ctx, stored, source) }); err != nil {
		return nil, err
	}
	digest := SourceDigest(source)
	if err := e.sources.PutSource(ctx, digest, source); err != nil {
		return nil, macperr.Wrap(macperr.InternalError, fmt.Errorf("store policy source %s: %w", digest, err), "the policy source could not be stored")
	}
	return e.reg.add(ctx, stored, nil)
}

// budgeted runs work — compiling and testing an upload — with the uploads'
// admission: one at a time (by default), under a time and a memory budget,
// since the server's process is theirs meanwhile. Going over a budget, or
// work failing, is INVALID_POLICY_DEFINITION; a full queue is the
// admission's own error.
func (e *Engine) budgeted(ctx context.Context, id string, work func(context.Context) error) error {
	limits := e.uploads.limits
	release, err := e.uploads.acquire(ctx)
	if err != nil {
		return err
	}
	checkCtx, stop := watchHeap(ctx, limits.MaxTestHeapBytes)
	err = work(checkCtx)
	overBudget := stop()
	// Tests that build large values leave the heap grown; give the memory
	// back to the system before the next upload takes its turn.
	debug.FreeOSMemory()
	release()
	switch {
	case overBudget:
		return invalidDefinition("policy %q: compiling and testing it used more than %d MiB of memory, the limit of one upload", id, limits.MaxTestHeapBytes>>20)
	case errors.Is(err, errTestTimeout):
		return invalidDefinition("policy %q: its shipped tests ran longer than %v, the limit of one upload", id, limits.TestTimeout)
	case err != nil:
		return invalidDefinition("policy %q: %v", id, err)
	}
	return nil
}

// customDescriptor validates an upload's descriptor and returns the copy to
// store, its rules carrying the source digest.
func customDescriptor(d *macpv1.PolicyDescriptor, source []byte) (*macpv1.PolicyDescriptor, error) {
	if d == nil {
		return nil, invalidDefinition("policy descriptor is missing")
	}
	id := d.GetPolicyId()
	if err := checkPolicyID(id); err != nil {
		return nil, err
	}
	if strings.HasPrefix(id, stdPrefix) {
		return nil, invalidDefinition("%s is in the reserved policy.std.* namespace", id)
	}
	switch {
	case strings.TrimSpace(d.GetMode()) == "":
		return nil, invalidDefinition("policy %q: mode is missing (use \"*\" for any mode)", id)
	case strings.TrimSpace(d.GetDescription()) == "":
		return nil, invalidDefinition("policy %q: description is missing", id)
	case d.GetSchemaVersion() < minSchemaVersion || d.GetSchemaVersion() > maxSchemaVersion:
		return nil, invalidDefinition("policy %q: schema_version %d is not supported (1, 2 or 3)", id, d.GetSchemaVersion())
	case len(strings.TrimSpace(string(source))) == 0:
		return nil, invalidDefinition("policy %q: the Rego source is empty", id)
	}
	text := d.GetRules()
	if strings.TrimSpace(text) == "" {
		text = "{}"
	}
	doc, err := parseJSONStrict([]byte(text))
	if err != nil {
		return nil, invalidDefinition("policy %q: rules are not valid JSON: %v", id, err)
	}
	rules, ok := doc.(map[string]any)
	if !ok {
		return nil, invalidDefinition("policy %q: rules must be a JSON object, got %s", id, jsonTypeName(doc))
	}
	if _, reserved := rules[customRegoKey]; reserved {
		return nil, invalidDefinition("policy %q: rules.%s is set by the runtime", id, customRegoKey)
	}
	if c, present := rules["commitment"]; present {
		v := &validation{version: d.GetSchemaVersion()}
		n := commitmentNode()
		// Uploaded policies may keep their own keys next to the authority.
		if obj, ok := c.(map[string]any); ok {
			for k := range obj {
				if _, known := n.keys[k]; !known {
					n.keys[k] = &node{kind: kindAny}
				}
			}
		}
		v.walk("rules.commitment", n, c)
		if v.err == nil {
			checkCommitmentRoles(rules, v)
		}
		if v.err != nil {
			return nil, invalidDefinition("policy %q: %v", id, v.err)
		}
	}
	rules[customRegoKey] = SourceDigest(source)
	b, err := json.Marshal(rules)
	if err != nil {
		return nil, invalidDefinition("policy %q: rules: %v", id, err)
	}
	out := &macpv1.PolicyDescriptor{
		PolicyId:      id,
		Mode:          d.GetMode(),
		Description:   d.GetDescription(),
		Rules:         string(b),
		SchemaVersion: d.GetSchemaVersion(),
	}
	return out, nil
}

// customCapabilities are OPA's built-ins minus every non-deterministic one
// (clock, network, randomness), plus Concord's binary64 helpers.
func customCapabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0]
	for _, b := range caps.Builtins {
		if !b.Nondeterministic {
			kept = append(kept, b)
		}
	}
	caps.Builtins = append(kept, builtinDecls()...)
	caps.AllowNet = []string{}
	return caps
}

// customModules parses an uploaded source for mode and returns it with the
// built-in modules it may reuse, keyed by file name: the authority module
// and the module of mode (all of them for "*"), which read the same state
// view and so compile against the same input contract.
func (e *Engine) customModules(source []byte, mode string) (map[string]*ast.Module, *ast.Module, error) {
	m, err := ast.ParseModuleWithOpts("custom.rego", string(source), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, nil, fmt.Errorf("the Rego source does not parse: %w", err)
	}
	if got := m.Package.Path.String(); got != "data."+customPackage {
		return nil, nil, fmt.Errorf("the Rego source must declare package %s, not %s", customPackage, strings.TrimPrefix(got, "data."))
	}
	mods := map[string]*ast.Module{"custom.rego": m}
	own := governModule(mode)
	for name, bm := range e.modules {
		if mode == AnyMode || name == own || name == "authority" {
			mods["rego/"+name+".rego"] = bm
		}
	}
	return mods, m, nil
}

// newCustomCompiler returns a compiler with the custom capabilities and the
// input contract of mode as schema.
func newCustomCompiler(mode string) *ast.Compiler {
	schemas := ast.NewSchemaSet()
	schemas.Put(ast.SchemaRootRef, inputSchema(mode))
	return ast.NewCompiler().
		WithCapabilities(customCapabilities()).
		WithSchemas(schemas).
		WithUseTypeCheckAnnotations(true).
		WithDefaultRegoVersion(ast.RegoV1)
}

// checkCustom compiles an upload, checks its entry points against the
// descriptor and runs its tests.
func (e *Engine) checkCustom(ctx context.Context, d *macpv1.PolicyDescriptor, source []byte) error {
	mods, m, err := e.customModules(source, d.GetMode())
	if err != nil {
		return err
	}
	c := newCustomCompiler(d.GetMode())
	if c.Compile(mods); c.Failed() {
		hint := ""
		if strings.Contains(c.Errors.Error(), "undefined function") {
			hint = " (uploaded policies may use only deterministic built-ins: no clock, network or randomness)"
		}
		return fmt.Errorf("the Rego source does not compile against the input contract%s: %w", hint, c.Errors)
	}

	// Entry points: mode (a constant naming the descriptor's mode),
	// govern (required) and authorize (optional), neither a function nor a
	// partial set.
	declared, err := constantString(m, "mode")
	if err != nil {
		return err
	}
	if declared != d.GetMode() {
		return fmt.Errorf("the Rego source is written for mode %q but the descriptor's mode is %q", declared, d.GetMode())
	}
	if err := checkEntry(c, customGovern, true); err != nil {
		return err
	}
	if err := checkEntry(c, customAuthorize, false); err != nil {
		return err
	}

	return runShippedTests(ctx, mods, e.uploads.limits.TestTimeout)
}

// constantString returns the value of the rule name := "<string>" in m.
func constantString(m *ast.Module, name string) (string, error) {
	for _, r := range m.Rules {
		if r.Head.Name.String() != name && r.Head.Ref().String() != name {
			continue
		}
		if s, ok := r.Head.Value.Value.(ast.String); ok && r.Body.Equal(ast.NewBody(ast.NewExpr(ast.BooleanTerm(true)))) {
			return string(s), nil
		}
		return "", fmt.Errorf("%s.%s must be a constant string naming the mode the policy reads", customPackage, name)
	}
	return "", fmt.Errorf("the Rego source does not declare %s.%s (the mode it is written for)", customPackage, name)
}

// checkEntry checks that ref is a complete rule whose inferred type can be
// an object of {allow, reasons}.
func checkEntry(c *ast.Compiler, ref string, required bool) error {
	r := ast.MustParseRef(ref)
	rules := c.GetRulesExact(r)
	if len(rules) == 0 {
		if required {
			return fmt.Errorf("the Rego source does not define the entry point %s", strings.TrimPrefix(ref, "data."))
		}
		return nil
	}
	for _, rule := range rules {
		if len(rule.Head.Args) > 0 || rule.Head.RuleKind() != ast.SingleValue {
			return fmt.Errorf("%s must be a single-value rule, not a function or a partial set", strings.TrimPrefix(ref, "data."))
		}
	}
	if tpe := c.TypeEnv.GetByRef(r); !mayBeVerdict(tpe) {
		return fmt.Errorf("%s must be an object {\"allow\": boolean, \"reasons\": [string]}, not %v", strings.TrimPrefix(ref, "data."), tpe)
	}
	return nil
}

// mayBeVerdict reports whether every value of type t can be a verdict
// object: unknown types pass, unions pass when every member does, objects
// pass unless their allow field cannot be a boolean.
func mayBeVerdict(t types.Type) bool {
	switch t := t.(type) {
	case nil:
		return true
	case types.Any:
		if len(t) == 0 { // any value at all
			return true
		}
		for _, member := range t {
			if !mayBeVerdict(member) {
				return false
			}
		}
		return true
	case *types.Object:
		allow := t.Select("allow")
		return allow == nil || types.Contains(allow, types.B)
	default:
		return false
	}
}

// errTestTimeout reports shipped tests that ran out of time.
var errTestTimeout = errors.New("the shipped tests ran out of time")

// runShippedTests runs the test_ rules of the upload, all of them within
// timeout, and fails unless every one passes.
func runShippedTests(ctx context.Context, mods map[string]*ast.Module, timeout time.Duration) error {
	results, err := runTests(ctx, mods, timeout)
	if err != nil {
		return err
	}
	var failed []string
	for _, res := range results {
		switch {
		case res.Passed || res.Skipped:
		case res.Error != "":
			failed = append(failed, fmt.Sprintf("%s: %s", res.Name, res.Error))
		default:
			failed = append(failed, res.Name+" failed")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("shipped tests failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

// runTests runs the test_ rules of an upload's package within timeout and
// reports each one, in the order OPA ran them. A run cut short fails: tests
// it never started have no result, so only a finished run can pass.
func runTests(ctx context.Context, mods map[string]*ast.Module, timeout time.Duration) (results []TestResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", errTestTimeout, err)
		}
	}()
	c := newCustomCompiler(AnyMode)
	ch, err := tester.NewRunner().
		SetCompiler(c).
		AddCustomBuiltins(testerBuiltins()).
		SetDefaultRegoVersion(ast.RegoV1).
		SetTimeout(timeout).
		Filter("^data\\.concord\\.custom\\.").
		SetModules(mods).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("the shipped tests could not run: %w", err)
	}
	var out []TestResult
	for res := range ch {
		r := TestResult{
			Name:    strings.TrimPrefix(res.Package, "data.") + "." + res.Name,
			Passed:  res.Pass(),
			Skipped: res.Skip,
		}
		if res.Error != nil {
			r.Error = res.Error.Error()
		}
		out = append(out, r)
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("the shipped tests did not finish: %w", err)
	}
	return out, nil
}

// preparedCustom prepares the query of an uploaded policy for a session of
// mode: its govern rule, or for authority its authorize rule when it has
// one and the built-in authority module otherwise.
func (e *Engine) preparedCustom(ctx context.Context, d *macpv1.PolicyDescriptor, pv ast.Value, mode, digest string, authority bool) (*preparedQuery, error) {
	if e.sources == nil {
		return nil, fmt.Errorf("policy %q is uploaded Rego but the engine has no source store", d.GetPolicyId())
	}
	source, err := e.sources.Source(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", d.GetPolicyId(), err)
	}
	if got := SourceDigest(source); got != digest {
		return nil, fmt.Errorf("policy %q: stored source has digest %s, want %s", d.GetPolicyId(), got, digest)
	}
	return e.prepareCustomSource(ctx, d, pv, source, mode, authority)
}

// prepareCustomSource prepares the query of an uploaded policy's source
// (see preparedCustom).
func (e *Engine) prepareCustomSource(ctx context.Context, d *macpv1.PolicyDescriptor, pv ast.Value, source []byte, mode string, authority bool) (*preparedQuery, error) {
	digest := SourceDigest(source)
	mods, _, err := e.customModules(source, d.GetMode())
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", d.GetPolicyId(), err)
	}
	c := newCustomCompiler(d.GetMode())
	if c.Compile(mods); c.Failed() {
		return nil, fmt.Errorf("policy %q: compile: %w", d.GetPolicyId(), c.Errors)
	}
	query := customGovern
	if authority {
		if len(c.GetRulesExact(ast.MustParseRef(customAuthorize))) == 0 {
			return e.preparedBuiltin(ctx, "authority", pv, mode), nil
		}
		query = customAuthorize
	}
	opts := append([]func(*rego.Rego){
		rego.Query(query),
		rego.Compiler(c),
		rego.StrictBuiltinErrors(true),
	}, builtinOptions()...)
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy %q: prepare %s: %w", d.GetPolicyId(), query, err)
	}
	e.log.Debug("uploaded policy prepared", "policy_id", d.GetPolicyId(), "digest", digest, "mode", mode, "query", query)
	return &preparedQuery{policy: pv, custom: pq, customState: !authority}, nil
}
