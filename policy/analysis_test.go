package policy

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// planOf compiles one module and plans it.
func planOf(t *testing.T, src string) (*modulePlan, error) {
	t.Helper()
	m, err := ast.ParseModuleWithOpts("m.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	c := newBuiltinCompiler()
	if c.Compile(map[string]*ast.Module{"m.rego": m}); c.Failed() {
		t.Fatal(c.Errors)
	}
	refs, err := moduleRefs(m.Package.Path, c.Modules["m.rego"])
	if err != nil {
		return nil, err
	}
	return planModule("m", refs)
}

func TestPlanModuleRefusesWhatItCannotFollow(t *testing.T) {
	cases := map[string]string{
		"policy_verdict reads the sender": `package concord.builtin.m
policy_verdict := {"allow": true, "reasons": []} if input.sender == "x"
commitment_verdict := {"allow": false, "reasons": ["no"]}
verdict := v if { v := policy_verdict } else := commitment_verdict`,
		"the whole input": `package concord.builtin.m
verdict := {"allow": count(input) > 0, "reasons": []}`,
		"an input the engine does not pass": `package concord.builtin.m
verdict := {"allow": input.now_unix_ms > 0, "reasons": []}`,
		"another package": `package concord.builtin.m
verdict := {"allow": data.other.x == 1, "reasons": []}`,
		"policy_verdict without commitment_verdict": `package concord.builtin.m
policy_verdict := {"allow": true, "reasons": []} if input.policy.rules.open
verdict := v if { v := policy_verdict } else := {"allow": input.sender == "", "reasons": []}`,
		"no verdict": `package concord.builtin.m
x := 1`,
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			if plan, err := planOf(t, src); err == nil {
				t.Fatalf("%s: planned %+v", name, plan)
			}
		})
	}
}

func TestPlanModuleFindsConstantsAndInputs(t *testing.T) {
	plan, err := planOf(t, `package concord.builtin.m
limit := input.policy.rules.limit
open if input.session.mode == "x"
used := count(input.state.items)
twice(x) := x * 2
verdict := {"allow": true, "reasons": []} if {
	open
	used <= twice(limit)
	input.sender != ""
} else := {"allow": false, "reasons": [sprintf("%d of %d", [used, limit])]}`)
	if err != nil {
		t.Fatal(err)
	}
	if plan.verdictConstant || plan.policyVerdict || plan.entry != "verdict" {
		t.Fatalf("plan = %+v", plan)
	}
	// twice, a function, is no constant.
	if !slices.Equal(plan.passed, []string{"limit", "open"}) || len(plan.tallies) != 0 {
		t.Errorf("passed %v, tallies %v", plan.passed, plan.tallies)
	}
	if !plan.staged.sender || !slices.Equal(plan.staged.stateKeys, []string{"items"}) || plan.staged.policy || len(plan.staged.session) != 0 {
		t.Errorf("staged needs %+v", plan.staged)
	}
	if !plan.reference.policy || !slices.Equal(plan.reference.session, []string{"mode"}) {
		t.Errorf("reference needs %+v", plan.reference)
	}
	constant, err := planOf(t, `package concord.builtin.m
verdict := {"allow": input.policy.rules.open == true, "reasons": []}`)
	if err != nil || !constant.verdictConstant {
		t.Fatalf("a verdict on the policy alone: %+v %v", constant, err)
	}
}

// TestBuiltinPlans pins what the analysis concludes about the built-in
// modules: the staged Decision evaluation reads nothing of the input but
// the values passed in (the Go tallies replace the session, the commitment
// and the state view), commitment authority does not convert the
// participants, and the modes without governance have a fixed verdict.
func TestBuiltinPlans(t *testing.T) {
	e, _ := newTestEngine(t)
	d := e.builtin["decision"].plan
	if !d.policyVerdict || !reflect.DeepEqual(d.staged, inputNeeds{}) {
		t.Errorf("decision: %+v", d)
	}
	if !slices.Equal(d.tallies, decisionTallyRules) {
		t.Errorf("decision tallies %v, want %v", d.tallies, decisionTallyRules)
	}
	if !slices.Equal(d.reference.stateKeys, []string{"evaluations", "objections", "votes"}) {
		t.Errorf("decision reference reads state %v", d.reference.stateKeys)
	}
	a := e.builtin["authority"].plan
	if slices.Contains(a.staged.session, "participants") || !slices.Contains(a.reference.session, "participants") {
		t.Errorf("authority: %+v", a)
	}
	for _, m := range []string{"quorum", "handoff", "extension"} {
		if !e.builtin[m].plan.verdictConstant {
			t.Errorf("%s: the verdict is not a policy constant", m)
		}
	}
	for _, m := range []string{"proposal", "task"} {
		if p := e.builtin[m].plan; !p.policyVerdict || !p.reference.readsState() {
			t.Errorf("%s: %+v", m, p)
		}
	}
	if q := e.builtin["decision"].plan.stageQuery(); !strings.Contains(q, "policy_verdict") {
		t.Errorf("stage query %s", q)
	}
}
