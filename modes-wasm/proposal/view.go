package proposal

import (
	"bytes"
	"encoding/json"

	"github.com/concord-macp/concord/abi/guest"
)

type viewJSON struct {
	Phase               string                  `json:"phase"`
	Accepts             map[string]string       `json:"accepts"`
	Proposals           map[string]proposalView `json:"proposals"`
	ProposalOrder       []string                `json:"proposal_order"`
	Rejections          []rejectionView         `json:"rejections"`
	CounterProposals    uint64                  `json:"counter_proposals"`
	ConvergedProposalID string                  `json:"converged_proposal_id"`
	Rules               rulesView               `json:"rules"`
}

type proposalView struct {
	ProposalID  string `json:"proposal_id"`
	Proposer    string `json:"proposer"`
	Disposition string `json:"disposition"`
	// Kind is "proposal" or "counter_proposal".
	Kind                 string   `json:"kind"`
	SupersedesProposalID string   `json:"supersedes_proposal_id"`
	Title                string   `json:"title"`
	Summary              string   `json:"summary"`
	Tags                 []string `json:"tags"`
}

type rejectionView struct {
	ProposalID string `json:"proposal_id"`
	Sender     string `json:"sender"`
	Terminal   bool   `json:"terminal"`
	// Standing is true for a terminal rejection whose proposal is still
	// live: it is what puts the session in TerminalRejected.
	Standing bool   `json:"standing"`
	Reason   string `json:"reason"`
}

type rulesView struct {
	Criterion           string `json:"criterion"`
	MaxRounds           uint64 `json:"max_rounds"`
	TerminalOnAnyReject bool   `json:"terminal_on_any_reject"`
}

// View renders the state as the mode-state JSON object. encoding/json writes
// map keys sorted, so the output is deterministic.
func (Mode) View(b []byte, sess *guest.Session) ([]byte, error) {
	s, err := decodeState(b)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		sess = &guest.Session{}
	}
	v := viewJSON{
		Phase:               s.Phase.String(),
		Accepts:             make(map[string]string, len(s.Accepts)),
		Proposals:           make(map[string]proposalView, len(s.Proposals)),
		ProposalOrder:       make([]string, 0, len(s.Proposals)),
		Rejections:          make([]rejectionView, 0, len(s.Rejections)),
		CounterProposals:    s.counterProposals(),
		ConvergedProposalID: s.convergedProposal(sess),
		Rules: rulesView{
			Criterion:           s.Criterion.String(),
			MaxRounds:           s.MaxRounds,
			TerminalOnAnyReject: s.TerminalOnAnyReject,
		},
	}
	for _, a := range s.Accepts {
		v.Accepts[a.Participant] = a.ProposalID
	}
	for i := range s.Proposals {
		p := &s.Proposals[i]
		pv := proposalView{
			ProposalID:           p.ID,
			Proposer:             p.Proposer,
			Disposition:          "Live",
			Kind:                 "proposal",
			SupersedesProposalID: p.Supersedes,
			Title:                p.Title,
			Summary:              p.Summary,
			Tags:                 append([]string{}, p.Tags...),
		}
		if p.Withdrawn {
			pv.Disposition = "Withdrawn"
		}
		if p.Supersedes != "" {
			pv.Kind = "counter_proposal"
		}
		v.Proposals[p.ID] = pv
		v.ProposalOrder = append(v.ProposalOrder, p.ID)
	}
	for _, r := range s.Rejections {
		v.Rejections = append(v.Rejections, rejectionView{
			ProposalID: r.ProposalID,
			Sender:     r.Sender,
			Terminal:   r.Terminal,
			Standing:   r.Terminal && s.liveProposal(r.ProposalID) != nil,
			Reason:     r.Reason,
		})
	}
	return marshal(v)
}

// marshal encodes v without HTML escaping and without a trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
