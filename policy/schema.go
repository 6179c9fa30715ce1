package policy

// The input contract of uploaded Rego, as a JSON Schema that OPA's type
// checker applies at upload: a reference to an input field that does not
// exist is a compile error instead of a silently undefined rule. The shape
// is what inputValue builds. The Decision state view is closed: its keys are
// fixed by the mode (digest §6.1), which declares them in its own schema;
// other modes' views are open objects.

import (
	"encoding/json"

	"github.com/concord-macp/concord/modes-wasm/decision"
)

func strSchema() map[string]any { return map[string]any{"type": "string"} }

func closed(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
}

func arrayOf(items any) map[string]any { return map[string]any{"type": "array", "items": items} }

// inputSchema returns the input schema for uploaded policies of mode.
func inputSchema(mode string) map[string]any {
	var state any = map[string]any{"type": "object"}
	if mode == ModeDecision {
		state = decisionViewSchema()
	}
	return closed(map[string]any{
		"policy": closed(map[string]any{
			"policy_id":      strSchema(),
			"mode":           strSchema(),
			"description":    strSchema(),
			"schema_version": map[string]any{"type": "integer"},
			"rules":          map[string]any{"type": "object"},
		}),
		"session": closed(map[string]any{
			"session_id":            strSchema(),
			"mode":                  strSchema(),
			"mode_version":          strSchema(),
			"configuration_version": strSchema(),
			"policy_version":        strSchema(),
			"initiator":             strSchema(),
			"participants":          arrayOf(strSchema()),
			"started_at_unix_ms":    map[string]any{"type": "integer"},
		}),
		"sender": strSchema(),
		"commitment": closed(map[string]any{
			"commitment_id":         strSchema(),
			"action":                strSchema(),
			"authority_scope":       strSchema(),
			"reason":                strSchema(),
			"mode_version":          strSchema(),
			"policy_version":        strSchema(),
			"configuration_version": strSchema(),
			"outcome_positive":      map[string]any{"type": "boolean"},
			"supersedes": closed(map[string]any{
				"session_id":      strSchema(),
				"commitment_hash": strSchema(),
			}),
		}),
		"state":       state,
		"now_unix_ms": map[string]any{"type": "integer"},
	})
}

// decisionViewSchema is the Decision mode's own declaration of its state
// view (decision.ViewSchema). The embedded schema always parses (a test
// checks it); were it ever broken, the schema returned accepts no state, so
// uploads for the mode fail to compile rather than go unchecked.
func decisionViewSchema() any {
	var schema map[string]any
	if err := json.Unmarshal(decision.ViewSchema, &schema); err != nil {
		return map[string]any{"not": map[string]any{}}
	}
	return schema
}
