package policy

import "testing"

// TestDecisionStateFromTheMode checks that uploaded Decision policies are
// type-checked against the mode's own declaration of its view, and that the
// built-in module reads only keys the mode declares.
func TestDecisionStateFromTheMode(t *testing.T) {
	schema, ok := decisionViewSchema().(map[string]any)
	if !ok || schema["additionalProperties"] != false {
		t.Fatalf("decision view schema %v: want the mode's closed object schema", schema)
	}
	props, _ := schema["properties"].(map[string]any)
	e, _ := newTestEngine(t)
	keys := e.builtin[governModule(ModeDecision)].plan.reference.stateKeys
	for _, k := range keys {
		if _, ok := props[k]; !ok {
			t.Errorf("the decision module reads state key %q, which the mode's view schema does not declare", k)
		}
	}
	if len(keys) == 0 || len(props) < len(keys) {
		t.Fatalf("state keys %v, schema properties %v", keys, props)
	}
	state := inputSchema(ModeDecision)["properties"].(map[string]any)["state"]
	if m, ok := state.(map[string]any); !ok || m["properties"] == nil {
		t.Fatalf("input.state schema %v is not the mode's", state)
	}
}
