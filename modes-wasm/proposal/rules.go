package proposal

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// policyRules is the part of the bound policy's rules this mode reads
// itself (RFC-MACP-0012 §4.3). commitment.* is the host's business, and so is
// the commitment-time governance over max_rounds.
type policyRules struct {
	Acceptance struct {
		Criterion *string `json:"criterion"`
	} `json:"acceptance"`
	CounterProposal struct {
		MaxRounds *float64 `json:"max_rounds"`
	} `json:"counter_proposal"`
	Rejection struct {
		TerminalOnAnyReject *bool `json:"terminal_on_any_reject"`
	} `json:"rejection"`
}

// maxRoundsLimit bounds max_rounds to a value every language's integer
// handles alike.
const maxRoundsLimit = 1 << 31

// parseRules reads the mode parameters from the rules JSON object text ("" is
// the default policy). Keys the mode does not use are ignored; the host
// validated the descriptor when it was registered.
func parseRules(text string, s *state) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	var r policyRules
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return fmt.Errorf("policy rules: %w", err)
	}
	if c := r.Acceptance.Criterion; c != nil {
		switch *c {
		case "all_parties":
			s.Criterion = criterionAllParties
		case "counterparty":
			s.Criterion = criterionCounterparty
		case "initiator":
			s.Criterion = criterionInitiator
		default:
			return fmt.Errorf("policy rules: unknown acceptance.criterion %q", *c)
		}
	}
	if m := r.CounterProposal.MaxRounds; m != nil {
		if *m < 0 || *m != math.Trunc(*m) || *m >= maxRoundsLimit {
			return fmt.Errorf("policy rules: counter_proposal.max_rounds must be an integer in 0..%d", maxRoundsLimit-1)
		}
		s.MaxRounds = uint64(*m)
	}
	if t := r.Rejection.TerminalOnAnyReject; t != nil {
		s.TerminalOnAnyReject = *t
	}
	return nil
}
