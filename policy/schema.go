package policy

// The input contract of uploaded Rego, as a JSON Schema that OPA's type
// checker applies at upload: a reference to an input field that does not
// exist is a compile error instead of a silently undefined rule. The shape
// is what inputValue builds. The Decision state view is closed (its keys are
// fixed by the mode, digest §6.1); other modes' views are open objects.

func strSchema() map[string]any { return map[string]any{"type": "string"} }

func closed(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
}

func arrayOf(items any) map[string]any { return map[string]any{"type": "array", "items": items} }

func mapOf(values any) map[string]any {
	return map[string]any{"type": "object", "additionalProperties": values}
}

// inputSchema returns the input schema for uploaded policies of mode.
func inputSchema(mode string) map[string]any {
	state := map[string]any{"type": "object"}
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

// decisionViewSchema is the shape of the Decision mode's state view
// (modes-wasm/decision View).
func decisionViewSchema() map[string]any {
	return closed(map[string]any{
		"phase":          strSchema(),
		"proposal_order": arrayOf(strSchema()),
		"proposals": mapOf(closed(map[string]any{
			"proposal_id": strSchema(),
			"option":      strSchema(),
			"rationale":   strSchema(),
			"sender":      strSchema(),
		})),
		"evaluations": arrayOf(closed(map[string]any{
			"proposal_id":    strSchema(),
			"recommendation": strSchema(),
			"confidence":     map[string]any{"type": "number"},
			"reason":         strSchema(),
			"sender":         strSchema(),
		})),
		"objections": arrayOf(closed(map[string]any{
			"proposal_id": strSchema(),
			"severity":    strSchema(),
			"reason":      strSchema(),
			"sender":      strSchema(),
		})),
		"votes": mapOf(mapOf(closed(map[string]any{
			"vote":   strSchema(),
			"reason": strSchema(),
		}))),
		"ballots": arrayOf(closed(map[string]any{
			"proposal_id": strSchema(),
			"voter":       strSchema(),
			"vote":        strSchema(),
			"reason":      strSchema(),
		})),
		"commitment": closed(map[string]any{
			"commitment_id":    strSchema(),
			"action":           strSchema(),
			"outcome_positive": map[string]any{"type": "boolean"},
			"sender":           strSchema(),
		}),
	})
}
