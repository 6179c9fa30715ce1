package quorum

import (
	"bytes"
	"encoding/json"

	"github.com/concord-macp/concord/abi/guest"
)

type requestView struct {
	RequestID         string `json:"request_id"`
	Action            string `json:"action"`
	Summary           string `json:"summary"`
	Details           []byte `json:"details"`
	RequiredApprovals uint32 `json:"required_approvals"`
	// EffectiveRequiredApprovals is what eligibility uses: the policy
	// threshold when it applies, else required_approvals.
	EffectiveRequiredApprovals uint64 `json:"effective_required_approvals"`
	RequestedBy                string `json:"requested_by"`
}

type thresholdView struct {
	Type     string `json:"type"`
	Value    uint64 `json:"value"`
	Applies  bool   `json:"applies"`
	Required uint64 `json:"required_approvals"`
}

type ballotView struct {
	Ballot string `json:"ballot"`
	Reason string `json:"reason"`
}

type countsView struct {
	Approve    uint64 `json:"approve"`
	Reject     uint64 `json:"reject"`
	Abstain    uint64 `json:"abstain"`
	Cast       uint64 `json:"cast"`
	Electorate uint64 `json:"electorate"`
	Remaining  uint64 `json:"remaining"`
}

type commitmentView struct {
	CommitmentID    string `json:"commitment_id"`
	Action          string `json:"action"`
	OutcomePositive bool   `json:"outcome_positive"`
	Sender          string `json:"sender"`
}

type stateView struct {
	Phase           string                `json:"phase"`
	Request         *requestView          `json:"request"`
	PolicyThreshold *thresholdView        `json:"policy_threshold"`
	Ballots         map[string]ballotView `json:"ballots"`
	BallotOrder     []string              `json:"ballot_order"`
	Counts          countsView            `json:"counts"`
	Eligible        string                `json:"eligible_outcome"`
	Commitment      *commitmentView       `json:"commitment"`
}

// View renders the state as the mode-state JSON object:
//
//	{"phase": Pending|Voting|ThresholdReached|ThresholdUnreachable|Committed,
//	 "request": null | {request_id, action, summary, details (base64),
//	            required_approvals, effective_required_approvals, requested_by},
//	 "policy_threshold": null | {type, value, applies, required_approvals},
//	 "ballots": {voter: {ballot: APPROVE|REJECT|ABSTAIN, reason}},
//	 "ballot_order": [voter...],
//	 "counts": {approve, reject, abstain, cast, electorate, remaining},
//	 "eligible_outcome": none|positive|negative,
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
//
// Object keys come out sorted (encoding/json sorts map keys), arrays in
// acceptance order, so equal states render to equal bytes.
func (Mode) View(state []byte, _ *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	v := stateView{
		Phase:       s.Phase(),
		Ballots:     make(map[string]ballotView, len(s.Ballots)),
		BallotOrder: make([]string, 0, len(s.Ballots)),
		Counts: countsView{
			Approve:    s.Count(Approve),
			Reject:     s.Count(Reject),
			Abstain:    s.Count(Abstain),
			Cast:       uint64(len(s.Ballots)),
			Electorate: s.Electorate,
			Remaining:  s.Remaining(),
		},
		Eligible: s.Eligible(),
	}
	if q := s.Request; q != nil {
		details := q.Details
		if details == nil {
			details = []byte{}
		}
		v.Request = &requestView{
			RequestID:                  q.RequestID,
			Action:                     q.Action,
			Summary:                    q.Summary,
			Details:                    details,
			RequiredApprovals:          q.RequiredApprovals,
			EffectiveRequiredApprovals: s.Required(),
			RequestedBy:                q.RequestedBy,
		}
	}
	if t := s.Threshold; t != nil {
		v.PolicyThreshold = &thresholdView{Type: t.Type, Value: t.Value, Applies: t.Applies, Required: t.Required}
	}
	for _, b := range s.Ballots {
		v.Ballots[b.Voter] = ballotView{Ballot: b.Choice.String(), Reason: b.Reason}
		v.BallotOrder = append(v.BallotOrder, b.Voter)
	}
	if c := s.Commitment; c != nil {
		v.Commitment = &commitmentView{
			CommitmentID:    c.CommitmentID,
			Action:          c.Action,
			OutcomePositive: c.OutcomePositive,
			Sender:          c.Sender,
		}
	}
	return marshalJSON(v)
}

// marshalJSON encodes v without HTML escaping and without a trailing newline.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
