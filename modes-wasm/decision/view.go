package decision

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/concord-macp/concord/abi/guest"
)

// View renders state as the JSON object that tools, policies and the
// conformance fixtures read:
//
//	{"phase": "Proposal"|"Evaluation"|"Voting"|"Committed",
//	 "proposals": {id: {"proposal_id","option","rationale","sender"}},
//	 "proposal_order": [id, …],
//	 "evaluations": [{"proposal_id","recommendation","confidence","reason","sender"}, …],
//	 "objections": [{"proposal_id","severity","reason","sender"}, …],
//	 "votes": {proposal_id: {voter: {"vote","reason"}}},
//	 "ballots": [{"proposal_id","voter","vote","reason"}, …],
//	 "commitment": {"commitment_id","action","outcome_positive","sender"}}
//
// Arrays are in acceptance order ("ballots" is the order in which votes were
// cast); "commitment" is present only once the session is committed. Keys
// are written in sorted order, so the output is deterministic.
func (Mode) View(state []byte, _ *guest.Session) ([]byte, error) {
	s, err := Unmarshal(state)
	if err != nil {
		return nil, err
	}
	return s.AppendJSON(nil), nil
}

// AppendJSON appends the JSON rendering documented on Mode.View to b.
func (s *State) AppendJSON(b []byte) []byte {
	w := &jsonWriter{b: b, first: true}
	w.open('{')

	w.key("ballots")
	w.open('[')
	for _, v := range s.Votes {
		w.open('{')
		w.field("proposal_id", v.ProposalID)
		w.field("reason", v.Reason)
		w.field("vote", v.Vote)
		w.field("voter", v.Voter)
		w.close('}')
	}
	w.close(']')

	if c := s.Commitment; c != nil {
		w.key("commitment")
		w.open('{')
		w.field("action", c.Action)
		w.field("commitment_id", c.CommitmentID)
		w.key("outcome_positive")
		w.raw(strconv.AppendBool(nil, c.OutcomePositive))
		w.field("sender", c.Sender)
		w.close('}')
	}

	w.key("evaluations")
	w.open('[')
	for _, e := range s.Evaluations {
		w.open('{')
		w.key("confidence")
		w.raw(guest.AppendJSONFloat(nil, e.Confidence))
		w.field("proposal_id", e.ProposalID)
		w.field("reason", e.Reason)
		w.field("recommendation", e.Recommendation)
		w.field("sender", e.Sender)
		w.close('}')
	}
	w.close(']')

	w.key("objections")
	w.open('[')
	for _, o := range s.Objections {
		w.open('{')
		w.field("proposal_id", o.ProposalID)
		w.field("reason", o.Reason)
		w.field("sender", o.Sender)
		w.field("severity", o.Severity)
		w.close('}')
	}
	w.close(']')

	w.field("phase", s.Phase())

	w.key("proposal_order")
	w.open('[')
	for _, p := range s.Proposals {
		w.str(p.ProposalID)
	}
	w.close(']')

	proposals := slices.Clone(s.Proposals)
	slices.SortFunc(proposals, func(a, b Proposal) int { return cmp.Compare(a.ProposalID, b.ProposalID) })
	w.key("proposals")
	w.open('{')
	for _, p := range proposals {
		w.key(p.ProposalID)
		w.open('{')
		w.field("option", p.Option)
		w.field("proposal_id", p.ProposalID)
		w.field("rationale", p.Rationale)
		w.field("sender", p.Sender)
		w.close('}')
	}
	w.close('}')

	votes := slices.Clone(s.Votes)
	slices.SortFunc(votes, func(a, b Vote) int {
		return cmp.Or(cmp.Compare(a.ProposalID, b.ProposalID), cmp.Compare(a.Voter, b.Voter))
	})
	w.key("votes")
	w.open('{')
	for i, v := range votes {
		if i == 0 || v.ProposalID != votes[i-1].ProposalID {
			if i > 0 {
				w.close('}')
			}
			w.key(v.ProposalID)
			w.open('{')
		}
		w.key(v.Voter)
		w.open('{')
		w.field("reason", v.Reason)
		w.field("vote", v.Vote)
		w.close('}')
	}
	if len(votes) > 0 {
		w.close('}')
	}
	w.close('}')

	w.close('}')
	return w.b
}

// jsonWriter writes compact JSON and places the commas. first is true when
// the next value needs no comma before it: at the start of a container and
// right after a key.
type jsonWriter struct {
	b     []byte
	first bool
}

func (w *jsonWriter) sep() {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
}

func (w *jsonWriter) open(c byte) {
	w.sep()
	w.b = append(w.b, c)
	w.first = true
}

func (w *jsonWriter) close(c byte) {
	w.b = append(w.b, c)
	w.first = false
}

func (w *jsonWriter) key(k string) {
	w.sep()
	w.b = guest.AppendJSONString(w.b, k)
	w.b = append(w.b, ':')
	w.first = true
}

func (w *jsonWriter) str(s string) {
	w.sep()
	w.b = guest.AppendJSONString(w.b, s)
}

func (w *jsonWriter) raw(v []byte) {
	w.sep()
	w.b = append(w.b, v...)
}

func (w *jsonWriter) field(k, v string) {
	w.key(k)
	w.str(v)
}
