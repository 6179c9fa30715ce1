package mpac

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// State fields, in the order Marshal writes them.
const (
	fieldVersion    protowire.Number = 1
	fieldArbiter    protowire.Number = 2
	fieldOps        protowire.Number = 3
	fieldCounters   protowire.Number = 4
	fieldCrashed    protowire.Number = 5
	fieldIntent     protowire.Number = 6
	fieldConflict   protowire.Number = 7
	fieldCommitment protowire.Number = 8
)

const stateVersion = 1

// Phases, as reported by State.Phase.
const (
	PhaseIdle       = "Idle"
	PhaseActive     = "Active"
	PhaseConflicted = "Conflicted"
	PhaseEscalated  = "Escalated"
	PhaseCommitted  = "Committed"
)

// State is the decoded state of an MPAC session. It holds only what is live
// (intents, open conflicts, crashed participants) and counters, so its size
// does not grow with the number of past cycles.
type State struct {
	Arbiter string
	// Ops counts the operations committed in the session.
	Ops      uint64
	Counters Counters
	// Crashed lists the participants declared crashed, in declaration order.
	Crashed []string
	// Intents are the live intents, in announce order.
	Intents []Intent
	// Conflicts are the open conflicts, in the order they were opened.
	Conflicts []Conflict
	// Commitment is the accepted Commitment, nil while the session is open.
	Commitment *kit.Commitment

	// buf holds the slices of a state decoded by Step, nil otherwise.
	buf *buffers
}

// buffers hold the slices a state and a payload are decoded into. Step
// takes them from bufferPool and gives them back once the new state is
// encoded, so that after the first steps decoding allocates nothing: inside
// a WebAssembly guest an allocation costs more than decoding a record.
// Nothing decoded outlives a step (the new state is a fresh encoding), and
// reuse clears the buffers, so they carry no information from one step to
// the next.
type buffers struct {
	intents   []Intent
	conflicts []Conflict
	// wires holds the intent records a splicing step reads (splice.go).
	wires []wireIntent
	// strs holds the scopes of the intents and the arrays of the payload.
	strs []string
}

var bufferPool = sync.Pool{New: func() any { return new(buffers) }}

// reuse takes back the slices of s, grown or not, for the next step, and
// clears them so that they keep nothing of this one.
func (b *buffers) reuse(s *State) {
	b.intents = clearAll(s.Intents)
	b.conflicts = clearAll(s.Conflicts)
	b.strs = clearAll(b.strs)
}

// clearAll zeroes all of s's capacity and returns it emptied.
func clearAll[T any](s []T) []T {
	s = s[:cap(s)]
	clear(s)
	return s[:0]
}

// Counters sum up the history the state no longer holds.
type Counters struct {
	Announced          uint64 `json:"intents_announced"`
	Withdrawn          uint64 `json:"intents_withdrawn"`
	Revoked            uint64 `json:"intents_revoked"`
	Claimed            uint64 `json:"intents_claimed"`
	ConflictsOpened    uint64 `json:"conflicts_opened"`
	ConflictsResolved  uint64 `json:"conflicts_resolved"`
	ConflictsDissolved uint64 `json:"conflicts_dissolved"`
	Escalated          uint64 `json:"conflicts_escalated"`
}

// Intent is a live intent.
type Intent struct {
	ID string
	// Serial is the intent's announce number in the session, from 1.
	Serial uint64
	Owner  string
	// Scope is sorted.
	Scope       []string
	Description string
	// Required is the least watermark a CommitOperation on the intent must
	// carry.
	Required uint64
	// Ops counts the operations committed on the intent.
	Ops uint64
	// ClaimedFrom is the crashed owner the intent was last claimed from.
	ClaimedFrom string
}

// Conflict is an open conflict between two live intents: the earlier one
// first, then the one whose announcement surfaced the conflict.
type Conflict struct {
	ID        uint64
	Intents   [2]string
	Escalated bool
	Reason    string
}

// IsCrashed reports whether p was declared crashed.
func (s *State) IsCrashed(p string) bool {
	for _, c := range s.Crashed {
		if c == p {
			return true
		}
	}
	return false
}

// intent returns the index of the live intent id and a pointer to it, or
// nil.
func (s *State) intent(id string) (int, *Intent) {
	for i := range s.Intents {
		if s.Intents[i].ID == id {
			return i, &s.Intents[i]
		}
	}
	return -1, nil
}

// conflict returns the index of the open conflict id and a pointer to it,
// or nil.
func (s *State) conflict(id uint64) (int, *Conflict) {
	for i := range s.Conflicts {
		if s.Conflicts[i].ID == id {
			return i, &s.Conflicts[i]
		}
	}
	return -1, nil
}

// ConflictsOf returns the ids of the open conflicts intent id is in.
func (s *State) ConflictsOf(id string) []uint64 {
	var out []uint64
	for _, c := range s.Conflicts {
		if c.Intents[0] == id || c.Intents[1] == id {
			out = append(out, c.ID)
		}
	}
	return out
}

// remove drops the live intent id and dissolves the open conflicts it is
// in.
func (s *State) remove(id string) {
	if i, in := s.intent(id); in != nil {
		s.Intents = append(s.Intents[:i], s.Intents[i+1:]...)
	}
	kept := s.Conflicts[:0]
	for _, c := range s.Conflicts {
		if c.Intents[0] == id || c.Intents[1] == id {
			s.Counters.ConflictsDissolved++
			continue
		}
		kept = append(kept, c)
	}
	s.Conflicts = kept
}

// escalated reports whether an open conflict is escalated.
func (s *State) escalated() bool {
	for _, c := range s.Conflicts {
		if c.Escalated {
			return true
		}
	}
	return false
}

// Eligible returns the Commitment outcomes the state allows.
func (s *State) Eligible() kit.Eligibility {
	if s.Commitment != nil {
		return kit.Eligibility{}
	}
	idle := len(s.Intents) == 0
	return kit.Eligibility{Positive: idle && s.Ops > 0, Negative: idle || s.escalated()}
}

// Phase derives the phase of the session.
func (s *State) Phase() string {
	switch {
	case s.Commitment != nil:
		return PhaseCommitted
	case s.escalated():
		return PhaseEscalated
	case len(s.Conflicts) > 0:
		return PhaseConflicted
	case len(s.Intents) > 0:
		return PhaseActive
	}
	return PhaseIdle
}

// Marshal returns the canonical encoding of s. It writes into one buffer
// sized for s up front, nested records in place, so that a step allocates
// once for its new state (allocations are dear inside a WebAssembly guest).
func (s *State) Marshal() []byte {
	b := make([]byte, 0, s.sizeBound())
	b = appendHead(b, s.Arbiter, s.Ops, &s.Counters)
	b = guest.AppendStrings(b, fieldCrashed, s.Crashed)
	for i := range s.Intents {
		b = appendIntent(b, &s.Intents[i])
	}
	for i := range s.Conflicts {
		b = appendConflict(b, &s.Conflicts[i])
	}
	if s.Commitment != nil {
		b = s.Commitment.Append(b, fieldCommitment)
	}
	return b
}

// appendHead appends the fields before the crashed participants: the
// version, the arbiter, the operation count and the counters. The splicing
// steps (splice.go) write their heads with it too.
func appendHead(b []byte, arbiter string, ops uint64, c *Counters) []byte {
	b = guest.AppendVarint(b, fieldVersion, stateVersion)
	b = guest.AppendString(b, fieldArbiter, arbiter)
	b = guest.AppendVarint(b, fieldOps, ops)
	b, mark := kit.OpenRecord(b, fieldCounters)
	b = guest.AppendVarint(b, 1, c.Announced)
	b = guest.AppendVarint(b, 2, c.Withdrawn)
	b = guest.AppendVarint(b, 3, c.Revoked)
	b = guest.AppendVarint(b, 4, c.Claimed)
	b = guest.AppendVarint(b, 5, c.ConflictsOpened)
	b = guest.AppendVarint(b, 6, c.ConflictsResolved)
	b = guest.AppendVarint(b, 7, c.ConflictsDissolved)
	b = guest.AppendVarint(b, 8, c.Escalated)
	return kit.CloseRecord(b, mark)
}

// headBound bounds the size of appendHead's fields, as sizeBound counts
// them.
func headBound(arbiter string) int {
	const str, num = 5, 11
	return 2 + str + len(arbiter) + num + str + 8*num
}

// appendIntent appends the record of a live intent.
func appendIntent(b []byte, in *Intent) []byte {
	b, mark := kit.OpenRecord(b, fieldIntent)
	b = guest.AppendString(b, 1, in.ID)
	b = guest.AppendVarint(b, 2, in.Serial)
	b = guest.AppendString(b, 3, in.Owner)
	b = guest.AppendStrings(b, 4, in.Scope)
	b = guest.AppendString(b, 5, in.Description)
	b = guest.AppendVarint(b, 6, in.Required)
	b = guest.AppendVarint(b, 7, in.Ops)
	b = guest.AppendString(b, 8, in.ClaimedFrom)
	return kit.CloseRecord(b, mark)
}

// intentBound bounds the size of in's record, as sizeBound counts it.
func intentBound(in *Intent) int {
	const str, num = 5, 11
	n := str + 5*str + 3*num + len(in.ID) + len(in.Owner) + len(in.Description) + len(in.ClaimedFrom)
	for _, p := range in.Scope {
		n += str + len(p)
	}
	return n
}

// appendConflict appends the record of an open conflict.
func appendConflict(b []byte, c *Conflict) []byte {
	b, mark := kit.OpenRecord(b, fieldConflict)
	b = guest.AppendVarint(b, 1, c.ID)
	b = guest.AppendStrings(b, 2, c.Intents[:])
	b = kit.AppendBool(b, 3, c.Escalated)
	b = guest.AppendString(b, 4, c.Reason)
	return kit.CloseRecord(b, mark)
}

// conflictBound bounds the size of c's record, as sizeBound counts it.
func conflictBound(c *Conflict) int {
	const str, num = 5, 11
	return str + 2*num + 3*str + len(c.Intents[0]) + len(c.Intents[1]) + len(c.Reason)
}

// sizeBound returns a capacity that holds s's encoding, counting a tag and
// a length of up to 1 + 4 bytes for each string or record and 1 + 10 bytes
// for each varint. (It is only a hint: append would grow a short buffer.)
func (s *State) sizeBound() int {
	const str, num = 5, 11
	n := headBound(s.Arbiter)
	for _, p := range s.Crashed {
		n += str + len(p)
	}
	for i := range s.Intents {
		n += intentBound(&s.Intents[i])
	}
	for i := range s.Conflicts {
		n += conflictBound(&s.Conflicts[i])
	}
	if c := s.Commitment; c != nil {
		n += 5*str + num + len(c.CommitmentID) + len(c.Action) + len(c.Sender)
	}
	return n
}

var (
	errVersion  = errors.New("missing or unknown state format version")
	errConflict = errors.New("a conflict record needs exactly two intents")
)

// Unmarshal decodes a state written by Marshal.
//
// It copies b into one string and takes every string of the state as a
// substring of it, and walks the fields with loops rather than callbacks:
// inside a WebAssembly guest each allocation and each call is dear. (Step
// goes further: it decodes a view of the request, without the copy, into
// reused buffers.)
func Unmarshal(b []byte) (*State, error) {
	s := &State{}
	if err := s.unmarshal(string(b), &buffers{}); err != nil {
		return nil, err
	}
	s.buf = nil
	return s, nil
}

// unmarshal decodes src into s, which must be zero, appending its records
// to the emptied slices of buf. The strings of s are substrings of src.
func (s *State) unmarshal(src string, buf *buffers) error {
	s.buf = buf
	if err := s.decode(src); err != nil {
		return fmt.Errorf("%s state: %w", ModeName, err)
	}
	return nil
}

func (s *State) decode(src string) error {
	b := s.buf
	s.Intents, s.Conflicts = b.intents[:0], b.conflicts[:0]
	var version uint64
	r := kit.FieldReader{Rest: src}
	for r.Next() {
		switch r.Num {
		case fieldVersion:
			version = r.N
		case fieldArbiter:
			s.Arbiter = r.S
		case fieldOps:
			s.Ops = r.N
		case fieldCounters:
			if err := s.Counters.decode(r.S); err != nil {
				return err
			}
		case fieldCrashed:
			s.Crashed = append(s.Crashed, r.S)
		case fieldIntent:
			s.Intents = append(s.Intents, Intent{})
			if err := s.Intents[len(s.Intents)-1].decode(r.S, &b.strs); err != nil {
				return err
			}
		case fieldConflict:
			s.Conflicts = append(s.Conflicts, Conflict{})
			if err := s.Conflicts[len(s.Conflicts)-1].decode(r.S); err != nil {
				return err
			}
		case fieldCommitment:
			c, err := kit.DecodeCommitmentRecord([]byte(r.S))
			if err != nil {
				return err
			}
			s.Commitment = c
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	if version != stateVersion {
		return errVersion
	}
	return nil
}

func (c *Counters) decode(rec string) error {
	r := kit.FieldReader{Rest: rec}
	for r.Next() {
		switch r.Num {
		case 1:
			c.Announced = r.N
		case 2:
			c.Withdrawn = r.N
		case 3:
			c.Revoked = r.N
		case 4:
			c.Claimed = r.N
		case 5:
			c.ConflictsOpened = r.N
		case 6:
			c.ConflictsResolved = r.N
		case 7:
			c.ConflictsDissolved = r.N
		case 8:
			c.Escalated = r.N
		}
	}
	return r.Err()
}

// decode decodes an intent record into in, which must be zero, appending
// its scope to *paths; in.Scope is the capacity-limited part of *paths that
// holds it, so appending to one scope never writes into another.
func (in *Intent) decode(rec string, paths *[]string) error {
	start := len(*paths)
	r := kit.FieldReader{Rest: rec}
	for r.Next() {
		switch r.Num {
		case 1:
			in.ID = r.S
		case 2:
			in.Serial = r.N
		case 3:
			in.Owner = r.S
		case 4:
			*paths = append(*paths, r.S)
		case 5:
			in.Description = r.S
		case 6:
			in.Required = r.N
		case 7:
			in.Ops = r.N
		case 8:
			in.ClaimedFrom = r.S
		}
	}
	if end := len(*paths); end > start {
		in.Scope = (*paths)[start:end:end]
	}
	return r.Err()
}

// decode decodes a conflict record into c, which must be zero.
func (c *Conflict) decode(rec string) error {
	members := 0
	r := kit.FieldReader{Rest: rec}
	for r.Next() {
		switch r.Num {
		case 1:
			c.ID = r.N
		case 2:
			if members == 2 {
				return errConflict
			}
			c.Intents[members] = r.S
			members++
		case 3:
			c.Escalated = r.N != 0
		case 4:
			c.Reason = r.S
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	if members != 2 {
		return errConflict
	}
	return nil
}
