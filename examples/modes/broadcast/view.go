package broadcast

import (
	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

type announcementView struct {
	AnnouncementID string `json:"announcement_id"`
	Content        string `json:"content"`
}

type stateView struct {
	Phase        string            `json:"phase"`
	Announcer    string            `json:"announcer"`
	Announcement *announcementView `json:"announcement"`
	Recipients   []string          `json:"recipients"`
	Acknowledged map[string]string `json:"acknowledged"`
	AckOrder     []string          `json:"ack_order"`
	Pending      []string          `json:"pending"`
	Eligible     kit.Eligibility   `json:"eligible"`
	Commitment   *kit.Commitment   `json:"commitment"`
}

// View renders the state as
//
//	{"phase": Pending|Announced|Acknowledged|Committed, "announcer": initiator,
//	 "announcement": null | {announcement_id, content},
//	 "recipients": [participant...], "acknowledged": {recipient: note},
//	 "ack_order": [recipient...], "pending": [recipients yet to acknowledge],
//	 "eligible": {positive, negative},
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
func (Mode) View(state []byte, sess *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	recipients := Recipients(sess)
	v := stateView{
		Phase:        s.Phase(len(recipients)),
		Announcer:    sess.Initiator,
		Recipients:   recipients,
		Acknowledged: make(map[string]string, len(s.Acks)),
		AckOrder:     make([]string, 0, len(s.Acks)),
		Pending:      []string{},
		Eligible:     s.Eligible(len(recipients)),
		Commitment:   s.Commitment,
	}
	if a := s.Announcement; a != nil {
		v.Announcement = &announcementView{AnnouncementID: a.ID, Content: a.Content}
	}
	for _, a := range s.Acks {
		v.Acknowledged[a.Recipient] = a.Note
		v.AckOrder = append(v.AckOrder, a.Recipient)
	}
	for _, r := range recipients {
		if !s.acked(r) {
			v.Pending = append(v.Pending, r)
		}
	}
	return kit.MarshalView(v)
}
