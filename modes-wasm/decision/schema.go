package decision

import _ "embed"

// ViewSchema is the JSON Schema (draft-07) of the state view View renders.
// The mode declares its view with it: the policy engine type-checks
// uploaded Rego against it (input.state), and the tests check every view
// against it. Only the host links it; a module that never reads it does
// not carry it.
//
//go:embed view.schema.json
var ViewSchema []byte
