// Package swarm is the MPLP swarm collaboration pattern as a Concord
// extension mode, ext.mplp.swarm.v1, written on abi/guest's Machine.
//
// Any declared participant may contribute, any number of times, and each
// participant endorses exactly one contribution (its own included); an
// endorsement is final. The swarm converges when a quorum of participants
// endorse the same contribution (a positive Commitment is then eligible),
// and is deadlocked when no contribution can reach the quorum any more
// (a negative one is). Either way it accepts nothing more but the
// Commitment.
//
// The quorum is a majority of the declared participants (⌊N/2⌋+1) unless
// the bound policy's rules say {"swarm": {"quorum": Q}} (1 ≤ Q ≤ N) or
// {"swarm": {"quorum_percent": P}} (1 ≤ P ≤ 100, Q = ⌈P·N/100⌉).
//
// Messages (payloads are JSON objects; unknown keys are refused):
//
//	Contribute {"contribution_id", "content"}
//	Endorse    {"contribution_id", "comment"?}
//
// Refusals: FORBIDDEN for a sender who is not a declared participant;
// INVALID_ENVELOPE for a malformed payload, a blank id or content, a reused
// contribution id, an endorsement of an unknown contribution or a second
// one, and any Contribute or Endorse once converged or deadlocked. Phases:
// Open, Converged, Deadlocked, Committed.
package swarm

import "github.com/concord-macp/concord/abi/guest"

//go:generate go tool guestgen

// ModeName is the mode's id.
const ModeName = "ext.mplp.swarm.v1"

// State is a session's state; fields without a wire tag are only in the view.
type State struct {
	Quorum        uint64            `wire:"2" json:"quorum"`
	Electorate    int               `json:"electorate"`
	Contributions []Contribution    `wire:"3" json:"contributions"`
	Endorsements  []Endorsement     `wire:"4"`
	EndorsedBy    map[string]string `json:"endorsements"`
	NotEndorsed   []string          `json:"not_endorsed"`
	ConvergedOn   *string           `json:"converged_on"`
}

// Contribution is a contributed proposal; Endorsers is only in the view.
type Contribution struct {
	ID        string   `wire:"1" json:"contribution_id"`
	Sender    string   `wire:"2" json:"sender"`
	Content   string   `wire:"3" json:"content"`
	Endorsers []string `json:"endorsers"`
}

// Endorsement is a participant's final endorsement, in acceptance order.
type Endorsement struct {
	Endorser       string `wire:"1"`
	ContributionID string `wire:"2"`
	Comment        string `wire:"3"`
}

type rules struct {
	Quorum        *uint64 `json:"quorum"`
	QuorumPercent *uint64 `json:"quorum_percent" guest:"min=1,max=100"`
}

type contributePayload struct {
	ContributionID string `json:"contribution_id" guest:"nonblank"`
	Content        string `json:"content" guest:"nonblank"`
}

type endorsePayload struct {
	ContributionID string `json:"contribution_id"`
	Comment        string `json:"comment"`
}

// Mode is the swarm mode.
var Mode = &guest.Machine[State, *State]{
	Descriptor: guest.Descriptor{Mode: ModeName, ModeVersion: "1.0.0", Title: "MPLP Swarm", ParticipantModel: "quorum",
		Description: "Declared participants contribute freely and each endorses one contribution; converges when a quorum endorses the same one.",
		SchemaURIs:  map[string]string{"docs": "examples/modes/README.md#swarm"}},
	CommitmentField: 5,
	MinParticipants: 1,
	Start:           start,
	Status:          status,
	BeforeView:      view,
	Messages: []guest.Message[*State]{
		guest.On("Contribute", guest.Participants, onContribute).In("Open"),
		guest.On("Endorse", guest.Participants, onEndorse).In("Open"),
	},
}

func start(s *State, req *guest.StepRequest) error {
	n := uint64(len(req.Session.Participants))
	var r rules
	if _, err := guest.ReadRules(req.Session.PolicyRules, "swarm", &r); err != nil {
		return err
	}
	switch s.Quorum = n/2 + 1; {
	case r.Quorum != nil && r.QuorumPercent != nil:
		return guest.Invalid("policy rules swarm: set quorum or quorum_percent, not both")
	case r.Quorum != nil && (*r.Quorum < 1 || *r.Quorum > n):
		return guest.Invalid("policy rules swarm.quorum must be between 1 and the %d declared participants, got %d", n, *r.Quorum)
	case r.Quorum != nil:
		s.Quorum = *r.Quorum
	case r.QuorumPercent != nil:
		s.Quorum = (*r.QuorumPercent*n + 99) / 100
	}
	return nil
}

func onContribute(s *State, req *guest.StepRequest, p *contributePayload) error {
	if s.contribution(p.ContributionID) != nil {
		return guest.Invalid("contribution_id %q is already taken", p.ContributionID)
	}
	s.Contributions = append(s.Contributions, Contribution{ID: p.ContributionID, Sender: req.Envelope.Sender, Content: p.Content})
	return nil
}

func onEndorse(s *State, req *guest.StepRequest, p *endorsePayload) error {
	if s.contribution(p.ContributionID) == nil {
		return guest.Invalid("unknown contribution %q", p.ContributionID)
	}
	for _, e := range s.Endorsements {
		if e.Endorser == req.Envelope.Sender {
			return guest.Invalid("%s already endorsed %q; endorsements are final", e.Endorser, e.ContributionID)
		}
	}
	s.Endorsements = append(s.Endorsements, Endorsement{Endorser: req.Envelope.Sender, ContributionID: p.ContributionID, Comment: p.Comment})
	return nil
}

func (s *State) contribution(id string) *Contribution {
	for i := range s.Contributions {
		if s.Contributions[i].ID == id {
			return &s.Contributions[i]
		}
	}
	return nil
}

// leader returns the most endorsed contribution (the first of a tie) and
// its endorsements.
func (s *State) leader() (id string, votes uint64) {
	for _, c := range s.Contributions {
		var n uint64
		for _, e := range s.Endorsements {
			if e.ContributionID == c.ID {
				n++
			}
		}
		if n > votes {
			id, votes = c.ID, n
		}
	}
	return id, votes
}

func status(s *State, sess *guest.Session) guest.Status {
	id, votes := s.leader()
	switch remaining := uint64(max(len(sess.Participants)-len(s.Endorsements), 0)); {
	case votes >= s.Quorum:
		return guest.Status{Phase: "Converged", Eligible: guest.Eligibility{Positive: true}, Why: "the swarm converged on " + id}
	case votes+remaining < s.Quorum:
		return guest.Status{Phase: "Deadlocked", Eligible: guest.Eligibility{Negative: true}, Why: "no contribution can reach the quorum"}
	}
	return guest.Status{Phase: "Open", Why: "no contribution has the quorum of endorsements yet"}
}

func view(s *State, sess *guest.Session) {
	s.Electorate, s.EndorsedBy, s.NotEndorsed = len(sess.Participants), map[string]string{}, []string{}
	for i := range s.Contributions {
		c := &s.Contributions[i]
		c.Endorsers = []string{}
		for _, e := range s.Endorsements {
			if e.ContributionID == c.ID {
				c.Endorsers = append(c.Endorsers, e.Endorser)
			}
		}
	}
	for _, e := range s.Endorsements {
		s.EndorsedBy[e.Endorser] = e.ContributionID
	}
	for _, p := range sess.Participants {
		if _, ok := s.EndorsedBy[p]; !ok {
			s.NotEndorsed = append(s.NotEndorsed, p)
		}
	}
	if id, votes := s.leader(); votes >= s.Quorum {
		s.ConvergedOn = &id
	}
}
