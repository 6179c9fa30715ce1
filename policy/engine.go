package policy

import (
	"container/list"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The built-in Rego modules: one per mode, the shared authority module and
// a trivial one for extension modes. Their tests (*_test.rego) sit next to
// them and are not embedded.
//
//go:embed rego/authority.rego rego/decision.rego rego/proposal.rego rego/task.rego rego/handoff.rego rego/quorum.rego rego/extension.rego
var builtinRego embed.FS

// builtinPrefix is the package prefix of the built-in modules; each
// module's entry point is its verdict rule.
const builtinPrefix = "data.concord.builtin."

// governModule names the built-in module that governs commitments of mode.
// What the module reads of the input, the mode's state view included, the
// engine learns from the module itself (analysis.go).
func governModule(mode string) string {
	switch mode {
	case ModeDecision:
		return "decision"
	case ModeProposal:
		return "proposal"
	case ModeTask:
		return "task"
	case ModeHandoff:
		return "handoff"
	case ModeQuorum:
		return "quorum"
	default:
		return "extension"
	}
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	// Registry resolves policy versions for Bind. Required.
	Registry *Registry
	// Sources holds uploaded Rego source by digest; needed only for
	// uploaded (custom) policies.
	Sources SourceStore
	Logger  *slog.Logger
	// CacheSize bounds the per-policy entries kept (default 1024).
	CacheSize int
	// Uploads bound the admission of uploaded Rego (RegisterCustom).
	Uploads UploadLimits
}

// Engine is the Governor that evaluates every policy with OPA: the
// declarative rule sets as input to the built-in Rego modules, uploaded
// policies as their own Rego. The built-in queries are prepared once per
// engine; each policy's descriptor is converted to a Rego value, and its
// policy constants evaluated, once per content digest (stages.go); uploaded
// policies are compiled once per content digest. All methods are safe for
// concurrent use.
type Engine struct {
	reg     *Registry
	sources SourceStore
	log     *slog.Logger
	modules map[string]*ast.Module     // built-in module name -> parsed module
	builtin map[string]*builtinQueries // built-in module name -> its plan and queries
	cache   *queryCache
	uploads *admission
}

var _ Governor = (*Engine)(nil)

// NewEngine parses and prepares the built-in modules and returns an Engine.
func NewEngine(ctx context.Context, opts EngineOptions) (*Engine, error) {
	if opts.Registry == nil {
		return nil, errors.New("policy engine: a Registry is required")
	}
	e := &Engine{
		reg:     opts.Registry,
		sources: opts.Sources,
		log:     opts.Logger,
		modules: map[string]*ast.Module{},
		cache:   newQueryCache(opts.CacheSize),
		uploads: newAdmission(opts.Uploads),
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	entries, err := builtinRego.ReadDir("rego")
	if err != nil {
		return nil, fmt.Errorf("policy engine: built-in modules: %w", err)
	}
	for _, ent := range entries {
		file := path.Join("rego", ent.Name())
		src, err := builtinRego.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("policy engine: %s: %w", file, err)
		}
		m, err := ast.ParseModuleWithOpts(file, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policy engine: %s: %w", file, err)
		}
		e.modules[strings.TrimSuffix(ent.Name(), ".rego")] = m
	}
	if e.builtin, err = planBuiltins(ctx, e.modules); err != nil {
		return nil, fmt.Errorf("policy engine: built-in modules: %w", err)
	}
	return e, nil
}

// Bind resolves policyVersion through the registry (see Registry.Bind).
func (e *Engine) Bind(ctx context.Context, mode, policyVersion string) (*macpv1.PolicyDescriptor, error) {
	return e.reg.Bind(ctx, mode, policyVersion)
}

// Authorize decides whether in.Sender holds commitment authority under the
// session's policy; a refusal is FORBIDDEN. in.Commitment may be nil (the
// control plane asks the same question for Cancel, Suspend and Resume).
func (e *Engine) Authorize(ctx context.Context, in *Input) error {
	growStack()
	q, err := e.prepared(ctx, in, true)
	if err != nil {
		return macperr.Wrap(macperr.InternalError, err, "the commitment authority could not be evaluated")
	}
	d, err := q.eval(ctx, in)
	if err != nil {
		return macperr.Wrap(macperr.InternalError, err, "the commitment authority could not be evaluated")
	}
	if !d.Allow {
		return macperr.New(macperr.Forbidden, "%s", strings.Join(d.Reasons, "; "))
	}
	return nil
}

// Govern decides a commitment the mode already found eligible. A denial is
// Decision{Allow: false} with its reasons; an allow carries its basis as
// the one reason. An error means the policy could not be evaluated.
func (e *Engine) Govern(ctx context.Context, in *Input) (Decision, error) {
	growStack()
	q, err := e.prepared(ctx, in, false)
	if err != nil {
		return Decision{}, err
	}
	return q.eval(ctx, in)
}

// descriptorOf returns the session's policy, policy.default when none.
func descriptorOf(in *Input) *macpv1.PolicyDescriptor {
	if in.Policy == nil {
		return DefaultDescriptor()
	}
	return in.Policy
}

// prepared returns the query and policy value for the session's policy.
func (e *Engine) prepared(ctx context.Context, in *Input, authority bool) (*preparedQuery, error) {
	d := descriptorOf(in)
	mode := in.Session.GetMode()
	module := governModule(mode)
	if authority {
		module = "authority"
	}
	key := cacheKey(d, module, mode)
	return e.cache.get(key, func() (*preparedQuery, error) {
		rules, err := parseRulesForEval(d.GetRules())
		if err != nil {
			return nil, fmt.Errorf("policy %q: %w", d.GetPolicyId(), err)
		}
		pv := policyValue(d, rules)
		if digest, ok := customDigest(rules); ok {
			return e.preparedCustom(ctx, d, pv, mode, digest, authority)
		}
		return e.preparedBuiltin(ctx, module, pv, mode), nil
	})
}

// preparedBuiltin is a policy under a built-in module, with its stage 1
// done.
func (e *Engine) preparedBuiltin(ctx context.Context, module string, pv ast.Value, mode string) *preparedQuery {
	q := e.builtin[module]
	return &preparedQuery{policy: pv, builtin: q, stage: evalPolicyStage(ctx, q, pv, mode)}
}

// parseRulesForEval decodes a bound descriptor's rules. Admission already
// validated them; an empty text is the empty rule set.
func parseRulesForEval(text string) (ast.Object, error) {
	if strings.TrimSpace(text) == "" {
		return ast.NewObject(), nil
	}
	v, err := jsonToValue([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("rules are not valid JSON: %w", err)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, errors.New("rules are not a JSON object")
	}
	return obj, nil
}

// policyValue is what the modules read as input.policy: the descriptor
// with its rules parsed.
func policyValue(d *macpv1.PolicyDescriptor, rules ast.Object) ast.Value {
	return ast.NewObject(
		str("policy_id", d.GetPolicyId()),
		str("mode", d.GetMode()),
		str("description", d.GetDescription()),
		[2]*ast.Term{ast.StringTerm("schema_version"), ast.UIntNumberTerm(uint64(d.GetSchemaVersion()))},
		[2]*ast.Term{ast.StringTerm("rules"), ast.NewTerm(rules)},
	)
}

// preparedQuery is one policy ready to decide: a built-in module with the
// policy's stage 1 done, or an uploaded policy's own query.
type preparedQuery struct {
	policy ast.Value
	// builtin and stage, for the built-in modules.
	builtin *builtinQueries
	stage   policyStage
	// custom is the query of uploaded Rego, which runs under
	// customEvalTimeout and gets the whole input (inputValue), the state
	// view with customState (govern, not authorize).
	custom      rego.PreparedEvalQuery
	customState bool
}

// customEvalTimeout bounds one evaluation of uploaded Rego.
const customEvalTimeout = 250 * time.Millisecond

// eval decides in under the policy.
func (q *preparedQuery) eval(ctx context.Context, in *Input) (Decision, error) {
	if q.builtin != nil {
		return q.evalBuiltin(ctx, in)
	}
	var state ast.Value = ast.NewObject()
	if q.customState && in.ModeState != nil {
		raw, err := in.ModeState(ctx)
		if err != nil {
			return Decision{}, fmt.Errorf("mode state view: %w", err)
		}
		if state, err = stateValue(raw, nil); err != nil {
			return Decision{}, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, customEvalTimeout)
	defer cancel()
	return evalVerdict(ctx, q.custom, inputValue(in, q.policy, state), in)
}

// evalVerdict runs a verdict query on input and reads its {allow,
// reasons}. The evaluation stops when ctx ends; context.AfterFunc tells it
// so without the goroutine per evaluation that OPA starts otherwise.
func evalVerdict(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value, in *Input) (Decision, error) {
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel))
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate policy %q: %w", descriptorOf(in).GetPolicyId(), err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("policy %q produced no verdict", descriptorOf(in).GetPolicyId())
	}
	return readVerdict(rs[0].Expressions[0].Value)
}

// readVerdict converts a {allow: bool, reasons: [string]} result.
func readVerdict(v any) (Decision, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("verdict must be an object, got %T", v)
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return Decision{}, errors.New("verdict.allow must be a boolean")
	}
	d := Decision{Allow: allow}
	if raw, present := obj["reasons"]; present {
		list, ok := raw.([]any)
		if !ok {
			return Decision{}, errors.New("verdict.reasons must be an array of strings")
		}
		for _, r := range list {
			s, ok := r.(string)
			if !ok {
				return Decision{}, errors.New("verdict.reasons must be an array of strings")
			}
			d.Reasons = append(d.Reasons, s)
		}
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []string{"the policy denied the commitment without giving a reason"}
	}
	return d, nil
}

// inputValue builds the evaluation input:
//
//	{"policy": {policy_id, mode, description, schema_version, rules},
//	 "session": {session_id, mode, mode_version, configuration_version,
//	             policy_version, initiator, participants, started_at_unix_ms},
//	 "sender": string,
//	 "commitment": {commitment_id, action, authority_scope, reason,
//	                mode_version, policy_version, configuration_version,
//	                outcome_positive, supersedes?: {session_id, commitment_hash}},
//	 "state": the mode's state view (or {}),
//	 "now_unix_ms": number}
//
// "commitment" is absent when the question is not about a Commitment.
func inputValue(in *Input, policy, state ast.Value) ast.Value {
	s := in.Session
	parts := make([]*ast.Term, len(s.GetParticipants()))
	for i, p := range s.GetParticipants() {
		parts[i] = ast.StringTerm(p)
	}
	session := ast.NewObject(
		str("session_id", s.GetSessionId()),
		str("mode", s.GetMode()),
		str("mode_version", s.GetModeVersion()),
		str("configuration_version", s.GetConfigurationVersion()),
		str("policy_version", s.GetPolicyVersion()),
		str("initiator", s.GetInitiator()),
		[2]*ast.Term{ast.StringTerm("participants"), ast.ArrayTerm(parts...)},
		[2]*ast.Term{ast.StringTerm("started_at_unix_ms"), ast.IntNumberTerm(int(s.GetStartedAtUnixMs()))},
	)
	obj := ast.NewObject(
		[2]*ast.Term{ast.StringTerm("policy"), ast.NewTerm(policy)},
		[2]*ast.Term{ast.StringTerm("session"), ast.NewTerm(session)},
		str("sender", in.Sender),
		[2]*ast.Term{ast.StringTerm("state"), ast.NewTerm(state)},
		[2]*ast.Term{ast.StringTerm("now_unix_ms"), ast.IntNumberTerm(int(in.NowUnixMs))},
	)
	if c := in.Commitment; c != nil {
		cm := ast.NewObject(
			str("commitment_id", c.GetCommitmentId()),
			str("action", c.GetAction()),
			str("authority_scope", c.GetAuthorityScope()),
			str("reason", c.GetReason()),
			str("mode_version", c.GetModeVersion()),
			str("policy_version", c.GetPolicyVersion()),
			str("configuration_version", c.GetConfigurationVersion()),
			[2]*ast.Term{ast.StringTerm("outcome_positive"), ast.BooleanTerm(c.GetOutcomePositive())},
		)
		if sup := c.GetSupersedes(); sup != nil {
			cm.Insert(ast.StringTerm("supersedes"), ast.NewTerm(ast.NewObject(
				str("session_id", sup.GetSessionId()),
				str("commitment_hash", sup.GetCommitmentHash()),
			)))
		}
		obj.Insert(ast.StringTerm("commitment"), ast.NewTerm(cm))
	}
	return obj
}

func str(k, v string) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)} }

// cacheKey identifies a cache entry: the policy's identity (id, mode,
// schema_version, rules) and what it is used for. Fields are
// length-prefixed so that no two different tuples hash alike.
func cacheKey(d *macpv1.PolicyDescriptor, extra ...string) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(d.GetPolicyId())
	put(d.GetMode())
	binary.BigEndian.PutUint64(n[:], uint64(d.GetSchemaVersion()))
	h.Write(n[:])
	put(d.GetRules())
	for _, s := range extra {
		put(s)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// queryCache is a goroutine-safe LRU of prepared policies. Concurrent
// requests for one key prepare once; a failed preparation is not kept.
type queryCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recently used; values are *cacheEntry
	byKey map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	key  [sha256.Size]byte
	once sync.Once
	q    *preparedQuery
	err  error
}

func newQueryCache(max int) *queryCache {
	if max <= 0 {
		max = 1024
	}
	return &queryCache{max: max, order: list.New(), byKey: map[[sha256.Size]byte]*list.Element{}}
}

func (c *queryCache) get(key [sha256.Size]byte, build func() (*preparedQuery, error)) (*preparedQuery, error) {
	c.mu.Lock()
	el, ok := c.byKey[key]
	if ok {
		c.order.MoveToFront(el)
	} else {
		el = c.order.PushFront(&cacheEntry{key: key})
		c.byKey[key] = el
		for c.order.Len() > c.max {
			last := c.order.Back()
			c.order.Remove(last)
			delete(c.byKey, last.Value.(*cacheEntry).key)
		}
	}
	ent := el.Value.(*cacheEntry)
	c.mu.Unlock()

	ent.once.Do(func() { ent.q, ent.err = build() })
	if ent.err != nil {
		c.mu.Lock()
		if cur, ok := c.byKey[key]; ok && cur == el {
			c.order.Remove(el)
			delete(c.byKey, key)
		}
		c.mu.Unlock()
		return nil, ent.err
	}
	return ent.q, nil
}

// Len reports how many entries the cache holds.
func (c *queryCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
