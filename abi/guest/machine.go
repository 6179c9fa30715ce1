package guest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/macperr"
)

// StateCodec is the constraint on the state type of a Machine: a pointer to
// the mode's state struct that encodes itself as protobuf-wire fields,
// decodes itself from them (skipping fields it does not know) and renders
// itself as a JSON object. guestgen writes these methods from the struct's
// `wire` and `json` tags.
type StateCodec[S any] interface {
	*S
	AppendWire(b []byte) []byte
	DecodeWire(rec string) error
	DecodeField(r *FieldReader) error
	AppendJSON(b []byte) []byte
	Reset()
}

// PayloadCodec is the constraint on the payload type of a message: a
// pointer to a struct that decodes an envelope payload. guestgen writes
// DecodePayload for a struct with only `json` tags (a strict JSON object,
// see Object) and for one with only `wire` tags (a protobuf message).
type PayloadCodec[P any] interface {
	*P
	DecodePayload(src string) error
}

// Senders is who may send a message type: a set of Participants, Initiator,
// or Anyone. The zero value lets nobody send it.
type Senders uint8

const (
	// Participants are the session's declared participants.
	Participants Senders = 1 << iota
	// Initiator is the sender of the SessionStart.
	Initiator
	// Anyone lets any authenticated sender through.
	Anyone
	// Members are the initiator and the declared participants.
	Members = Participants | Initiator
)

// admits reports whether sender is one of s in sess.
func (s Senders) admits(sess *Session, sender string) bool {
	return s&Anyone != 0 ||
		s&Initiator != 0 && sender == sess.Initiator ||
		s&Participants != 0 && sess.IsParticipant(sender)
}

func (s Senders) String() string {
	switch s {
	case Participants:
		return "a declared participant"
	case Initiator:
		return "the initiator"
	case Members:
		return "the initiator or a declared participant"
	}
	return "nobody"
}

// Message is one row of a Machine's table: a message type, who may send it,
// in which phases and, optionally, which one sender its role allows now.
// Build it with On; In and By return a copy with the phases or the role set.
type Message[SP any] struct {
	Type   string
	From   Senders
	phases []string
	role   func(s SP, sess *Session) string
	guard  func(s SP, req *StepRequest) error
	apply  func(s SP, req *StepRequest) error
}

// On returns the row for message type typ, sent by from, whose payload
// decodes into a P and which fn applies to the state. fn changes s in place
// and returns nil to accept the envelope, or an error to reject it (see
// RejectError). A rejected envelope leaves the stored state unchanged,
// whatever fn did to s.
func On[SP any, P any, PP PayloadCodec[P]](typ string, from Senders, fn func(s SP, req *StepRequest, p PP) error) Message[SP] {
	return Message[SP]{Type: typ, From: from, apply: func(s SP, req *StepRequest) error {
		p := PP(new(P))
		if err := p.DecodePayload(stringView(req.Envelope.Payload)); err != nil {
			return Invalid("%s payload: %v", typ, err)
		}
		return fn(s, req, p)
	}}
}

// In returns m accepted only in the given phases (as Machine.Phase names
// them); in any other phase it is refused with INVALID_ENVELOPE.
func (m Message[SP]) In(phases ...string) Message[SP] {
	m.phases = phases
	return m
}

// By returns m accepted only from the sender role names in the current
// state (the turn holder, the driver, …); from anyone else it is refused
// with FORBIDDEN. The role is asked after the sender and phase checks.
func (m Message[SP]) By(role func(s SP, sess *Session) string) Message[SP] {
	m.role = role
	return m
}

// Where returns m with a guard: a check of the sender against the state or
// the session that runs after the role and before the payload is decoded,
// so that its refusal (typically Forbidden) wins over a malformed payload.
func (m Message[SP]) Where(guard func(s SP, req *StepRequest) error) Message[SP] {
	m.guard = guard
	return m
}

// Machine is a Mode built from a table. It does what every mode repeats:
// the SessionStart prologue, decoding and encoding the state, refusing
// everything once committed, who may send what in which phase with the
// specification's codes, the Commitment's eligibility check and record, and
// a JSON view. A mode supplies its state type, the table and the few
// functions below; Machine's zero fields take defaults.
//
// Step checks, in order: a SessionStart on a started session
// (INVALID_ENVELOPE), a state that does not decode (INTERNAL_ERROR), a
// committed session (INVALID_ENVELOPE), then for a Commitment its payload
// and eligibility (INVALID_ENVELOPE), and for any other type: unknown to
// the table (INVALID_ENVELOPE from a member, FORBIDDEN from anyone else),
// the sender (FORBIDDEN), the phase (INVALID_ENVELOPE), the role
// (FORBIDDEN), the guard, the payload (INVALID_ENVELOPE), and last the
// handler.
//
// The state is encoded as field 1, the format version, then the fields of
// S, then the commitment record under CommitmentField; S must use neither
// field number at its top level.
type Machine[S any, SP StateCodec[S]] struct {
	// Descriptor describes the mode. Empty MessageTypes are filled with
	// SessionStart, the table's types and Commitment; empty
	// TerminalMessageTypes with Commitment; an empty DeterminismClass
	// with "semantic-deterministic".
	Descriptor Descriptor
	// Version is the state format version (0 means 1). A state of any
	// other version is refused with INTERNAL_ERROR.
	Version uint64
	// CommitmentField is the field that holds the commitment record (0
	// means 15).
	CommitmentField protowire.Number
	// MinParticipants and MaxParticipants bound the declared participants a
	// SessionStart may name (0: no bound); outside them it is refused with
	// INVALID_ENVELOPE.
	MinParticipants, MaxParticipants int
	// Start fills in the initial state at SessionStart; an error rejects
	// the SessionStart (see RejectError). nil accepts every SessionStart
	// with a zero state.
	Start func(s SP, req *StepRequest) error
	// Messages is the table of message types other than SessionStart and
	// Commitment.
	Messages []Message[SP]
	// Status tells the phase of an open session and which Commitment
	// outcomes its state allows. nil: phase "Open", no Commitment ever
	// eligible. A committed session's phase is "Committed".
	Status func(s SP, sess *Session) Status
	// BeforeView, if set, fills in the state's view-only fields (those
	// with a json tag and no wire tag) before View renders it.
	BeforeView func(s SP, sess *Session)

	// pool holds decoded states with their string arenas, reused from
	// step to step (see decode).
	pool sync.Pool
}

// pooled is a state decoded by Step or View and the arena of its string
// slices.
type pooled[S any] struct {
	s     S
	arena Arena
}

// Status is where an open session stands: its phase (the In of a Message
// refers to it), the Commitment outcomes its state allows now and, when it
// allows none or only one, why (for the refusal of an ineligible
// Commitment). Status is asked on every step that has phases and on every
// Commitment, so Why is best a constant.
type Status struct {
	Phase    string
	Eligible Eligibility
	Why      string
}

// PhaseCommitted is the phase of a session whose Commitment was accepted.
const PhaseCommitted = "Committed"

const (
	msgSessionStart = "SessionStart"
	msgCommitment   = "Commitment"
)

// Describe returns the descriptor, with its defaults filled in.
func (m *Machine[S, SP]) Describe() Descriptor {
	d := m.Descriptor
	if len(d.MessageTypes) == 0 {
		d.MessageTypes = append(d.MessageTypes, msgSessionStart)
		for i := range m.Messages {
			d.MessageTypes = append(d.MessageTypes, m.Messages[i].Type)
		}
		d.MessageTypes = append(d.MessageTypes, msgCommitment)
	}
	if len(d.TerminalMessageTypes) == 0 {
		d.TerminalMessageTypes = []string{msgCommitment}
	}
	if d.DeterminismClass == "" {
		d.DeterminismClass = "semantic-deterministic"
	}
	return d
}

// Step decides on one envelope; the order of its checks is on Machine.
func (m *Machine[S, SP]) Step(req *StepRequest) Result {
	env, sess := &req.Envelope, &req.Session
	if env.MessageType == msgSessionStart {
		if len(req.State) != 0 {
			return Reject(macperr.InvalidEnvelope, "the session has already started")
		}
		if n := len(sess.Participants); n < m.MinParticipants || m.MaxParticipants > 0 && n > m.MaxParticipants {
			return Reject(macperr.InvalidEnvelope, "%s needs %s declared participants, got %d", m.Descriptor.Mode, m.participantBounds(), n)
		}
		s := SP(new(S))
		if m.Start != nil {
			if err := m.Start(s, req); err != nil {
				return RejectError(err)
			}
		}
		return Accept(m.encode(s, nil, 64))
	}
	p := m.get()
	defer m.pool.Put(p)
	s, committed, err := m.decodeInto(SP(&p.s), &p.arena, req.State, false)
	switch {
	case err != nil:
		return Reject(macperr.InternalError, "%s state: %v", m.Descriptor.Mode, err)
	case committed != nil:
		return Reject(macperr.InvalidEnvelope, "the session is already committed")
	case env.MessageType == msgCommitment:
		st := m.status(s, sess)
		rec, err := Commit(env, st.Eligible, st.Why)
		if err != nil {
			return RejectError(err)
		}
		return Accept(m.encode(s, rec, len(req.State)+64))
	}
	msg := m.message(env.MessageType)
	switch {
	case msg == nil && !sess.IsMember(env.Sender):
		return Reject(macperr.Forbidden, "%s is not a member of the session", env.Sender)
	case msg == nil:
		return Reject(macperr.InvalidEnvelope, "message type %q is not part of %s", env.MessageType, m.Descriptor.Mode)
	case !msg.From.admits(sess, env.Sender):
		return Reject(macperr.Forbidden, "%s may only be sent by %s; %s is not", env.MessageType, msg.From, env.Sender)
	}
	if len(msg.phases) > 0 {
		if phase := m.status(s, sess).Phase; !slices.Contains(msg.phases, phase) {
			return Reject(macperr.InvalidEnvelope, "%s is not accepted in phase %s", env.MessageType, phase)
		}
	}
	if msg.role != nil {
		if holder := msg.role(s, sess); env.Sender != holder {
			return Reject(macperr.Forbidden, "%s may only be sent by %s now", env.MessageType, holder)
		}
	}
	if msg.guard != nil {
		if err := msg.guard(s, req); err != nil {
			return RejectError(err)
		}
	}
	if err := msg.apply(s, req); err != nil {
		return RejectError(err)
	}
	return Accept(m.encode(s, nil, len(req.State)+len(env.Payload)+16))
}

// View renders the state as one JSON object: {"phase": …, then the state's
// json fields, "eligible": {"positive", "negative"}, "commitment": null or
// the commitment record}.
func (m *Machine[S, SP]) View(state []byte, sess *Session) ([]byte, error) {
	p := m.get()
	defer m.pool.Put(p)
	s, committed, err := m.decodeInto(SP(&p.s), &p.arena, state, true)
	if err != nil {
		return nil, err
	}
	st := Status{Phase: PhaseCommitted}
	if committed == nil {
		st = m.status(s, sess)
	}
	if m.BeforeView != nil {
		m.BeforeView(s, sess)
	}
	b := append(make([]byte, 0, 2*len(state)+128), `{"phase":`...)
	b = AppendJSONString(b, st.Phase)
	mark := len(b)
	b = s.AppendJSON(b)
	switch {
	case len(b)-mark == 2: // {}: no fields
		b = b[:mark]
	case b[mark] == '{' && b[len(b)-1] == '}':
		b[mark] = ','
		b = b[:len(b)-1]
	default:
		return nil, errors.New("the state's AppendJSON did not write an object")
	}
	b = append(b, `,"eligible":`...)
	b = st.Eligible.AppendJSON(b)
	b = append(b, `,"commitment":`...)
	if committed == nil {
		b = append(b, "null"...)
	} else {
		b = committed.AppendJSON(b)
	}
	return append(b, '}'), nil
}

// Encode returns the state Step stores for s, committed with the record c
// (nil while the session is open). Tests and tools use it; a mode does not
// need to.
func (m *Machine[S, SP]) Encode(s SP, c *CommitmentRecord) []byte { return m.encode(s, c, 64) }

// Decode decodes a state that Step stored: the mode's state and the
// commitment record, nil while the session is open.
func (m *Machine[S, SP]) Decode(state []byte) (SP, *CommitmentRecord, error) {
	return m.decodeInto(SP(new(S)), nil, []byte(string(state)), true)
}

// get returns a pooled state, reset, with its arena emptied.
func (m *Machine[S, SP]) get() *pooled[S] {
	p, _ := m.pool.Get().(*pooled[S])
	if p == nil {
		return new(pooled[S])
	}
	SP(&p.s).Reset()
	p.arena.Reset()
	return p
}

func (m *Machine[S, SP]) participantBounds() string {
	switch {
	case m.MinParticipants == m.MaxParticipants:
		return fmt.Sprint(m.MinParticipants)
	case m.MaxParticipants == 0:
		return fmt.Sprintf("at least %d", m.MinParticipants)
	}
	return fmt.Sprintf("%d to %d", m.MinParticipants, m.MaxParticipants)
}

func (m *Machine[S, SP]) message(typ string) *Message[SP] {
	for i := range m.Messages {
		if m.Messages[i].Type == typ {
			return &m.Messages[i]
		}
	}
	return nil
}

func (m *Machine[S, SP]) status(s SP, sess *Session) Status {
	if m.Status == nil {
		return Status{Phase: "Open", Why: "the mode accepts no Commitment"}
	}
	return m.Status(s, sess)
}

func (m *Machine[S, SP]) version() uint64 { return max(m.Version, 1) }

func (m *Machine[S, SP]) commitmentField() protowire.Number {
	if m.CommitmentField == 0 {
		return 15
	}
	return m.CommitmentField
}

// encode returns the canonical encoding of s and the commitment record c
// (nil while open), in a buffer of about size bytes.
func (m *Machine[S, SP]) encode(s SP, c *CommitmentRecord, size int) []byte {
	b := AppendVarint(make([]byte, 0, size), 1, m.version())
	b = s.AppendWire(b)
	if c != nil {
		b = c.AppendRecordTo(b, m.commitmentField())
	}
	return b
}

var errVersion = errors.New("missing or unknown state format version")

// decodeInto decodes a state written by encode into s, a zero or Reset
// state, its string slices in arena (nil: none), in one pass: field 1 is
// the version, CommitmentField the commitment record, the others are the
// state's. Once the session is committed the rest of the state is decoded
// only when full is set (for the view): a step is refused without it.
//
// Step and View decode into states they pool, with arenas, so that a step
// allocates next to nothing for the state it decodes. A handler must
// therefore not make two fields of the state share storage (assigning one
// slice of records to another field, say): copy with slices.Clone instead.
func (m *Machine[S, SP]) decodeInto(s SP, arena *Arena, state []byte, full bool) (SP, *CommitmentRecord, error) {
	r := FieldReader{Rest: stringView(state), Arena: arena}
	if !r.Next() || r.Num != 1 || r.Type != protowire.VarintType || r.N != m.version() {
		if err := r.Err(); err != nil {
			return nil, nil, err
		}
		return nil, nil, errVersion
	}
	var c *CommitmentRecord
	for cf := m.commitmentField(); r.Next(); {
		if r.Num == cf && r.Type == protowire.BytesType {
			c = new(CommitmentRecord)
			if err := c.DecodeWire(r.S); err != nil {
				return nil, nil, FieldError("commitment", err)
			}
			if !full {
				return s, c, nil
			}
			continue
		}
		if err := s.DecodeField(&r); err != nil {
			return nil, nil, err
		}
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	if v, ok := any(s).(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, nil, err
		}
	}
	return s, c, nil
}

// stringView returns b as a string without copying it. The Machine decodes
// the state and the payload through such views: both belong to the
// request, which nothing writes while the step runs, and everything a step
// returns is built afresh (the state by encode, messages by fmt), so no
// view outlives the call as long as the mode keeps nothing between calls,
// which the ABI forbids anyway. Inside a WebAssembly guest the copies this
// saves cost more than decoding.
func stringView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Validator is a state that checks, once decoded, invariants its encoding
// cannot express (a record with exactly two elements, say). A state that
// fails them is refused as corrupt, with INTERNAL_ERROR.
type Validator interface {
	Validate() error
}
