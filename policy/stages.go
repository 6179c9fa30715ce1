package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// A built-in module is evaluated in stages (RATIONALE, "Policy: evaluation
// in stages"):
//
//  1. once per policy (and mode): the module's policy constants, and the
//     verdict itself when the policy alone decides it;
//  2. per commitment: Go tallies of the state view, where the module has
//     them (Decision);
//  3. per commitment: a staged copy of the module, whose references to the
//     rules of stages 1 and 2 read their values from the input, on an
//     input that holds only what the copy reads.
//
// A module opts into stage 1 for its verdict with a rule policy_verdict
// (a policy constant) and a rule commitment_verdict, under the contract
// verdict = policy_verdict when that is defined, commitment_verdict
// otherwise. Everything else follows from the analysis of its rules.

// inputNeeds is what an evaluation reads of the input.
type inputNeeds struct {
	policy     bool
	session    []string // keys of input.session
	sender     bool
	commitment []string // keys of input.commitment
	stateKeys  []string // top-level keys of input.state
	wholeState bool
}

// leanSessionKeys and leanCommitmentKeys are the fields leanInput can
// carry.
var (
	leanSessionKeys    = []string{"initiator", "mode", "participants"}
	leanCommitmentKeys = []string{"outcome_positive"}
)

// needsOf turns the paths an evaluation reads into the input to build, or
// fails when a path is outside what a lean input carries.
func needsOf(paths []inputPath) (inputNeeds, error) {
	var n inputNeeds
	for _, p := range paths {
		switch {
		case len(p) == 0:
			return n, errors.New("reads the whole input")
		case p[0] == "policy":
			n.policy = true
		case p[0] == "sender":
			n.sender = true
		case p[0] == "session" && len(p) > 1 && slices.Contains(leanSessionKeys, p[1]):
			n.session = append(n.session, p[1])
		case p[0] == "commitment" && len(p) > 1 && slices.Contains(leanCommitmentKeys, p[1]):
			n.commitment = append(n.commitment, p[1])
		case p[0] == "state" && len(p) == 1:
			n.wholeState = true
		case p[0] == "state":
			n.stateKeys = append(n.stateKeys, p[1])
		default:
			return n, fmt.Errorf("reads %s, which the engine does not pass to built-in modules", p)
		}
	}
	for _, s := range []*[]string{&n.session, &n.commitment, &n.stateKeys} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return n, nil
}

// readsState reports whether the evaluation reads the mode's state view.
func (n inputNeeds) readsState() bool { return n.wholeState || len(n.stateKeys) > 0 }

// stateFilter is the jsonToValueKeys selection for the state: nil for all.
func (n inputNeeds) stateFilter() []string {
	if n.wholeState {
		return nil
	}
	return n.stateKeys
}

// modulePlan is how the engine evaluates one built-in module.
type modulePlan struct {
	name string
	// reference is what the plain verdict query reads.
	reference inputNeeds
	// verdictConstant: the verdict is a policy constant.
	verdictConstant bool
	// policyVerdict: the module has policy_verdict and commitment_verdict.
	policyVerdict bool
	// entry is the rule a commitment's staged evaluation starts from.
	entry string
	// constants are the policy constants stage 1 evaluates: those passed
	// in (passed) and those the Go tallies read.
	constants []string
	passed    []string
	// tallies are the rules the Go tallies compute and stage 3 receives.
	tallies []string
	// staged is what stage 3 reads.
	staged inputNeeds
}

// goTally is a Go function that computes some of a module's rules from the
// commitment's input, its state view and the policy constants, or
// declines.
type goTally struct {
	rules     []string // the rules it computes
	constants []string // the policy constants it reads
	compute   func(in *Input, view []byte, constants ast.Object) (ast.Object, bool)
}

// goTallies are the Go tallies per module (tally.go).
var goTallies = map[string]goTally{
	"decision":  {decisionTallyRules, decisionTallyConstants, decisionTallies},
	"authority": {authorityTallyRules, nil, authorityTallies},
}

// planModule analyses one compiled module.
func planModule(name string, refs map[string]*ruleRefs) (*modulePlan, error) {
	if refs["verdict"] == nil {
		return nil, errors.New("the module defines no verdict")
	}
	never := func(string) bool { return false }
	constant := map[string]bool{}
	for rule := range refs {
		paths, err := reads(refs, rule, never)
		if err != nil {
			return nil, err
		}
		// A function's value depends on its arguments.
		constant[rule] = !refs[rule].function && policyConstant(paths)
	}
	plan := &modulePlan{name: name}
	paths, err := reads(refs, "verdict", never)
	if err != nil {
		return nil, err
	}
	if plan.reference, err = needsOf(paths); err != nil {
		return nil, fmt.Errorf("verdict %w", err)
	}
	if constant["verdict"] {
		plan.verdictConstant = true
		return plan, nil
	}

	plan.entry = "verdict"
	if refs["policy_verdict"] != nil || refs["commitment_verdict"] != nil {
		if refs["policy_verdict"] == nil || refs["commitment_verdict"] == nil {
			return nil, errors.New("policy_verdict and commitment_verdict come together")
		}
		if !constant["policy_verdict"] {
			return nil, errors.New("policy_verdict reads more than the policy and the mode")
		}
		plan.policyVerdict = true
		plan.entry = "commitment_verdict"
	}

	gt := goTallies[name]
	for _, r := range gt.rules {
		if refs[r] == nil {
			return nil, fmt.Errorf("the Go tally %s has no rule", r)
		}
	}
	passIn := func(rule string) bool { return constant[rule] || slices.Contains(gt.rules, rule) }
	for _, rule := range frontier(refs, plan.entry, passIn) {
		if slices.Contains(gt.rules, rule) {
			plan.tallies = append(plan.tallies, rule)
		} else {
			plan.passed = append(plan.passed, rule)
		}
	}
	for _, c := range gt.constants {
		if refs[c] == nil || !constant[c] {
			return nil, fmt.Errorf("the Go tallies read %s, which is not a policy constant", c)
		}
	}
	plan.constants = append(slices.Clone(plan.passed), gt.constants...)
	slices.Sort(plan.constants)
	plan.constants = slices.Compact(plan.constants)

	paths, err = reads(refs, plan.entry, passIn)
	if err != nil {
		return nil, err
	}
	if plan.staged, err = needsOf(paths); err != nil {
		return nil, fmt.Errorf("%s %w", plan.entry, err)
	}
	return plan, nil
}

// Stage 3 finds the values of stages 1 and 2 under these input keys, which
// no module can read itself (needsOf refuses them).
const (
	constantsKey = "constants"
	talliesKey   = "tallies"
)

// stagedModule is the module stage 3 evaluates: the compiled module m of
// package pkg, without the passed constants and tallies, in which every
// reference to one of them reads its value from the input instead. A
// constant costs an input lookup rather than a rule evaluation, and a rule
// definition gated on one (algorithm == "majority") is skipped by OPA's
// rule index. (OPA's `with` replaces rules per evaluation, at a cost per
// reference that grows with the number of replaced rules.)
func (plan *modulePlan) stagedModule(pkg ast.Ref, m *ast.Module) *ast.Module {
	replaced := map[string]ast.Ref{}
	for _, rule := range plan.passed {
		replaced[rule] = ast.MustParseRef("input." + constantsKey + "." + rule)
	}
	for _, rule := range plan.tallies {
		replaced[rule] = ast.MustParseRef("input." + talliesKey + "." + rule)
	}
	out := m.Copy()
	out.Rules = slices.DeleteFunc(out.Rules, func(r *ast.Rule) bool {
		name, _ := ruleName(r)
		_, gone := replaced[name]
		return gone
	})
	ast.TransformRefs(out, func(ref ast.Ref) (ast.Value, error) {
		if len(ref) <= len(pkg) || !ref.HasPrefix(pkg) {
			return ref, nil
		}
		name, ok := ref[len(pkg)].Value.(ast.String)
		if !ok {
			return ref, nil
		}
		to, ok := replaced[string(name)]
		if !ok {
			return ref, nil
		}
		return to.Concat(ref[len(pkg)+1:]), nil
	})
	return out
}

// stageQuery evaluates stage 1 at once: the fixed verdict (policy_verdict,
// or the verdict when that is a constant) and every constant, each as a
// list holding its value, or nothing when it is undefined.
func (plan *modulePlan) stageQuery() string {
	pkg := builtinPrefix + plan.name + "."
	value := func(rule string) string { return "[v | v := " + pkg + rule + "]" }
	parts := []string{"[]"}
	switch {
	case plan.verdictConstant:
		parts[0] = value("verdict")
	case plan.policyVerdict:
		parts[0] = value("policy_verdict")
	}
	for _, rule := range plan.constants {
		parts = append(parts, value(rule))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// builtinQueries are a module's prepared queries.
type builtinQueries struct {
	plan      *modulePlan
	reference rego.PreparedEvalQuery
	stage     rego.PreparedEvalQuery // stageQuery
	staged    rego.PreparedEvalQuery // the staged module's entry
}

// planBuiltins compiles the built-in modules together, plans each and
// prepares its queries: on one compiler for the modules and one for their
// staged copies, so that the engine holds each module compiled once.
func planBuiltins(ctx context.Context, modules map[string]*ast.Module) (map[string]*builtinQueries, error) {
	files := map[string]*ast.Module{}
	for name, m := range modules {
		files[name+".rego"] = m
	}
	c := newBuiltinCompiler()
	if c.Compile(files); c.Failed() {
		return nil, fmt.Errorf("compile: %w", c.Errors)
	}
	out := map[string]*builtinQueries{}
	stagedFiles := map[string]*ast.Module{}
	for name, m := range modules {
		compiled := c.Modules[name+".rego"]
		refs, err := moduleRefs(m.Package.Path, compiled)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if _, ok := refs["verdict"]; !ok {
			continue // a library module without an entry point
		}
		plan, err := planModule(name, refs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		q := &builtinQueries{plan: plan}
		if q.reference, err = prepareOn(ctx, c, builtinPrefix+name+".verdict"); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if q.stage, err = prepareOn(ctx, c, plan.stageQuery()); err != nil {
			return nil, fmt.Errorf("%s: stage 1: %w", name, err)
		}
		if plan.entry != "" {
			stagedFiles[name+".rego"] = plan.stagedModule(m.Package.Path, compiled)
		}
		out[name] = q
	}
	sc := newBuiltinCompiler()
	if sc.Compile(stagedFiles); sc.Failed() {
		return nil, fmt.Errorf("compile the staged modules: %w", sc.Errors)
	}
	for _, q := range out {
		if q.plan.entry == "" {
			continue
		}
		var err error
		if q.staged, err = prepareOn(ctx, sc, builtinPrefix+q.plan.name+"."+q.plan.entry); err != nil {
			return nil, fmt.Errorf("%s: staged module: %w", q.plan.name, err)
		}
	}
	return out, nil
}

// newBuiltinCompiler is a compiler for the built-in modules: OPA's
// built-ins and Concord's binary64 ones.
func newBuiltinCompiler() *ast.Compiler {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, builtinDecls()...)
	return ast.NewCompiler().WithCapabilities(caps).WithDefaultRegoVersion(ast.RegoV1)
}

// prepareOn prepares a query on a compiler that holds the built-in
// modules.
func prepareOn(ctx context.Context, c *ast.Compiler, query string) (rego.PreparedEvalQuery, error) {
	opts := append([]func(*rego.Rego){
		rego.Query(query),
		rego.Compiler(c),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	}, builtinOptions()...)
	return rego.New(opts...).PrepareForEval(ctx)
}

// policyStage is stage 1 for one policy: its fixed verdict, or the
// constants stage 3 receives. A failed or undefined constant leaves the
// policy on the reference evaluation, which then meets the failure (or
// not) exactly where the module's own evaluation order does.
type policyStage struct {
	fixed *Decision
	// constants holds every stage-1 constant; passed only those stage 3
	// receives. nil: no staged evaluation for this policy.
	constants, passed ast.Object
}

func evalPolicyStage(ctx context.Context, q *builtinQueries, pv ast.Value, mode string) policyStage {
	input := ast.NewObject(
		[2]*ast.Term{ast.StringTerm("policy"), ast.NewTerm(pv)},
		[2]*ast.Term{ast.StringTerm("session"), ast.NewTerm(ast.NewObject(str("mode", mode)))},
	)
	// The values keep their Rego form (a set stays a set): the result is
	// the term itself, not its JSON.
	asTerm := rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })
	var st policyStage
	rs, err := q.stage.Eval(ctx, rego.EvalParsedInput(input), asTerm)
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return st
	}
	lists, ok := rs[0].Expressions[0].Value.(*ast.Term).Value.(*ast.Array)
	if !ok || lists.Len() != 1+len(q.plan.constants) {
		return st
	}
	value := func(i int) (*ast.Term, bool) {
		l, ok := lists.Elem(i).Value.(*ast.Array)
		if !ok || l.Len() != 1 {
			return nil, false
		}
		return l.Elem(0), true
	}
	if v, ok := value(0); ok {
		raw, err := ast.JSON(v.Value)
		if err == nil {
			if d, err := readVerdict(raw); err == nil {
				st.fixed = &d
				return st
			}
		}
	}
	if q.plan.entry == "" {
		return st
	}
	constants, passed := ast.NewObject(), ast.NewObject()
	for i, rule := range q.plan.constants {
		v, ok := value(1 + i)
		if !ok {
			return st
		}
		constants.Insert(ast.StringTerm(rule), v)
		if slices.Contains(q.plan.passed, rule) {
			passed.Insert(ast.StringTerm(rule), v)
		}
	}
	st.constants, st.passed = constants, passed
	return st
}

// evalBuiltin decides one commitment with a built-in module: the policy's
// fixed verdict, else the staged evaluation, else (the Go tallies declined,
// or stage 1 did not complete) the reference evaluation of the verdict on
// the converted state view. Each gives what the reference gives.
func (q *preparedQuery) evalBuiltin(ctx context.Context, in *Input) (Decision, error) {
	plan := q.builtin.plan
	var view []byte
	if plan.reference.readsState() && in.ModeState != nil {
		var err error
		if view, err = in.ModeState(ctx); err != nil {
			return Decision{}, fmt.Errorf("mode state view: %w", err)
		}
	}
	if f := q.stage.fixed; f != nil {
		// The state view is still read and checked, as the reference
		// evaluation would.
		if err := checkJSON(view); err != nil {
			return Decision{}, fmt.Errorf("mode state view is not JSON: %w", err)
		}
		return Decision{Allow: f.Allow, Reasons: slices.Clone(f.Reasons)}, nil
	}
	if q.stage.constants != nil {
		var tallies ast.Object
		staged := true
		if len(plan.tallies) > 0 {
			tallies, staged = goTallies[plan.name].compute(in, view, q.stage.constants)
		}
		if staged {
			var state ast.Value
			if plan.staged.readsState() {
				var err error
				if state, err = stateValue(view, plan.staged.stateFilter()); err != nil {
					return Decision{}, err
				}
			}
			return evalVerdict(ctx, q.builtin.staged, leanInput(in, plan.staged, q.policy, state, q.stage.passed, tallies), in)
		}
	}
	var state ast.Value
	if plan.reference.readsState() {
		var err error
		if state, err = stateValue(view, plan.reference.stateFilter()); err != nil {
			return Decision{}, err
		}
	}
	return evalVerdict(ctx, q.builtin.reference, leanInput(in, plan.reference, q.policy, state, nil, nil), in)
}

// stateValue converts the top-level keys of the state view (all with nil);
// an empty view is the empty object.
func stateValue(view []byte, keys []string) (ast.Value, error) {
	if len(bytes.TrimSpace(view)) == 0 {
		return ast.NewObject(), nil
	}
	v, err := jsonToValueKeys(view, keys)
	if err != nil {
		return nil, fmt.Errorf("mode state view is not JSON: %w", err)
	}
	return v, nil
}

// leanInput is the input of a built-in module's evaluation: only what n
// says it reads, and the values of stages 1 and 2 when given. Every
// decision builds its input afresh, so leaving out what nobody reads is a
// measurable saving.
func leanInput(in *Input, n inputNeeds, policy, state ast.Value, constants, tallies ast.Object) ast.Value {
	items := make([][2]*ast.Term, 0, 7)
	if n.policy {
		items = append(items, [2]*ast.Term{ast.StringTerm("policy"), ast.NewTerm(policy)})
	}
	if len(n.session) > 0 {
		s := in.Session
		fields := make([][2]*ast.Term, 0, len(n.session))
		for _, k := range n.session {
			switch k {
			case "initiator":
				fields = append(fields, str(k, s.GetInitiator()))
			case "mode":
				fields = append(fields, str(k, s.GetMode()))
			case "participants":
				parts := make([]*ast.Term, len(s.GetParticipants()))
				for i, p := range s.GetParticipants() {
					parts[i] = ast.StringTerm(p)
				}
				fields = append(fields, [2]*ast.Term{ast.StringTerm(k), ast.ArrayTerm(parts...)})
			}
		}
		items = append(items, [2]*ast.Term{ast.StringTerm("session"), ast.NewTerm(ast.NewObject(fields...))})
	}
	if n.sender {
		items = append(items, str("sender", in.Sender))
	}
	if c := in.Commitment; c != nil && len(n.commitment) > 0 {
		items = append(items, [2]*ast.Term{ast.StringTerm("commitment"), ast.NewTerm(ast.NewObject(
			[2]*ast.Term{ast.StringTerm("outcome_positive"), ast.BooleanTerm(c.GetOutcomePositive())},
		))})
	}
	if n.readsState() {
		items = append(items, [2]*ast.Term{ast.StringTerm("state"), ast.NewTerm(state)})
	}
	if constants != nil {
		items = append(items, [2]*ast.Term{ast.StringTerm(constantsKey), ast.NewTerm(constants)})
	}
	if tallies != nil {
		items = append(items, [2]*ast.Term{ast.StringTerm(talliesKey), ast.NewTerm(tallies)})
	}
	return ast.NewObject(items...)
}
