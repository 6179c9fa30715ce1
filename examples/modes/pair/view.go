package pair

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

type changeView struct {
	ChangeID string `json:"change_id"`
	Driver   string `json:"driver"`
	Content  string `json:"content"`
	Status   string `json:"status"`
	Comment  string `json:"comment"`
}

type stateView struct {
	Phase      string          `json:"phase"`
	Driver     string          `json:"driver"`
	Navigator  string          `json:"navigator"`
	Pending    *string         `json:"pending_change"`
	Swaps      int             `json:"swaps"`
	Changes    []changeView    `json:"changes"`
	Eligible   kit.Eligibility `json:"eligible"`
	Commitment *kit.Commitment `json:"commitment"`
}

// View renders the state as
//
//	{"phase": Driving|Reviewing|Committed, "driver": id, "navigator": id,
//	 "pending_change": change_id | null, "swaps": reviews so far,
//	 "changes": [{change_id, driver, content, status: pending|approved|rejected, comment}],
//	 "eligible": {positive, negative},
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
func (Mode) View(state []byte, sess *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	v := stateView{
		Phase:      s.Phase(),
		Driver:     s.Driver(sess.Participants),
		Navigator:  s.Navigator(sess.Participants),
		Swaps:      s.Reviews(),
		Changes:    make([]changeView, 0, len(s.Changes)),
		Eligible:   s.Eligible(),
		Commitment: s.Commitment,
	}
	if c := s.Pending(); c != nil {
		v.Pending = &c.ID
	}
	for _, c := range s.Changes {
		status := "pending"
		switch {
		case c.Reviewed && c.Approved:
			status = "approved"
		case c.Reviewed:
			status = "rejected"
		}
		v.Changes = append(v.Changes, changeView{ChangeID: c.ID, Driver: c.Driver, Content: c.Content, Status: status, Comment: c.Comment})
	}
	return kit.MarshalView(v)
}
