package handoff

import (
	"bytes"
	"encoding/json"

	"github.com/concord-macp/concord/abi/guest"
)

// offerView is one entry of the view's "offers" object.
type offerView struct {
	HandoffID         string `json:"handoff_id"`
	TargetParticipant string `json:"target_participant"`
	Scope             string `json:"scope"`
	Reason            string `json:"reason"`
	OfferedBy         string `json:"offered_by"`
	OfferedAtUnixMs   int64  `json:"offered_at_unix_ms"`
	Disposition       string `json:"disposition"`
	AcceptedBy        string `json:"accepted_by"`
	DeclinedBy        string `json:"declined_by"`
	ResponseReason    string `json:"response_reason"`
	Implicit          bool   `json:"implicit"`
}

// contextView is one accepted HandoffContext; Context is base64 in JSON, as
// the canonical JSON mapping writes bytes.
type contextView struct {
	ContentType string `json:"content_type"`
	Context     []byte `json:"context"`
	Sender      string `json:"sender"`
}

type commitmentView struct {
	CommitmentID    string `json:"commitment_id"`
	Action          string `json:"action"`
	OutcomePositive bool   `json:"outcome_positive"`
	Sender          string `json:"sender"`
}

type stateView struct {
	Phase                   string                   `json:"phase"`
	ImplicitAcceptTimeoutMs int64                    `json:"implicit_accept_timeout_ms"`
	Offers                  map[string]offerView     `json:"offers"`
	OfferOrder              []string                 `json:"offer_order"`
	Contexts                map[string][]contextView `json:"contexts"`
	Commitment              *commitmentView          `json:"commitment"`
}

// View renders the state as the mode-state JSON object:
//
//	{"phase", "implicit_accept_timeout_ms",
//	 "offers": {handoff_id: {handoff_id, target_participant, scope, reason,
//	            offered_by, offered_at_unix_ms, disposition, accepted_by,
//	            declined_by, response_reason, implicit}},
//	 "offer_order": [handoff_id...],
//	 "contexts": {handoff_id: [{content_type, context, sender}...]},
//	 "commitment": null | {commitment_id, action, outcome_positive, sender}}
//
// Object keys come out sorted (encoding/json sorts map keys), arrays in
// history order, so equal states render to equal bytes.
func (Mode) View(state []byte, _ *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	v := stateView{
		Phase:                   s.Phase(),
		ImplicitAcceptTimeoutMs: s.ImplicitAcceptTimeoutMs,
		Offers:                  make(map[string]offerView, len(s.Offers)),
		OfferOrder:              make([]string, 0, len(s.Offers)),
		Contexts:                make(map[string][]contextView),
	}
	for _, o := range s.Offers {
		ov := offerView{
			HandoffID:         o.HandoffID,
			TargetParticipant: o.TargetParticipant,
			Scope:             o.Scope,
			Reason:            o.Reason,
			OfferedBy:         o.OfferedBy,
			OfferedAtUnixMs:   o.OfferedAtUnixMs,
			Disposition:       o.Disposition.String(),
			ResponseReason:    o.ResponseReason,
			Implicit:          o.Implicit,
		}
		switch o.Disposition {
		case Accepted:
			ov.AcceptedBy = o.RespondedBy
		case Declined:
			ov.DeclinedBy = o.RespondedBy
		}
		v.Offers[o.HandoffID] = ov
		v.OfferOrder = append(v.OfferOrder, o.HandoffID)
	}
	for _, c := range s.Contexts {
		ctx := c.Context
		if ctx == nil {
			ctx = []byte{}
		}
		v.Contexts[c.HandoffID] = append(v.Contexts[c.HandoffID], contextView{
			ContentType: c.ContentType,
			Context:     ctx,
			Sender:      c.Sender,
		})
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
