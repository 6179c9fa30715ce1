// Package mpac is an MPAC-style intent and conflict mode for Concord, the
// extension mode ext.mpac.intent.v1.
//
// Declared participants announce an intent, with a scope of resource paths,
// before they act; they commit operations under a live intent they own and
// withdraw it when done. When an intent's scope overlaps a live intent of
// another owner, the mode records a conflict between the two and blocks
// both until an arbiter resolves it, or escalates it beyond the session.
// The arbiter can also declare a participant crashed, which makes its live
// intents claimable by the others.
//
// # Arbiter
//
// The arbiter is the initiator unless the bound policy's rules name one:
// {"mpac": {"arbiter": "agent://lead"}}, read once at SessionStart. It must
// be the initiator or a declared participant.
//
// # Scopes
//
// A scope is a list of 1 to 64 distinct resource paths. A path is a
// slash-separated relative path of non-empty segments ("src/main.go",
// "docs"), at most 1024 bytes, with no "." or ".." segment and no leading,
// trailing or doubled slash. Two paths overlap when they are equal or one is
// a directory prefix of the other ("src" overlaps "src/main.go", not
// "srcs"). Two scopes overlap when any of their paths do.
//
// # Messages
//
// Payloads are JSON objects; unknown keys are refused.
//
//	AnnounceIntent   {"intent_id": string, "scope": [path...], "description": string}  a participant
//	CommitOperation  {"intent_id": string, "watermark": uint, "summary": string}       the intent's owner
//	Withdraw         {"intent_id": string, "reason": string}                           the intent's owner
//	Claim            {"intent_id": string, "reason": string}     a participant; the owner must be crashed
//	ResolveConflict  {"conflict_id": uint, "keep": [intent_id...], "reason": string}  the arbiter
//	EscalateConflict {"conflict_id": uint, "reason": string}                          the arbiter
//	DeclareCrashed   {"participant": string, "reason": string}                        the arbiter
//	Commitment       macp.v1.CommitmentPayload
//
// description, summary and the reasons are optional except an escalation's
// reason. Intent ids are chosen by the client and must be unique among live
// intents; conflicts are numbered 1, 2, ... by the mode.
//
// AnnounceIntent makes the intent live. For every live intent of another
// owner whose scope overlaps, it opens a conflict between that intent and
// the new one; both are then conflicted until every conflict they are in is
// closed. Intents of the same owner never conflict.
//
// CommitOperation needs a live, non-conflicted intent of the sender and
// counts one operation in the session (operation n is the session's n-th).
// Its watermark is the number of the session's operations the sender has
// seen. Rule: the watermark must be at least the intent's required
// watermark and at most the session's operation count. The required
// watermark is the operation count when the intent was announced (or
// claimed), raised to n whenever operation n is committed on an intent
// whose scope overlaps it (itself included). So a writer must have seen
// every operation that was committed before it took the region and every
// later one that touched the region; operations elsewhere do not make it
// stale.
//
// Withdraw ends a live intent (conflicted or not); a conflict that loses an
// intent is dissolved. ResolveConflict closes an open conflict: the intents
// listed in keep (none, one or both of its two) stay live, the others are
// revoked, which dissolves their other conflicts. EscalateConflict marks an
// open conflict escalated; it stays open (the arbiter may still resolve it)
// and makes a negative Commitment eligible. DeclareCrashed marks a declared
// participant other than the arbiter crashed, for the rest of the session:
// it may send nothing more, and its live intents may be claimed. Claim
// transfers a crashed owner's live intent, conflicts included, to the
// sender, and sets its required watermark to the current operation count.
//
// # Errors
//
// In the order they are checked:
//
//   - FORBIDDEN: AnnounceIntent, CommitOperation, Withdraw or Claim from a
//     sender who is not a declared participant or was declared crashed;
//     ResolveConflict, EscalateConflict or DeclareCrashed from anyone but
//     the arbiter; CommitOperation or Withdraw on an intent owned by
//     somebody else (checked once the payload names the intent).
//   - INVALID_ENVELOPE: a payload that is not a JSON object of the
//     message's shape; a blank intent id; a bad scope; a missing watermark
//     or conflict id; an intent id already live; an intent or conflict that
//     is not live or open; an operation on a conflicted intent; a watermark
//     above the operation count (from the future) or below the intent's
//     required watermark (stale); keep naming an intent outside the
//     conflict, or twice; escalating an escalated conflict or without a
//     reason; declaring crashed a non-participant, the arbiter or a
//     participant already crashed; claiming an intent whose owner is not
//     crashed; a Commitment that is not eligible; an unknown message type
//     from a member.
//
// # Commitment
//
// A positive Commitment is eligible when no intent is live and at least one
// operation was committed; a negative one when no intent is live or an open
// conflict is escalated.
//
// # Cost
//
// The state keeps the live intents, the open conflicts, the crashed
// participants and counters, never the history, so the cost of a step does
// not grow with the number of past announce → commit → withdraw cycles
// (see BenchmarkCycle).
//
// A step is also cheap inside a WebAssembly guest, where calls, branches
// and above all allocations cost many times their native price: payloads
// are decoded with kit.Object rather than encoding/json (same acceptance,
// no reflection); Step decodes views of the request's state and payload
// rather than copies, into slices reused from step to step; and the new
// state is encoded into one buffer sized up front. An accepted step
// allocates the new state and nothing else.
//
// The cost that remains grows with the number of live intents, which a
// session shared by many agents keeps high (one each). So AnnounceIntent,
// CommitOperation and Withdraw do not decode the state at all: they read
// the encoded state in place, parsing only the intent records and fields
// they need (a Withdraw reads just the id of the others), and build the new
// state by splicing, the unchanged records copied byte for byte, into the
// same bytes Marshal would write (splice.go). The other messages decode the
// state in full. With 32 participants and 30 other live intents (the
// agents=32 cases of BenchmarkCycle and of the WebAssembly benchmark,
// BenchmarkMPACCycleWasm) this cut a sandboxed cycle by about a third.
//
// Phases: Idle (no live intent), Active, Conflicted (open conflicts),
// Escalated (an open conflict is escalated), Committed.
package mpac

import (
	"fmt"
	"unsafe"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// Identity of the mode.
const (
	ModeName    = "ext.mpac.intent.v1"
	ModeVersion = "1.0.0"
)

// Message types of the mode.
const (
	MsgSessionStart     = "SessionStart"
	MsgAnnounceIntent   = "AnnounceIntent"
	MsgCommitOperation  = "CommitOperation"
	MsgWithdraw         = "Withdraw"
	MsgClaim            = "Claim"
	MsgResolveConflict  = "ResolveConflict"
	MsgEscalateConflict = "EscalateConflict"
	MsgDeclareCrashed   = "DeclareCrashed"
	MsgCommitment       = "Commitment"
)

// RulesKey is the key of the mode's object in the bound policy's rules.
const RulesKey = "mpac"

// Mode is the MPAC intent mode. Its zero value is ready to use.
type Mode struct{}

var _ guest.Mode = Mode{}

// Describe returns the mode's descriptor.
func (Mode) Describe() guest.Descriptor {
	return guest.Descriptor{
		Mode:             ModeName,
		ModeVersion:      ModeVersion,
		Title:            "MPAC Intents and Conflicts",
		Description:      "Participants announce scoped intents before acting; overlapping intents conflict until an arbiter resolves or escalates; operations carry causal watermarks; crashed participants' intents can be claimed.",
		DeterminismClass: "semantic-deterministic",
		ParticipantModel: "peer",
		MessageTypes: []string{
			MsgSessionStart, MsgAnnounceIntent, MsgCommitOperation, MsgWithdraw, MsgClaim,
			MsgResolveConflict, MsgEscalateConflict, MsgDeclareCrashed, MsgCommitment,
		},
		TerminalMessageTypes: []string{MsgCommitment},
		SchemaURIs:           map[string]string{"docs": "examples/modes/README.md#mpac-intents"},
	}
}

// Step decides on one envelope.
func (Mode) Step(req *guest.StepRequest) guest.Result {
	env := &req.Envelope
	if env.MessageType == MsgSessionStart {
		if len(req.State) != 0 {
			return kit.Invalid("the session has already started")
		}
		return start(&req.Session)
	}
	return step(req, true)
}

// step decides on an envelope other than SessionStart. With splice, the
// steps of the intent cycle (AnnounceIntent, CommitOperation, Withdraw)
// work on the encoded state in place (see splice.go); everything else, and
// every state splicing does not take, goes through a State decoded in
// full. Both paths give the same results: the tests run them against each
// other.
func step(req *guest.StepRequest, splice bool) guest.Result {
	// The state and the payload are decoded into buffers reused from step
	// to step (see buffers), and the State itself stays on the stack.
	buf := bufferPool.Get().(*buffers)
	if splice {
		switch req.Envelope.MessageType {
		case MsgAnnounceIntent, MsgCommitOperation, MsgWithdraw:
			if res, ok := spliceStep(req, buf); ok {
				bufferPool.Put(buf)
				return res
			}
		}
	}
	var s State
	res := s.step(req, buf)
	buf.reuse(&s)
	bufferPool.Put(buf)
	return res
}

// step decides on an envelope other than SessionStart, decoding the state
// into buf.
func (s *State) step(req *guest.StepRequest, buf *buffers) guest.Result {
	env := &req.Envelope
	if err := s.unmarshal(view(req.State), buf); err != nil {
		return kit.Internal("%v", err)
	}
	if s.Commitment != nil {
		return kit.Invalid("the session is already committed")
	}
	switch env.MessageType {
	case MsgAnnounceIntent, MsgCommitOperation, MsgWithdraw, MsgClaim:
		if res, ok := s.actor(req); !ok {
			return res
		}
	case MsgResolveConflict, MsgEscalateConflict, MsgDeclareCrashed:
		if env.Sender != s.Arbiter {
			return kit.Forbidden("only the arbiter %s may send %s", s.Arbiter, env.MessageType)
		}
	}
	switch env.MessageType {
	case MsgAnnounceIntent:
		return s.onAnnounce(env)
	case MsgCommitOperation:
		return s.onCommitOperation(env)
	case MsgWithdraw:
		return s.onWithdraw(env)
	case MsgClaim:
		return s.onClaim(env)
	case MsgResolveConflict:
		return s.onResolve(env)
	case MsgEscalateConflict:
		return s.onEscalate(env)
	case MsgDeclareCrashed:
		return s.onDeclareCrashed(req)
	case MsgCommitment:
		return s.onCommitment(env)
	}
	if !kit.IsMember(&req.Session, env.Sender) {
		return kit.Forbidden("%s is not a member of the session", env.Sender)
	}
	return kit.Invalid("unknown message type %q", env.MessageType)
}

type rules struct {
	Arbiter *string `json:"arbiter"`
}

func start(sess *guest.Session) guest.Result {
	var r rules
	if _, err := kit.ReadRules(sess.PolicyRules, RulesKey, &r); err != nil {
		return kit.Invalid("%v", err)
	}
	s := &State{Arbiter: sess.Initiator}
	if r.Arbiter != nil {
		if !kit.IsMember(sess, *r.Arbiter) {
			return kit.Invalid("policy rules %s.arbiter %q is neither the initiator nor a declared participant", RulesKey, *r.Arbiter)
		}
		s.Arbiter = *r.Arbiter
	}
	return guest.Accept(s.Marshal())
}

// actor checks that the sender may act on intents: a declared participant
// not declared crashed.
func (s *State) actor(req *guest.StepRequest) (guest.Result, bool) {
	sender := req.Envelope.Sender
	switch {
	case !req.Session.IsParticipant(sender):
		return kit.Forbidden("%s is not a declared participant", sender), false
	case s.IsCrashed(sender):
		return kit.Forbidden("%s was declared crashed", sender), false
	}
	return guest.Result{}, true
}

// view returns b as a string without copying it. Step decodes the state
// and the payload through views: both belong to the request, which nothing
// writes while Step runs, and everything Step returns is built afresh (the
// state by Marshal, messages by fmt), so no view outlives the call. Inside
// a WebAssembly guest the two copies this saves cost more than decoding
// the payload.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// The payloads are decoded with kit.Object, which accepts exactly what
// kit.DecodePayload (encoding/json) would into the same fields, at a
// fraction of its cost inside a WebAssembly guest. Each payload lists its
// keys in the order its decode method numbers them.

// announcePayload is {"intent_id", "scope", "description"}.
type announcePayload struct {
	IntentID    string
	Scope       []string
	Description string
}

var announceKeys = []string{"intent_id", "scope", "description"}

func (p *announcePayload) decode(src string, buf *[]string) error {
	o := kit.NewObject(src)
	for o.Next(announceKeys) {
		switch o.Field() {
		case 0:
			o.String(&p.IntentID)
		case 1:
			o.StringsIn(&p.Scope, buf)
		case 2:
			o.String(&p.Description)
		}
	}
	return o.Err()
}

func (s *State) onAnnounce(env *guest.Envelope) guest.Result {
	var p announcePayload
	if err := p.decode(view(env.Payload), &s.buf.strs); err != nil {
		return kit.Invalid("AnnounceIntent payload: %v", err)
	}
	if kit.Blank(p.IntentID) {
		return kit.Invalid("intent_id must not be blank")
	}
	// p.Scope is the decoder's own (in the step's buffers), so it is sorted
	// in place.
	scope := p.Scope
	if err := cleanScope(scope); err != nil {
		return kit.Invalid("scope: %v", err)
	}
	if _, live := s.intent(p.IntentID); live != nil {
		return kit.Invalid("intent %q is already live", p.IntentID)
	}
	s.Counters.Announced++
	in := Intent{
		ID: p.IntentID, Serial: s.Counters.Announced, Owner: env.Sender,
		Scope: scope, Description: p.Description, Required: s.Ops,
	}
	for _, other := range s.Intents {
		if other.Owner != in.Owner && ScopesOverlap(other.Scope, in.Scope) {
			s.Counters.ConflictsOpened++
			s.Conflicts = append(s.Conflicts, Conflict{ID: s.Counters.ConflictsOpened, Intents: [2]string{other.ID, in.ID}})
		}
	}
	s.Intents = append(s.Intents, in)
	return guest.Accept(s.Marshal())
}

// commitOperationPayload is {"intent_id", "watermark", "summary"}.
type commitOperationPayload struct {
	IntentID  string
	Watermark kit.OptUint
	Summary   string
}

var commitOperationKeys = []string{"intent_id", "watermark", "summary"}

func (p *commitOperationPayload) decode(src string) error {
	o := kit.NewObject(src)
	for o.Next(commitOperationKeys) {
		switch o.Field() {
		case 0:
			o.String(&p.IntentID)
		case 1:
			o.Uint(&p.Watermark)
		case 2:
			o.String(&p.Summary)
		}
	}
	return o.Err()
}

func (s *State) onCommitOperation(env *guest.Envelope) guest.Result {
	var p commitOperationPayload
	if err := p.decode(view(env.Payload)); err != nil {
		return kit.Invalid("CommitOperation payload: %v", err)
	}
	if !p.Watermark.Set {
		return kit.Invalid("watermark is required: the number of the session's operations you have seen")
	}
	_, in := s.intent(p.IntentID)
	switch {
	case in == nil:
		return kit.Invalid("intent %q is not live", p.IntentID)
	case in.Owner != env.Sender:
		return kit.Forbidden("intent %q is owned by %s", p.IntentID, in.Owner)
	}
	if ids := s.ConflictsOf(in.ID); len(ids) > 0 {
		return kit.Invalid("intent %q is in open conflict %d; the arbiter must resolve it first", in.ID, ids[0])
	}
	switch w := p.Watermark.V; {
	case w > s.Ops:
		return kit.Invalid("watermark %d is ahead of the session's %d operations", w, s.Ops)
	case w < in.Required:
		return kit.Invalid("stale watermark %d: operation %d touched the scope of intent %q", w, in.Required, in.ID)
	}
	s.Ops++
	in.Ops++
	scope := in.Scope
	for i := range s.Intents {
		if other := &s.Intents[i]; ScopesOverlap(other.Scope, scope) {
			other.Required = s.Ops
		}
	}
	return guest.Accept(s.Marshal())
}

// intentPayload is {"intent_id", "reason"}, of Withdraw and Claim.
type intentPayload struct {
	IntentID string
	Reason   string
}

var intentKeys = []string{"intent_id", "reason"}

func (p *intentPayload) decode(src string) error {
	o := kit.NewObject(src)
	for o.Next(intentKeys) {
		switch o.Field() {
		case 0:
			o.String(&p.IntentID)
		case 1:
			o.String(&p.Reason)
		}
	}
	return o.Err()
}

func (s *State) onWithdraw(env *guest.Envelope) guest.Result {
	var p intentPayload
	if err := p.decode(view(env.Payload)); err != nil {
		return kit.Invalid("Withdraw payload: %v", err)
	}
	_, in := s.intent(p.IntentID)
	switch {
	case in == nil:
		return kit.Invalid("intent %q is not live", p.IntentID)
	case in.Owner != env.Sender:
		return kit.Forbidden("intent %q is owned by %s", p.IntentID, in.Owner)
	}
	s.remove(p.IntentID)
	s.Counters.Withdrawn++
	return guest.Accept(s.Marshal())
}

func (s *State) onClaim(env *guest.Envelope) guest.Result {
	var p intentPayload
	if err := p.decode(view(env.Payload)); err != nil {
		return kit.Invalid("Claim payload: %v", err)
	}
	_, in := s.intent(p.IntentID)
	switch {
	case in == nil:
		return kit.Invalid("intent %q is not live", p.IntentID)
	case !s.IsCrashed(in.Owner):
		return kit.Invalid("intent %q is owned by %s, who was not declared crashed", p.IntentID, in.Owner)
	}
	in.ClaimedFrom, in.Owner, in.Required = in.Owner, env.Sender, s.Ops
	s.Counters.Claimed++
	return guest.Accept(s.Marshal())
}

// resolvePayload is {"conflict_id", "keep", "reason"}.
type resolvePayload struct {
	ConflictID kit.OptUint
	Keep       []string
	Reason     string
}

var resolveKeys = []string{"conflict_id", "keep", "reason"}

func (p *resolvePayload) decode(src string, buf *[]string) error {
	o := kit.NewObject(src)
	for o.Next(resolveKeys) {
		switch o.Field() {
		case 0:
			o.Uint(&p.ConflictID)
		case 1:
			o.StringsIn(&p.Keep, buf)
		case 2:
			o.String(&p.Reason)
		}
	}
	return o.Err()
}

func (s *State) onResolve(env *guest.Envelope) guest.Result {
	var p resolvePayload
	if err := p.decode(view(env.Payload), &s.buf.strs); err != nil {
		return kit.Invalid("ResolveConflict payload: %v", err)
	}
	if !p.ConflictID.Set {
		return kit.Invalid("conflict_id is required")
	}
	if p.Keep == nil {
		return kit.Invalid("keep is required: list the intents of the conflict that stay live ([] for none)")
	}
	i, c := s.conflict(p.ConflictID.V)
	if c == nil {
		return kit.Invalid("conflict %d is not open", p.ConflictID.V)
	}
	keep := [2]bool{}
	for _, id := range p.Keep {
		k := -1
		for j, member := range c.Intents {
			if member == id {
				k = j
			}
		}
		switch {
		case k < 0:
			return kit.Invalid("intent %q is not part of conflict %d", id, c.ID)
		case keep[k]:
			return kit.Invalid("intent %q is listed twice in keep", id)
		}
		keep[k] = true
	}
	members := c.Intents
	s.Conflicts = append(s.Conflicts[:i], s.Conflicts[i+1:]...)
	s.Counters.ConflictsResolved++
	for j, id := range members {
		if !keep[j] {
			s.remove(id)
			s.Counters.Revoked++
		}
	}
	return guest.Accept(s.Marshal())
}

// escalatePayload is {"conflict_id", "reason"}.
type escalatePayload struct {
	ConflictID kit.OptUint
	Reason     string
}

var escalateKeys = []string{"conflict_id", "reason"}

func (p *escalatePayload) decode(src string) error {
	o := kit.NewObject(src)
	for o.Next(escalateKeys) {
		switch o.Field() {
		case 0:
			o.Uint(&p.ConflictID)
		case 1:
			o.String(&p.Reason)
		}
	}
	return o.Err()
}

func (s *State) onEscalate(env *guest.Envelope) guest.Result {
	var p escalatePayload
	if err := p.decode(view(env.Payload)); err != nil {
		return kit.Invalid("EscalateConflict payload: %v", err)
	}
	if !p.ConflictID.Set {
		return kit.Invalid("conflict_id is required")
	}
	if kit.Blank(p.Reason) {
		return kit.Invalid("an escalation needs a reason")
	}
	_, c := s.conflict(p.ConflictID.V)
	switch {
	case c == nil:
		return kit.Invalid("conflict %d is not open", p.ConflictID.V)
	case c.Escalated:
		return kit.Invalid("conflict %d is already escalated", c.ID)
	}
	c.Escalated, c.Reason = true, p.Reason
	s.Counters.Escalated++
	return guest.Accept(s.Marshal())
}

// crashPayload is {"participant", "reason"}.
type crashPayload struct {
	Participant string
	Reason      string
}

var crashKeys = []string{"participant", "reason"}

func (p *crashPayload) decode(src string) error {
	o := kit.NewObject(src)
	for o.Next(crashKeys) {
		switch o.Field() {
		case 0:
			o.String(&p.Participant)
		case 1:
			o.String(&p.Reason)
		}
	}
	return o.Err()
}

func (s *State) onDeclareCrashed(req *guest.StepRequest) guest.Result {
	var p crashPayload
	if err := p.decode(view(req.Envelope.Payload)); err != nil {
		return kit.Invalid("DeclareCrashed payload: %v", err)
	}
	switch {
	case !req.Session.IsParticipant(p.Participant):
		return kit.Invalid("%q is not a declared participant", p.Participant)
	case p.Participant == s.Arbiter:
		return kit.Invalid("the arbiter cannot declare itself crashed")
	case s.IsCrashed(p.Participant):
		return kit.Invalid("%s was already declared crashed", p.Participant)
	}
	s.Crashed = append(s.Crashed, p.Participant)
	return guest.Accept(s.Marshal())
}

func (s *State) onCommitment(env *guest.Envelope) guest.Result {
	why := "no operation was committed"
	if len(s.Intents) > 0 {
		why = fmt.Sprintf("%d intents are still live; withdraw them first (or escalate a conflict for a negative outcome)", len(s.Intents))
	}
	c, res, ok := kit.Commit(env, s.Eligible(), why)
	if !ok {
		return res
	}
	s.Commitment = c
	return guest.Accept(s.Marshal())
}
