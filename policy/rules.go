package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Mode names whose rule schemas the registry knows (RFC-MACP-0012 §4).
const (
	ModeDecision   = "macp.mode.decision.v1"
	ModeProposal   = "macp.mode.proposal.v1"
	ModeTask       = "macp.mode.task.v1"
	ModeHandoff    = "macp.mode.handoff.v1"
	ModeQuorum     = "macp.mode.quorum.v1"
	ModeMultiRound = "ext.multi_round.v1"
	// AnyMode is the descriptor mode that binds to every mode.
	AnyMode = "*"
)

// Supported rule schema versions.
const (
	minSchemaVersion = 1
	maxSchemaVersion = 3
)

// customRegoKey is the top-level rules key that marks a descriptor whose
// governance is uploaded Rego source: its value is the source's digest. Only
// RegisterCustom may set it.
const customRegoKey = "concord.rego"

// kind is the JSON type a schema node accepts.
type kind uint8

const (
	kindObject  kind = iota // closed object: only the listed keys
	kindMap                 // open object: any non-empty key, every value matching elem
	kindArray               // array, every item matching elem
	kindString              // string
	kindBool                // true or false
	kindNumber              // finite number
	kindInteger             // finite number without a fractional part
	kindAny                 // any JSON value
)

func (k kind) String() string {
	switch k {
	case kindObject, kindMap:
		return "an object"
	case kindArray:
		return "an array"
	case kindString:
		return "a string"
	case kindBool:
		return "a boolean"
	case kindAny:
		return "any value"
	case kindNumber:
		return "a number"
	default:
		return "an integer"
	}
}

// bound is one end of a numeric range.
type bound struct {
	v    float64
	open bool // exclusive
}

// node is one level of a rule schema. Unknown keys are rejected at every
// level; constraints that relate several keys are checked afterwards by the
// mode's cross-field check.
type node struct {
	kind kind
	keys map[string]*node // kindObject
	elem *node            // kindMap values, kindArray items
	enum []string
	// retired explains enum values that once existed and are now refused.
	retired  map[string]string
	min, max *bound
	minItems int
	nonEmpty bool // strings must not be blank
	// since is the first schema_version that knows the key (0 = all).
	since uint32
}

func closedObject(keys map[string]*node) *node { return &node{kind: kindObject, keys: keys} }

func boolean() *node { return &node{kind: kindBool} }

func enumOf(values ...string) *node { return &node{kind: kindString, enum: values} }

func number(min, max *bound) *node { return &node{kind: kindNumber, min: min, max: max} }

func integer(min, max *bound) *node { return &node{kind: kindInteger, min: min, max: max} }

func atLeast(v float64) *bound { return &bound{v: v} }
func above(v float64) *bound   { return &bound{v: v, open: true} }
func atMost(v float64) *bound  { return &bound{v: v} }
func since(v uint32, n *node) *node {
	c := *n
	c.since = v
	return &c
}

// maxCount bounds integer counts to what every runtime's integer handles
// alike (the Proposal mode uses the same limit for max_rounds).
const maxCount = 1<<31 - 1

// maxSafeInteger is the largest integer a JSON number carries exactly.
const maxSafeInteger = 1<<53 - 1

func authorityNode() *node {
	return enumOf("initiator_only", "any_participant", "designated_role")
}

func designatedRolesNode() *node {
	return &node{kind: kindArray, elem: &node{kind: kindString, nonEmpty: true}}
}

// commitmentNode is the commitment block shared by every built-in mode.
func commitmentNode() *node {
	return closedObject(map[string]*node{
		"authority":        authorityNode(),
		"designated_roles": designatedRolesNode(),
	})
}

// decisionSchema is the Decision rule schema (also used for mode "*").
func decisionSchema() *node {
	return closedObject(map[string]*node{
		"voting": closedObject(map[string]*node{
			"algorithm": enumOf("none", "majority", "supermajority", "unanimous", "weighted", "plurality"),
			"threshold": number(above(0), atMost(1)),
			"quorum": closedObject(map[string]*node{
				"type":  enumOf("count", "percentage"),
				"value": number(atLeast(0), nil),
			}),
			"weights": {kind: kindMap, elem: number(above(0), nil)},
		}),
		"objection_handling": closedObject(map[string]*node{
			"critical_severity_vetoes":  boolean(),
			"veto_threshold":            integer(atLeast(1), atMost(maxCount)),
			"critical_objection_action": since(2, enumOf("deny", "finalize_decline", "hold")),
		}),
		"evaluation": closedObject(map[string]*node{
			"minimum_confidence":     number(atLeast(0), atMost(1)),
			"required_before_voting": boolean(),
		}),
		"commitment": closedObject(map[string]*node{
			"authority":                   authorityNode(),
			"designated_roles":            designatedRolesNode(),
			"require_vote_quorum":         boolean(),
			"allow_decline_over_approval": since(2, boolean()),
		}),
	})
}

func quorumSchema() *node {
	thresholdType := enumOf("n_of_m", "percentage")
	thresholdType.retired = map[string]string{
		"weighted": "was removed from the Quorum rule schema and is reserved",
		"count":    "is not accepted; use \"n_of_m\"",
	}
	return closedObject(map[string]*node{
		"threshold": closedObject(map[string]*node{
			"type":  thresholdType,
			"value": integer(above(0), atMost(maxCount)),
		}),
		"abstention": closedObject(map[string]*node{
			"counts_toward_quorum": boolean(),
			"interpretation":       enumOf("neutral", "implicit_reject", "ignored"),
		}),
		"commitment": commitmentNode(),
	})
}

func proposalSchema() *node {
	return closedObject(map[string]*node{
		"acceptance": closedObject(map[string]*node{
			"criterion": enumOf("all_parties", "counterparty", "initiator"),
		}),
		"counter_proposal": closedObject(map[string]*node{
			"max_rounds": integer(atLeast(0), atMost(maxCount)),
		}),
		"rejection": closedObject(map[string]*node{
			"terminal_on_any_reject": boolean(),
		}),
		"commitment": commitmentNode(),
	})
}

func taskSchema() *node {
	return closedObject(map[string]*node{
		"assignment": closedObject(map[string]*node{
			"allow_reassignment_on_reject": boolean(),
		}),
		"completion": closedObject(map[string]*node{
			"require_output": boolean(),
		}),
		"commitment": commitmentNode(),
	})
}

func handoffSchema() *node {
	return closedObject(map[string]*node{
		"acceptance": closedObject(map[string]*node{
			"implicit_accept_timeout_ms": integer(atLeast(0), atMost(maxSafeInteger)),
		}),
		"commitment": commitmentNode(),
	})
}

// ruleSchema returns the schema and cross-field check for a descriptor
// mode; ok is false for extension modes, whose rules are any JSON object.
func ruleSchema(mode string) (schema *node, check func(rules map[string]any, v *validation), ok bool) {
	switch mode {
	case ModeDecision, AnyMode:
		return decisionSchema(), checkDecision, true
	case ModeQuorum:
		return quorumSchema(), checkQuorum, true
	case ModeProposal:
		return proposalSchema(), checkCommitmentRoles, true
	case ModeTask:
		return taskSchema(), checkCommitmentRoles, true
	case ModeHandoff:
		return handoffSchema(), checkCommitmentRoles, true
	}
	return nil, nil, false
}

// validation collects the first error and all warnings of one admission.
type validation struct {
	version  uint32
	err      error
	warnings []string
}

func (v *validation) fail(path, format string, args ...any) {
	if v.err == nil {
		v.err = fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
	}
}

func (v *validation) warn(format string, args ...any) {
	v.warnings = append(v.warnings, fmt.Sprintf(format, args...))
}

// ValidateRules checks rules (JSON object text) against the rule schema of
// mode at schemaVersion, as RegisterPolicy does. It returns advisory
// warnings for accepted rules. mode "*" is validated against the Decision
// schema; extension modes accept any JSON object.
func ValidateRules(mode string, schemaVersion uint32, rules string) (warnings []string, err error) {
	if schemaVersion < minSchemaVersion || schemaVersion > maxSchemaVersion {
		return nil, fmt.Errorf("schema_version %d is not supported (1, 2 or 3)", schemaVersion)
	}
	if strings.TrimSpace(rules) == "" {
		return nil, fmt.Errorf("rules are missing; send a JSON object ({} for no rules)")
	}
	doc, err := parseJSONStrict([]byte(rules))
	if err != nil {
		return nil, fmt.Errorf("rules are not valid JSON: %w", err)
	}
	obj, isObj := doc.(map[string]any)
	if !isObj {
		return nil, fmt.Errorf("rules must be a JSON object, got %s", jsonTypeName(doc))
	}
	if _, reserved := obj[customRegoKey]; reserved {
		return nil, fmt.Errorf("rules.%s is reserved for uploaded Rego policies", customRegoKey)
	}
	schema, check, known := ruleSchema(mode)
	if !known {
		return nil, nil
	}
	v := &validation{version: schemaVersion}
	v.walk("rules", schema, doc)
	if v.err == nil {
		check(obj, v)
	}
	if v.err != nil {
		return nil, v.err
	}
	return v.warnings, nil
}

// walk checks x against n; path names x in messages.
func (v *validation) walk(path string, n *node, x any) {
	if v.err != nil {
		return
	}
	switch n.kind {
	case kindAny:
	case kindObject, kindMap:
		obj, ok := x.(map[string]any)
		if !ok {
			v.fail(path, "must be %s, got %s", n.kind, jsonTypeName(x))
			return
		}
		for _, k := range sortedKeys(obj) {
			child := path + "." + k
			if n.kind == kindMap {
				if strings.TrimSpace(k) == "" {
					v.fail(path, "keys must not be empty")
					return
				}
				v.walk(child, n.elem, obj[k])
				continue
			}
			sub, known := n.keys[k]
			switch {
			case !known:
				v.fail(child, "unknown key (allowed: %s)", strings.Join(sortedKeys(n.keys), ", "))
			case sub.since > v.version:
				v.fail(child, "requires schema_version %d or later; this descriptor declares %d", sub.since, v.version)
			default:
				v.walk(child, sub, obj[k])
			}
			if v.err != nil {
				return
			}
		}
	case kindArray:
		arr, ok := x.([]any)
		if !ok {
			v.fail(path, "must be an array, got %s", jsonTypeName(x))
			return
		}
		if len(arr) < n.minItems {
			v.fail(path, "must have at least %d item(s)", n.minItems)
			return
		}
		for i, item := range arr {
			v.walk(fmt.Sprintf("%s[%d]", path, i), n.elem, item)
		}
	case kindString:
		s, ok := x.(string)
		if !ok {
			v.fail(path, "must be a string, got %s", jsonTypeName(x))
			return
		}
		if n.nonEmpty && strings.TrimSpace(s) == "" {
			v.fail(path, "must not be empty")
			return
		}
		if n.enum != nil && !slices.Contains(n.enum, s) {
			if why, retired := n.retired[s]; retired {
				v.fail(path, "%q %s", s, why)
				return
			}
			v.fail(path, "%q is not one of %s", s, strings.Join(n.enum, ", "))
		}
	case kindBool:
		if _, ok := x.(bool); !ok {
			v.fail(path, "must be a boolean, got %s", jsonTypeName(x))
		}
	case kindNumber, kindInteger:
		f, ok := finiteNumber(x)
		if !ok {
			v.fail(path, "must be %s, got %s", n.kind, jsonTypeName(x))
			return
		}
		if n.kind == kindInteger && f != math.Trunc(f) {
			v.fail(path, "must be an integer, got %v", x)
			return
		}
		if !n.inRange(f) {
			v.fail(path, "%v is out of range %s", x, n.rangeText())
		}
	}
}

func (n *node) inRange(f float64) bool {
	if b := n.min; b != nil && (f < b.v || b.open && f == b.v) {
		return false
	}
	if b := n.max; b != nil && (f > b.v || b.open && f == b.v) {
		return false
	}
	return true
}

func (n *node) rangeText() string {
	lo, hi := "(-inf", "+inf)"
	if b := n.min; b != nil {
		lo = "[" + formatFloat(b.v)
		if b.open {
			lo = "(" + formatFloat(b.v)
		}
	}
	if b := n.max; b != nil {
		hi = formatFloat(b.v) + "]"
		if b.open {
			hi = formatFloat(b.v) + ")"
		}
	}
	return lo + ", " + hi
}

// checkDecision applies the Decision schema's conditional constraints to
// rules that passed the structural walk.
func checkDecision(rules map[string]any, v *validation) {
	voting, _ := rules["voting"].(map[string]any)
	algorithm, _ := voting["algorithm"].(string)
	if algorithm == "" {
		algorithm = "none"
	}
	threshold, hasThreshold := finiteNumber(voting["threshold"])
	switch algorithm {
	case "majority":
		if hasThreshold && threshold < 0.5 {
			v.fail("rules.voting.threshold", "majority needs a threshold of at least 0.5, got %s", formatFloat(threshold))
		}
	case "supermajority":
		if !hasThreshold {
			v.fail("rules.voting.threshold", "supermajority needs an explicit threshold above 0.5")
		} else if threshold <= 0.5 {
			v.fail("rules.voting.threshold", "supermajority needs a threshold above 0.5, got %s", formatFloat(threshold))
		}
	case "weighted":
		if w, _ := voting["weights"].(map[string]any); len(w) == 0 {
			v.fail("rules.voting.weights", "weighted voting needs a non-empty weights object")
		}
	}
	if q, ok := voting["quorum"].(map[string]any); ok && q["type"] == "percentage" {
		if value, ok := finiteNumber(q["value"]); ok {
			if value > 100 {
				v.fail("rules.voting.quorum.value", "a percentage quorum is on a 0-100 scale, got %s", formatFloat(value))
			} else if value > 0 && value < 1 {
				v.warn("rules.voting.quorum.value %s is read on a 0-100 scale (percent of declared participants), not as a fraction", formatFloat(value))
			}
		}
	}
	checkCommitmentRoles(rules, v)
	commitment, _ := rules["commitment"].(map[string]any)
	if algorithm != "none" && v.version <= 2 && commitment["require_vote_quorum"] != true {
		v.warn("schema_version %d %s voting without commitment.require_vote_quorum lets a commitment pass on an empty tally; declare schema_version 3 for fail-closed empty tallies", v.version, algorithm)
	}
}

// checkQuorum applies the Quorum schema's range for percentage thresholds.
func checkQuorum(rules map[string]any, v *validation) {
	if t, ok := rules["threshold"].(map[string]any); ok && t["type"] == "percentage" {
		if value, ok := finiteNumber(t["value"]); ok && value > 100 {
			v.fail("rules.threshold.value", "a percentage threshold is on a 1-100 scale, got %s", formatFloat(value))
		}
	}
	checkCommitmentRoles(rules, v)
}

// checkCommitmentRoles requires designated_roles when authority is
// designated_role: an authority rule that names no one can never be met.
func checkCommitmentRoles(rules map[string]any, v *validation) {
	c, _ := rules["commitment"].(map[string]any)
	if c["authority"] != "designated_role" {
		return
	}
	if roles, _ := c["designated_roles"].([]any); len(roles) == 0 {
		v.fail("rules.commitment.designated_roles", "authority designated_role needs at least one designated role")
	}
}

// finiteNumber returns x as a float64 when it is a finite JSON number.
func finiteNumber(x any) (float64, bool) {
	n, ok := x.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func jsonTypeName(x any) string {
	switch x := x.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		if _, ok := finiteNumber(x); !ok {
			return "a number out of range (" + string(x) + ")"
		}
		return "a number"
	default:
		return fmt.Sprintf("%T", x)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
