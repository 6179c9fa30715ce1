package swarm

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

type contributionView struct {
	ContributionID string   `json:"contribution_id"`
	Sender         string   `json:"sender"`
	Content        string   `json:"content"`
	Endorsers      []string `json:"endorsers"`
}

type stateView struct {
	Phase         string             `json:"phase"`
	Quorum        uint64             `json:"quorum"`
	Electorate    int                `json:"electorate"`
	Contributions []contributionView `json:"contributions"`
	Endorsements  map[string]string  `json:"endorsements"`
	NotEndorsed   []string           `json:"not_endorsed"`
	ConvergedOn   *string            `json:"converged_on"`
	Eligible      kit.Eligibility    `json:"eligible"`
	Commitment    *kit.Commitment    `json:"commitment"`
}

// View renders the state as
//
//	{"phase": Open|Converged|Deadlocked|Committed, "quorum": Q, "electorate": N,
//	 "contributions": [{contribution_id, sender, content, endorsers: [...]}],
//	 "endorsements": {endorser: contribution_id},
//	 "not_endorsed": [participants yet to endorse],
//	 "converged_on": contribution_id | null,
//	 "eligible": {positive, negative},
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
func (Mode) View(state []byte, sess *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	n := len(sess.Participants)
	v := stateView{
		Phase:         s.Phase(n),
		Quorum:        s.Quorum,
		Electorate:    n,
		Contributions: make([]contributionView, 0, len(s.Contributions)),
		Endorsements:  make(map[string]string, len(s.Endorsements)),
		NotEndorsed:   []string{},
		Eligible:      s.Eligible(n),
		Commitment:    s.Commitment,
	}
	for _, c := range s.Contributions {
		cv := contributionView{ContributionID: c.ID, Sender: c.Sender, Content: c.Content, Endorsers: []string{}}
		for _, e := range s.Endorsements {
			if e.ContributionID == c.ID {
				cv.Endorsers = append(cv.Endorsers, e.Endorser)
			}
		}
		v.Contributions = append(v.Contributions, cv)
	}
	for _, e := range s.Endorsements {
		v.Endorsements[e.Endorser] = e.ContributionID
	}
	for _, p := range sess.Participants {
		if s.endorsement(p) == nil {
			v.NotEndorsed = append(v.NotEndorsed, p)
		}
	}
	if id, ok := s.ConvergedOn(); ok {
		v.ConvergedOn = &id
	}
	return kit.MarshalView(v)
}
