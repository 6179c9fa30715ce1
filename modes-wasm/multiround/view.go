package multiround

import (
	"bytes"
	"encoding/json"

	"github.com/concord-macp/concord/abi/guest"
)

type commitmentView struct {
	CommitmentID    string `json:"commitment_id"`
	Action          string `json:"action"`
	OutcomePositive bool   `json:"outcome_positive"`
	Sender          string `json:"sender"`
}

type stateView struct {
	Phase          string            `json:"phase"`
	ConvergedValue string            `json:"converged_value"`
	Round          uint64            `json:"round"`
	Final          map[string]string `json:"final"`
	Converged      bool              `json:"converged"`
	Commitment     *commitmentView   `json:"commitment"`
}

// View renders the state as the mode-state JSON object:
//
//	{"phase": Contributing|Converged|Committed,
//	 "converged_value": "" until converged,
//	 "round": n,
//	 "final": {participant: latest value},
//	 "converged": bool,
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
//
// Object keys come out sorted (encoding/json sorts map keys), so equal states
// render to equal bytes.
func (Mode) View(state []byte, _ *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	v := stateView{
		Phase:          s.Phase(),
		ConvergedValue: s.ConvergedValue(),
		Round:          s.Round,
		Final:          make(map[string]string, len(s.Contributions)),
		Converged:      s.Converged,
	}
	for _, c := range s.Contributions {
		v.Final[c.Participant] = c.Value
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
