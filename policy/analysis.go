package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The engine reads the compiled built-in modules to learn, for each rule,
// which parts of the input it reads (directly or through the rules it
// references). That tells it three things per module:
//
//   - which rules are policy constants: their value depends on input.policy
//     and input.session.mode only, so it is the same for every commitment
//     under one policy and can be computed once per policy;
//   - whether the verdict itself is a constant (a policy alone decides it);
//   - what input a commitment's evaluation reads once the constants and the
//     tallies computed in Go are passed in, so the engine builds only that
//     and can prove it builds everything that is read.
//
// The analysis is conservative: a reference it cannot follow (a dynamic
// rule reference, another package, the whole input) is an error at
// NewEngine, not a guess.

// inputPath is a reference into the input, without the leading "input":
// ["state", "votes"] for input.state.votes[_][v].
type inputPath []string

// under reports whether p lies at or below prefix.
func (p inputPath) under(prefix ...string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

func (p inputPath) String() string { return strings.Join(append([]string{"input"}, p...), ".") }

// ruleRefs is what one rule (all its definitions, else branches included)
// reads directly.
type ruleRefs struct {
	inputs   []inputPath
	rules    []string // rules of the same package
	function bool     // the rule takes arguments
}

// moduleRefs reads the compiled module m of package pkg.
func moduleRefs(pkg ast.Ref, m *ast.Module) (map[string]*ruleRefs, error) {
	out := map[string]*ruleRefs{}
	for _, r := range m.Rules {
		name, err := ruleName(r)
		if err != nil {
			return nil, err
		}
		rr := out[name]
		if rr == nil {
			rr = &ruleRefs{}
			out[name] = rr
		}
		rr.function = rr.function || len(r.Head.Args) > 0
		for def := r; def != nil; def = def.Else {
			if err := collectRefs(pkg, def, rr); err != nil {
				return nil, fmt.Errorf("rule %s: %w", name, err)
			}
		}
	}
	for _, rr := range out {
		slices.Sort(rr.rules)
		rr.rules = slices.Compact(rr.rules)
	}
	return out, nil
}

func ruleName(r *ast.Rule) (string, error) {
	ref := r.Head.Ref()
	if len(ref) == 0 {
		return "", fmt.Errorf("rule without a name at %v", r.Location)
	}
	switch v := ref[0].Value.(type) {
	case ast.Var:
		return string(v), nil
	case ast.String:
		return string(v), nil
	}
	return "", fmt.Errorf("rule %v: unsupported head", ref)
}

// collectRefs adds the input paths and same-package rules that def (head
// and body, one definition without its else branches) reads to rr.
func collectRefs(pkg ast.Ref, def *ast.Rule, rr *ruleRefs) error {
	input := ast.InputRootDocument.Value.(ast.Var)
	data := ast.DefaultRootDocument.Value.(ast.Var)
	var err error
	fail := func(format string, args ...any) {
		if err == nil {
			err = fmt.Errorf(format, args...)
		}
	}
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Expr:
			if len(v.With) > 0 {
				fail("with is not supported in built-in modules")
			}
		case ast.Ref:
			switch head, _ := v[0].Value.(ast.Var); head {
			case input:
				rr.inputs = append(rr.inputs, groundPath(v[1:]))
			case data:
				if !v.HasPrefix(pkg) || len(v) <= len(pkg) {
					fail("reference %v leaves the package", v)
					break
				}
				name, ok := v[len(pkg)].Value.(ast.String)
				if !ok {
					fail("dynamic rule reference %v", v)
					break
				}
				rr.rules = append(rr.rules, string(name))
			}
			// Not the head (a variable), but the other terms: w[v] and
			// approvers[p] hold references of their own.
			for _, t := range v[1:] {
				vis.Walk(t)
			}
			return true
		case ast.Var:
			switch v {
			case input:
				rr.inputs = append(rr.inputs, inputPath{})
			case data:
				fail("the whole data document is read")
			}
		}
		return false
	})
	vis.Walk(def.Head)
	vis.Walk(def.Body)
	return err
}

// groundPath is the leading string keys of a reference's tail.
func groundPath(tail ast.Ref) inputPath {
	p := inputPath{}
	for _, t := range tail {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		p = append(p, string(s))
	}
	return p
}

// reads returns every input path that rule reads, following the rules it
// references but not into those in stop (which the engine passes in).
func reads(refs map[string]*ruleRefs, rule string, stop func(string) bool) ([]inputPath, error) {
	var out []inputPath
	seen := map[string]bool{}
	var walk func(string) error
	walk = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		rr, ok := refs[name]
		if !ok {
			return fmt.Errorf("rule %s is referenced but not defined", name)
		}
		out = append(out, rr.inputs...)
		for _, next := range rr.rules {
			if stop(next) {
				continue
			}
			if err := walk(next); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(rule)
	return out, err
}

// policyConstant reports whether every path is input.policy or
// input.session.mode (or below them).
func policyConstant(paths []inputPath) bool {
	for _, p := range paths {
		if !p.under("policy") && !p.under("session", "mode") {
			return false
		}
	}
	return true
}

// frontier returns the rules that a commitment's evaluation of entry
// reaches first among those for which passIn is true: the rules whose
// values the engine must pass in.
func frontier(refs map[string]*ruleRefs, entry string, passIn func(string) bool) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(string)
	walk = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		for _, next := range refs[name].rules {
			if passIn(next) {
				out = append(out, next)
				seen[next] = true
				continue
			}
			walk(next)
		}
	}
	walk(entry)
	slices.Sort(out)
	return slices.Compact(out)
}
