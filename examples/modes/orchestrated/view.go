package orchestrated

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

type itemView struct {
	ItemID      string `json:"item_id"`
	Assignee    string `json:"assignee"`
	Description string `json:"description"`
	Status      string `json:"status"`
	Reports     uint64 `json:"reports"`
	Detail      string `json:"detail"`
}

type countsView struct {
	Open    int `json:"open"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Revoked int `json:"revoked"`
}

type stateView struct {
	Phase        string          `json:"phase"`
	Orchestrator string          `json:"orchestrator"`
	Items        []itemView      `json:"items"`
	Counts       countsView      `json:"counts"`
	Eligible     kit.Eligibility `json:"eligible"`
	Commitment   *kit.Commitment `json:"commitment"`
}

// View renders the state as
//
//	{"phase": Idle|Working|Complete|Committed, "orchestrator": initiator,
//	 "items": [{item_id, assignee, description, status: open|done|failed|revoked, reports, detail}],
//	 "counts": {open, done, failed, revoked},
//	 "eligible": {positive, negative},
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
func (Mode) View(state []byte, sess *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	v := stateView{
		Phase:        s.Phase(),
		Orchestrator: sess.Initiator,
		Items:        make([]itemView, 0, len(s.Items)),
		Counts: countsView{
			Open: s.Count(ItemOpen), Done: s.Count(ItemDone), Failed: s.Count(ItemFailed), Revoked: s.Count(ItemRevoked),
		},
		Eligible:   s.Eligible(),
		Commitment: s.Commitment,
	}
	for _, it := range s.Items {
		v.Items = append(v.Items, itemView{
			ItemID: it.ID, Assignee: it.Assignee, Description: it.Description,
			Status: it.Status.String(), Reports: it.Reports, Detail: it.Detail,
		})
	}
	return kit.MarshalView(v)
}
