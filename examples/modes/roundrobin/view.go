package roundrobin

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

type contributionView struct {
	Turn    uint64 `json:"turn"`
	Round   uint64 `json:"round"`
	Sender  string `json:"sender"`
	Content string `json:"content"`
}

type stateView struct {
	Phase         string             `json:"phase"`
	Order         []string           `json:"order"`
	Rounds        uint64             `json:"rounds"`
	Round         *uint64            `json:"round"`
	Turn          *uint64            `json:"turn"`
	Holder        *string            `json:"holder"`
	TurnsTaken    uint64             `json:"turns_taken"`
	Passes        uint64             `json:"passes"`
	Contributions []contributionView `json:"contributions"`
	Eligible      kit.Eligibility    `json:"eligible"`
	Commitment    *kit.Commitment    `json:"commitment"`
}

// View renders the state as
//
//	{"phase": InProgress|Complete|Committed,
//	 "order": [participant...], "rounds": N,
//	 "round": current 1-based round | null once complete,
//	 "turn": current 1-based turn | null, "holder": participant | null,
//	 "turns_taken": n, "passes": n,
//	 "contributions": [{turn, round, sender, content}],
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
		Order:         append([]string{}, sess.Participants...),
		Rounds:        s.Rounds,
		TurnsTaken:    s.Turns,
		Passes:        s.Turns - uint64(len(s.Contributions)),
		Contributions: make([]contributionView, 0, len(s.Contributions)),
		Eligible:      s.Eligible(n),
		Commitment:    s.Commitment,
	}
	if holder := s.Holder(sess.Participants); holder != "" {
		turn, round := s.Turns+1, s.Turns/uint64(n)+1
		v.Turn, v.Round, v.Holder = &turn, &round, &holder
	}
	for _, c := range s.Contributions {
		v.Contributions = append(v.Contributions, contributionView{
			Turn: c.Turn, Round: (c.Turn-1)/uint64(max(n, 1)) + 1, Sender: c.Sender, Content: c.Content,
		})
	}
	return kit.MarshalView(v)
}
