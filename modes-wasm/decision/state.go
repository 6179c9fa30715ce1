package decision

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
)

// The state is a protobuf-wire message written by hand. Its top-level fields
// are, in this order: the format version; then one length-delimited group
// each for the accepted Proposals, Evaluations, Objections and Votes, present
// once the group has a record, holding its records (each a field 1) in
// acceptance order; then at most one Commitment record. Because every group
// has a fixed place, the same history always yields the same bytes. A step
// reads the top-level framing (a handful of fields) and only the groups its
// rules look at — the proposals to find its target, the votes for a ballot —
// and adds its record by splicing it onto the end of its group, so the cost
// of a step does not grow with the evaluations and objections a long session
// accumulates.
const (
	fieldVersion    protowire.Number = 1
	fieldProposal   protowire.Number = 2
	fieldEvaluation protowire.Number = 3
	fieldObjection  protowire.Number = 4
	fieldVote       protowire.Number = 5
	fieldCommitment protowire.Number = 6
)

// stateVersion is the version of the state encoding written by this package.
// Version 1 kept every record at the top level; a session is pinned to the
// module it started with, so a version-1 session keeps running the module
// that reads it.
const stateVersion = 2

// fieldRecord is the field number of a record inside its group.
const fieldRecord protowire.Number = 1

// Phases of a Decision session, as reported by State.Phase.
const (
	PhaseProposal   = "Proposal"
	PhaseEvaluation = "Evaluation"
	PhaseVoting     = "Voting"
	PhaseCommitted  = "Committed"
)

// State is the decoded mode state of one Decision session.
type State struct {
	Proposals   []Proposal   // in acceptance order
	Evaluations []Evaluation // in acceptance order
	Objections  []Objection  // in acceptance order
	Votes       []Vote       // in acceptance order
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *Commitment
}

// Proposal is an accepted Proposal. Its supporting_data is not kept: it stays
// in the session log and no rule of the mode reads it.
type Proposal struct {
	ProposalID string
	Option     string
	Rationale  string
	Sender     string
}

// Evaluation is an accepted Evaluation.
type Evaluation struct {
	ProposalID     string
	Recommendation string
	Confidence     float64
	Reason         string
	Sender         string
}

// Objection is an accepted Objection; Severity is never empty.
type Objection struct {
	ProposalID string
	Severity   string
	Reason     string
	Sender     string
}

// Vote is an accepted ballot.
type Vote struct {
	ProposalID string
	Voter      string
	Vote       string
	Reason     string
}

// Commitment is the part of the accepted Commitment the mode keeps, the
// guest SDK's shared record. Decision encodes it its own way, like its other
// records (see appendCommitment), so that stored sessions keep their bytes.
type Commitment = guest.CommitmentRecord

// Phase derives the session's phase from its history.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case len(s.Votes) > 0:
		return PhaseVoting
	case len(s.Proposals) > 0:
		return PhaseEvaluation
	default:
		return PhaseProposal
	}
}

// initialState returns the encoding of a session with no history.
func initialState() []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, fieldVersion, protowire.VarintType), stateVersion)
}

// fieldSender holds the sender (the voter, for a Vote) in every record. The
// other field numbers of a record are those of the matching payload, so one
// decoder serves both; Step overwrites the sender a payload might carry.
const fieldSender protowire.Number = 15

// Marshal returns the canonical encoding of s.
func (s *State) Marshal() []byte {
	b := initialState()
	group := func(num protowire.Number, n int, rec func(int) []byte) {
		if n == 0 {
			return
		}
		var g []byte
		for i := range n {
			g = guest.AppendRecord(g, fieldRecord, rec(i))
		}
		b = guest.AppendRecord(b, num, g)
	}
	group(fieldProposal, len(s.Proposals), func(i int) []byte { return s.Proposals[i].appendTo(nil) })
	group(fieldEvaluation, len(s.Evaluations), func(i int) []byte { return s.Evaluations[i].appendTo(nil) })
	group(fieldObjection, len(s.Objections), func(i int) []byte { return s.Objections[i].appendTo(nil) })
	group(fieldVote, len(s.Votes), func(i int) []byte { return s.Votes[i].appendTo(nil) })
	if s.Commitment != nil {
		b = guest.AppendRecord(b, fieldCommitment, appendCommitment(nil, s.Commitment))
	}
	return b
}

// Unmarshal decodes a state written by Marshal or Step. Empty input is the
// state of a session with no history.
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	err := walkState(b, func(num protowire.Number, rec []byte) error {
		switch num {
		case fieldProposal:
			p, err := decodeProposal(rec, false)
			s.Proposals = append(s.Proposals, p)
			return err
		case fieldEvaluation:
			e, err := decodeEvaluation(rec, false)
			s.Evaluations = append(s.Evaluations, e)
			return err
		case fieldObjection:
			o, err := decodeObjection(rec, false)
			s.Objections = append(s.Objections, o)
			return err
		case fieldVote:
			v, err := decodeVote(rec, false)
			s.Votes = append(s.Votes, v)
			return err
		default:
			c, err := decodeCommitmentRecord(rec)
			s.Commitment = &c
			return err
		}
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// errCorrupt reports state bytes that this package did not write.
var errCorrupt = errors.New("decision: corrupt mode state")

// span is where one top-level field of an encoded state lies: its tag
// starts at start, its value (a group's records, or the commitment record)
// is b[content:end].
type span struct {
	start, content, end int
	present             bool
}

// layout is the top-level framing of an encoded state: one span per group
// and for the commitment, by field number.
type layout [fieldCommitment + 1]span

// readLayout checks the top-level framing of an encoded state and returns
// where each group lies. It reads a handful of fields, never the records.
func readLayout(b []byte) (layout, error) {
	var l layout
	if len(b) == 0 {
		return l, nil
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fieldVersion || typ != protowire.VarintType {
		return l, errCorrupt
	}
	v, m := protowire.ConsumeVarint(b[n:])
	if m < 0 {
		return l, errCorrupt
	}
	if v != stateVersion {
		return l, fmt.Errorf("decision: unsupported mode state version %d", v)
	}
	off := n + m
	last := fieldVersion
	for off < len(b) {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 || typ != protowire.BytesType || num <= last || num > fieldCommitment {
			return l, errCorrupt
		}
		val, m := protowire.ConsumeBytes(b[off+n:])
		if m < 0 || (num != fieldCommitment && len(val) == 0) {
			return l, errCorrupt
		}
		l[num] = span{start: off, content: off + n + m - len(val), end: off + n + m, present: true}
		last = num
		off += n + m
	}
	return l, nil
}

// eachRecord calls fn with every record of a group's value.
func eachRecord(group []byte, fn func(rec []byte) error) error {
	for len(group) > 0 {
		num, typ, n := protowire.ConsumeTag(group)
		if n < 0 || num != fieldRecord || typ != protowire.BytesType {
			return errCorrupt
		}
		rec, m := protowire.ConsumeBytes(group[n:])
		if m < 0 {
			return errCorrupt
		}
		if err := fn(rec); err != nil {
			return err
		}
		group = group[n+m:]
	}
	return nil
}

// walkState checks the framing of an encoded state and calls fn with every
// record and its kind (the field number of its group, or fieldCommitment),
// in canonical order. fn checks the record itself.
func walkState(b []byte, fn func(num protowire.Number, rec []byte) error) error {
	l, err := readLayout(b)
	if err != nil {
		return err
	}
	for num := fieldProposal; num <= fieldCommitment; num++ {
		sp := l[num]
		if !sp.present {
			continue
		}
		val := b[sp.content:sp.end]
		if num == fieldCommitment {
			err = fn(num, val)
		} else {
			err = eachRecord(val, func(rec []byte) error { return fn(num, rec) })
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errCorrupt, err)
		}
	}
	return nil
}

// insertRecord returns a new state: state, laid out as l, with rec added at
// the end of its group (num), or as the commitment. The input is never
// modified or aliased.
func insertRecord(state []byte, l layout, num protowire.Number, rec []byte) []byte {
	if num == fieldCommitment {
		out := make([]byte, 0, len(state)+protowire.SizeTag(num)+protowire.SizeBytes(len(rec)))
		return guest.AppendRecord(append(out, state...), num, rec)
	}
	recLen := protowire.SizeTag(fieldRecord) + protowire.SizeBytes(len(rec))
	if sp := l[num]; sp.present {
		old := state[sp.content:sp.end]
		grown := len(old) + recLen
		out := make([]byte, 0, len(state)+recLen+protowire.SizeVarint(uint64(grown)))
		out = append(out, state[:sp.start]...)
		out = protowire.AppendTag(out, num, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(grown))
		out = append(out, old...)
		out = guest.AppendRecord(out, fieldRecord, rec)
		return append(out, state[sp.end:]...)
	}
	at := len(state)
	for later := num + 1; later <= fieldCommitment; later++ {
		if l[later].present {
			at = l[later].start
			break
		}
	}
	out := make([]byte, 0, len(state)+protowire.SizeTag(num)+protowire.SizeVarint(uint64(recLen))+recLen)
	out = append(out, state[:at]...)
	out = protowire.AppendTag(out, num, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(recLen))
	out = guest.AppendRecord(out, fieldRecord, rec)
	return append(out, state[at:]...)
}

func (p *Proposal) appendTo(b []byte) []byte {
	b = guest.AppendString(b, 1, p.ProposalID)
	b = guest.AppendString(b, 2, p.Option)
	b = guest.AppendString(b, 3, p.Rationale)
	return guest.AppendString(b, fieldSender, p.Sender)
}

func (e *Evaluation) appendTo(b []byte) []byte {
	b = guest.AppendString(b, 1, e.ProposalID)
	b = guest.AppendString(b, 2, e.Recommendation)
	if e.Confidence != 0 { // also drops -0, which decodes as 0
		b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(e.Confidence))
	}
	b = guest.AppendString(b, 4, e.Reason)
	return guest.AppendString(b, fieldSender, e.Sender)
}

func (o *Objection) appendTo(b []byte) []byte {
	b = guest.AppendString(b, 1, o.ProposalID)
	b = guest.AppendString(b, 2, o.Reason)
	b = guest.AppendString(b, 3, o.Severity)
	return guest.AppendString(b, fieldSender, o.Sender)
}

func (v *Vote) appendTo(b []byte) []byte {
	b = guest.AppendString(b, 1, v.ProposalID)
	b = guest.AppendString(b, 2, v.Vote)
	b = guest.AppendString(b, 3, v.Reason)
	return guest.AppendString(b, fieldSender, v.Voter)
}

// appendCommitment appends the Commitment record, which uses the field
// numbers of macp.v1.CommitmentPayload and the sender field of every record.
func appendCommitment(b []byte, c *Commitment) []byte {
	b = guest.AppendString(b, 1, c.CommitmentID)
	b = guest.AppendString(b, 2, c.Action)
	if c.OutcomePositive {
		b = protowire.AppendTag(b, 8, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return guest.AppendString(b, fieldSender, c.Sender)
}

// decodeStrings walks a payload or record and stores each length-delimited
// field for which dst returns a target. Other fields, including known fields
// of an unexpected wire type, are skipped like unknown fields. visit, if not
// nil, sees every field first. A payload's strings must be UTF-8, as proto3
// requires (checkUTF8); a record's are stored as Step found them, and View
// replaces invalid UTF-8.
func decodeStrings(b []byte, checkUTF8 bool, dst func(protowire.Number) *string, visit func(protowire.Number, protowire.Type, uint64)) error {
	return guest.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		if visit != nil {
			visit(num, typ, n)
		}
		if typ != protowire.BytesType {
			return nil
		}
		p := dst(num)
		if p == nil {
			return nil
		}
		if checkUTF8 && !utf8.Valid(v) {
			return fmt.Errorf("field %d is not valid UTF-8", num)
		}
		*p = string(v)
		return nil
	})
}

func decodeProposal(b []byte, checkUTF8 bool) (Proposal, error) {
	var p Proposal
	err := decodeStrings(b, checkUTF8, func(num protowire.Number) *string {
		switch num {
		case 1:
			return &p.ProposalID
		case 2:
			return &p.Option
		case 3:
			return &p.Rationale
		case fieldSender:
			return &p.Sender
		}
		return nil
	}, nil)
	return p, err
}

func decodeEvaluation(b []byte, checkUTF8 bool) (Evaluation, error) {
	var e Evaluation
	err := decodeStrings(b, checkUTF8, func(num protowire.Number) *string {
		switch num {
		case 1:
			return &e.ProposalID
		case 2:
			return &e.Recommendation
		case 4:
			return &e.Reason
		case fieldSender:
			return &e.Sender
		}
		return nil
	}, func(num protowire.Number, typ protowire.Type, n uint64) {
		if num == 3 && typ == protowire.Fixed64Type {
			e.Confidence = math.Float64frombits(n)
		}
	})
	return e, err
}

func decodeObjection(b []byte, checkUTF8 bool) (Objection, error) {
	var o Objection
	err := decodeStrings(b, checkUTF8, func(num protowire.Number) *string {
		switch num {
		case 1:
			return &o.ProposalID
		case 2:
			return &o.Reason
		case 3:
			return &o.Severity
		case fieldSender:
			return &o.Sender
		}
		return nil
	}, nil)
	return o, err
}

func decodeVote(b []byte, checkUTF8 bool) (Vote, error) {
	var v Vote
	err := decodeStrings(b, checkUTF8, func(num protowire.Number) *string {
		switch num {
		case 1:
			return &v.ProposalID
		case 2:
			return &v.Vote
		case 3:
			return &v.Reason
		case fieldSender:
			return &v.Voter
		}
		return nil
	}, nil)
	return v, err
}

func decodeCommitmentRecord(b []byte) (Commitment, error) {
	var c Commitment
	err := decodeStrings(b, false, func(num protowire.Number) *string {
		switch num {
		case 1:
			return &c.CommitmentID
		case 2:
			return &c.Action
		case fieldSender:
			return &c.Sender
		}
		return nil
	}, func(num protowire.Number, typ protowire.Type, n uint64) {
		if num == 8 && typ == protowire.VarintType {
			c.OutcomePositive = n != 0
		}
	})
	return c, err
}

// recordKey returns the proposal id (field 1) and the sender (field 15) of
// a record in one pass, without allocating. ok is false when the record is
// malformed, by the same test as guest.EachField, which the full decoders
// use.
func recordKey(rec []byte) (id, sender []byte, ok bool) {
	for len(rec) > 0 {
		num, typ, n := protowire.ConsumeTag(rec)
		if n < 0 || num > protowire.MaxValidNumber {
			return nil, nil, false
		}
		rec = rec[n:]
		m := protowire.ConsumeFieldValue(num, typ, rec)
		if m < 0 {
			return nil, nil, false
		}
		if typ == protowire.BytesType && (num == 1 || num == fieldSender) {
			v, _ := protowire.ConsumeBytes(rec)
			if num == 1 {
				id = v
			} else {
				sender = v
			}
		}
		rec = rec[m:]
	}
	return id, sender, true
}
