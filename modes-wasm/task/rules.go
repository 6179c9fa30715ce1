package task

import (
	"encoding/json"
	"fmt"
	"strings"
)

// policyRules is the part of the bound policy's rules this mode reads itself
// (RFC-MACP-0012 §4.4). completion.require_output is commitment governance,
// which the host applies; commitment.* is the host's too.
type policyRules struct {
	Assignment struct {
		AllowReassignmentOnReject *bool `json:"allow_reassignment_on_reject"`
	} `json:"assignment"`
}

// parseRules reads the mode parameters from the rules JSON object text (""
// is the default policy). Keys the mode does not use are ignored; the host
// validated the descriptor when it was registered.
func parseRules(text string, s *state) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	var r policyRules
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return fmt.Errorf("policy rules: %w", err)
	}
	if a := r.Assignment.AllowReassignmentOnReject; a != nil {
		s.AllowReassignment = *a
	}
	return nil
}
