package mpac

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/concord-macp/concord/abi/guest"
	"github.com/concord-macp/concord/examples/modes/internal/kit"
)

// The steps of the announce → commit operation → withdraw cycle do not
// decode the state into a State and encode it again: they read the encoded
// state where it lies and write the new one by splicing. scan walks the
// top-level fields and reads only the id of each intent record; a step then
// parses just the records it needs, and just as far as it needs them
// (Withdraw: the owner of its intent; AnnounceIntent: every owner and
// scope; CommitOperation: every scope, and the watermark counters of the
// overlapping intents). The new state is the head (version, arbiter,
// operation count, counters) written afresh by appendHead, then the
// unchanged records copied byte for byte, with the changed or added records
// written in their place and the few open conflicts re-encoded. Inside a
// WebAssembly guest reading a field costs some hundreds of nanoseconds, so
// with many live intents this is what a step saves: Withdraw reads one
// field per other intent instead of decoding and encoding all of them.
//
// Splicing gives Marshal's bytes only if the state is as Marshal writes it,
// which every state Step returns is. scan and parse check that what they
// read is: fields in Marshal's order, one-byte tags of the right wire type,
// minimal lengths and varints, no zero value written, the version and the
// counters present. They give up on anything else (a malformed or unknown
// state, a committed session), and so does every message but those three:
// Step then takes the full path, decoding the state into a State and
// encoding it with Marshal. Both paths give the same verdicts, codes,
// messages and bytes, as TestSpliceMatchesFullPath checks on random walks.
// The one difference is on a corrupt state, which only a broken host
// passes: the full path refuses it with INTERNAL_ERROR wherever the damage
// is, splicing only when it is in a field the step reads.

// wireState is a state read in place by scan. Its strings are substrings of
// the request's state.
type wireState struct {
	src      string
	arbiter  string
	ops      uint64
	counters Counters
	// crashedAt, intentsAt and conflictsAt are the offsets in src where the
	// crashed participants, the intents and the conflicts start (each
	// group ends where the next starts; the conflicts end src).
	crashedAt, intentsAt, conflictsAt int
	// intents are the live intents' records and conflicts the open
	// conflicts, decoded, both in the step's buffers.
	intents   []wireIntent
	conflicts []Conflict
	buf       *buffers
}

// wireIntent is the record of a live intent, read in place. Offsets are in
// the state.
type wireIntent struct {
	id, owner string
	// scope is the span of the record's scope fields (read by overlaps).
	scope         string
	required, ops uint64
	// at is where the intent's field (tag, length, record) starts, rec
	// where the record starts, end where both end.
	at, rec, end int
	// watermarks is where the fields after the description (Required,
	// Ops, ClaimedFrom) start, claimedFrom where ClaimedFrom does; end
	// when absent.
	watermarks, claimedFrom int
	// afterID is where the field after the id starts, when scan has read
	// the id inline; 0 otherwise.
	afterID int
	// parsed is 0 when only the id is read, 1 when the fields up to the
	// scope are, 2 when all are (see parse).
	parsed int8
	// hit is a flag of the step: the intent overlaps, or takes part.
	hit bool
}

// The readers below walk fields with inlined code rather than with
// kit.FieldReader: inside a WebAssembly guest a call costs more than
// reading a field, and a step reads every live intent. The fields they
// read again (scopes, crashed participants) were checked by scan.

// nextString returns the string field at span[i:], of a group scan has
// checked (scope paths, crashed participants), and where the next field
// starts.
func nextString(span string, i int) (string, int) {
	n, k := uint64(span[i+1]), 1
	if n >= 0x80 {
		n, k = uvarintLong(span, i+1)
	}
	at := i + 1 + k
	return span[at : at+int(n)], at + int(n)
}

// uvarintLong reads the varint at s[i:], the path of the readers below for
// one of several bytes, kept out of line so that they inline. It returns
// the varint with its length, or a length of 0 for one cut short, longer
// than 10 bytes, above 2^64-1, or not minimal (Marshal writes minimal
// varints).
//
//go:noinline
func uvarintLong(s string, i int) (uint64, int) {
	var v uint64
	for k := 0; k < 10 && i+k < len(s); k++ {
		c := s[i+k]
		if k == 9 && c > 1 {
			return 0, 0
		}
		v |= uint64(c&0x7f) << (7 * k)
		if c < 0x80 {
			if c == 0 && k > 0 {
				return 0, 0
			}
			return v, k + 1
		}
	}
	return 0, 0
}

// fieldEnd returns where the field at s[i:] with tag tag ends, given the
// varint v of n bytes after the tag (a value or a length): or -1 unless the
// field is as Marshal writes one, with a tag of a field number from 1 to
// 15 and of the varint or bytes type, a minimal varint or length (n > 0),
// a nonzero varint, and a value inside s. scan and read read the tag and
// the varint inline and call it once per field: inside a WebAssembly guest
// a call costs more than reading a field, and a step reads every live
// intent.
func fieldEnd(s string, i int, tag byte, v uint64, n int) int {
	at := i + 1 + n
	switch {
	case n == 0 || tag >= 0x80 || tag < 8:
		return -1
	case tag&7 == byte(protowire.VarintType) && v != 0:
		return at
	case tag&7 == byte(protowire.BytesType) && v <= uint64(len(s)-at):
		return at + int(v)
	}
	return -1
}

// Tags of the state's fields, as Marshal writes them.
const (
	tagVersion  = byte(fieldVersion)<<3 | byte(protowire.VarintType)
	tagArbiter  = byte(fieldArbiter)<<3 | byte(protowire.BytesType)
	tagOps      = byte(fieldOps)<<3 | byte(protowire.VarintType)
	tagCounters = byte(fieldCounters)<<3 | byte(protowire.BytesType)
	tagCrashed  = byte(fieldCrashed)<<3 | byte(protowire.BytesType)
	tagIntent   = byte(fieldIntent)<<3 | byte(protowire.BytesType)
	tagConflict = byte(fieldConflict)<<3 | byte(protowire.BytesType)

	tagIntentID          = 1<<3 | byte(protowire.BytesType)
	tagIntentSerial      = 2<<3 | byte(protowire.VarintType)
	tagIntentOwner       = 3<<3 | byte(protowire.BytesType)
	tagIntentScope       = 4<<3 | byte(protowire.BytesType)
	tagIntentDescription = 5<<3 | byte(protowire.BytesType)
	tagIntentRequired    = 6<<3 | byte(protowire.VarintType)
	tagIntentOps         = 7<<3 | byte(protowire.VarintType)
	tagIntentClaimedFrom = 8<<3 | byte(protowire.BytesType)
)

// scan reads src into w, using buf, and reports whether it is a state of an
// open session as Marshal writes it: fields in Marshal's order with the
// tags above, the version and the counters present, no zero value where
// Marshal omits one. Of each intent record it reads the id (see parse). On
// false, w is to be released and the state decoded in full.
func (w *wireState) scan(src string, buf *buffers) bool {
	*w = wireState{src: src, buf: buf, intents: buf.wires[:0], conflicts: buf.conflicts[:0],
		crashedAt: -1, intentsAt: -1, conflictsAt: -1}
	var version uint64
	counted := false
	last := byte(0)
	for i := 0; i < len(src); {
		tag, v, n := src[i], uint64(0), 1
		if i+1 < len(src) && src[i+1] < 0x80 {
			v = uint64(src[i+1])
		} else {
			v, n = uvarintLong(src, i+1)
		}
		at, end := i+1+n, fieldEnd(src, i, tag, v, n)
		// Fields in Marshal's order; only the groups repeat.
		if end < 0 || tag < last || tag == last && tag < tagCrashed {
			return false
		}
		last = tag
		switch tag {
		case tagVersion:
			version = v
		case tagArbiter:
			if at == end {
				return false
			}
			w.arbiter = src[at:end]
		case tagOps:
			w.ops = v
		case tagCounters:
			if w.counters.decode(src[at:end]) != nil {
				return false
			}
			counted = true
		case tagCrashed:
			if w.crashedAt < 0 {
				w.crashedAt = i
			}
		case tagIntent:
			if w.intentsAt < 0 {
				w.intentsAt = i
			}
			w.intents = append(w.intents, wireIntent{at: i, rec: at, end: end})
			in := &w.intents[len(w.intents)-1]
			// The id is the record's first field; read it inline when
			// its length takes one byte.
			if n := end - at - 2; n >= 0 && src[at] == tagIntentID && src[at+1]-1 < 0x7f && int(src[at+1]) <= n {
				in.id, in.afterID = src[at+2:at+2+int(src[at+1])], at+2+int(src[at+1])
			} else if !in.parse(src, false) {
				return false
			}
		case tagConflict:
			if w.conflictsAt < 0 {
				w.conflictsAt = i
			}
			w.conflicts = append(w.conflicts, Conflict{})
			if w.conflicts[len(w.conflicts)-1].decode(src[at:end]) != nil {
				return false
			}
		default:
			// Including a Commitment: a committed session takes the full
			// path.
			return false
		}
		i = end
	}
	if version != stateVersion || !counted {
		return false
	}
	// A group that is absent starts where the next one does.
	if w.conflictsAt < 0 {
		w.conflictsAt = len(src)
	}
	if w.intentsAt < 0 {
		w.intentsAt = w.conflictsAt
	}
	if w.crashedAt < 0 {
		w.crashedAt = w.intentsAt
	}
	return true
}

// parse reads the fields of the intent record up to the scope (the id,
// the owner and the scope span), or with all set all of them, and reports
// whether they are as Marshal writes them. scan reads only the id of each
// record: a step parses the records it needs, and copies the others
// unread.
func (in *wireIntent) parse(src string, all bool) bool {
	if in.parsed >= 1 && !all || in.parsed == 2 {
		return true
	}
	end := in.end
	in.watermarks, in.claimedFrom = end, end
	src = src[:end]
	scopeAt, scopeEnd := 0, 0
	// The id, when scan has read it, is not read again.
	i, last := in.rec, byte(0)
	if in.afterID > 0 {
		i, last = in.afterID, tagIntentID
	}
	for i < end {
		tag, v, n := src[i], uint64(0), 1
		if tag > tagIntentScope && !all {
			break
		}
		if i+1 < end && src[i+1] < 0x80 {
			v = uint64(src[i+1])
		} else {
			v, n = uvarintLong(src, i+1)
		}
		vat, vend := i+1+n, fieldEnd(src, i, tag, v, n)
		if vend < 0 || tag < last || tag == last && tag != tagIntentScope {
			return false
		}
		last = tag
		switch tag {
		case tagIntentID, tagIntentOwner, tagIntentDescription, tagIntentClaimedFrom:
			// Marshal omits an empty string, but for scope paths.
			if vat == vend {
				return false
			}
			switch tag {
			case tagIntentID:
				in.id = src[vat:vend]
			case tagIntentOwner:
				in.owner = src[vat:vend]
			case tagIntentClaimedFrom:
				in.claimedFrom = i
			}
		case tagIntentSerial:
		case tagIntentScope:
			if scopeEnd == 0 {
				scopeAt = i
			}
			scopeEnd = vend
		case tagIntentRequired:
			in.required = v
		case tagIntentOps:
			in.ops = v
		default:
			return false
		}
		if tag >= tagIntentRequired && in.watermarks == end {
			in.watermarks = i
		}
		i = vend
	}
	in.scope = src[scopeAt:scopeEnd]
	in.parsed = 1
	if all {
		in.parsed = 2
	}
	return true
}

// overlaps reports whether the scope of in overlaps scope, as
// ScopesOverlap does.
func (in *wireIntent) overlaps(scope []string) bool {
	span := in.scope
	for i := 0; i < len(span); {
		// nextString, inlined.
		n, k := uint64(span[i+1]), 1
		if n >= 0x80 {
			n, k = uvarintLong(span, i+1)
		}
		at := i + 1 + k
		i = at + int(n)
		x := span[at:i]
		for _, y := range scope {
			if PathsOverlap(x, y) {
				return true
			}
		}
	}
	return false
}

// intent returns the index of the live intent id, or -1.
func (w *wireState) intent(id string) int {
	for i := range w.intents {
		if w.intents[i].id == id {
			return i
		}
	}
	return -1
}

// isCrashed reports whether p was declared crashed.
func (w *wireState) isCrashed(p string) bool {
	crashed := w.src[w.crashedAt:w.intentsAt]
	for i := 0; i < len(crashed); {
		var c string
		c, i = nextString(crashed, i)
		if c == p {
			return true
		}
	}
	return false
}

// release gives the slices of w back to its buffers, and those of the
// payload, cleared.
func (w *wireState) release() {
	if b := w.buf; b != nil {
		b.wires = clearAll(w.intents)
		b.conflicts = clearAll(w.conflicts)
		b.strs = clearAll(b.strs)
	}
}

// spliceStep decides on an AnnounceIntent, CommitOperation or Withdraw by
// splicing, and reports false, having decided nothing, when the state is
// not one scan takes: the caller then takes the full path.
func spliceStep(req *guest.StepRequest, buf *buffers) (guest.Result, bool) {
	var w wireState
	ok := w.scan(view(req.State), buf)
	res := guest.Result{}
	if ok {
		res, ok = w.decide(req)
	}
	w.release()
	return res, ok
}

// decide decides on the envelope, or reports false.
func (w *wireState) decide(req *guest.StepRequest) (guest.Result, bool) {
	// As State.step and State.actor, in the same order.
	env := &req.Envelope
	switch sender := env.Sender; {
	case !req.Session.IsParticipant(sender):
		return kit.Forbidden("%s is not a declared participant", sender), true
	case w.isCrashed(sender):
		return kit.Forbidden("%s was declared crashed", sender), true
	}
	switch env.MessageType {
	case MsgAnnounceIntent:
		return w.onAnnounce(env)
	case MsgCommitOperation:
		return w.onCommitOperation(env)
	case MsgWithdraw:
		return w.onWithdraw(env)
	}
	return guest.Result{}, false
}

// The three steps below are State.onAnnounce, onCommitOperation and
// onWithdraw on a wireState: the same checks in the same order, with the
// same messages, and the state Marshal would write. They report false,
// having decided nothing, on an intent record parse refuses.

func (w *wireState) onAnnounce(env *guest.Envelope) (guest.Result, bool) {
	var p announcePayload
	if err := p.decode(view(env.Payload), &w.buf.strs); err != nil {
		return kit.Invalid("AnnounceIntent payload: %v", err), true
	}
	if kit.Blank(p.IntentID) {
		return kit.Invalid("intent_id must not be blank"), true
	}
	scope := p.Scope
	if err := cleanScope(scope); err != nil {
		return kit.Invalid("scope: %v", err), true
	}
	if w.intent(p.IntentID) >= 0 {
		return kit.Invalid("intent %q is already live", p.IntentID), true
	}
	c := w.counters
	c.Announced++
	in := Intent{
		ID: p.IntentID, Serial: c.Announced, Owner: env.Sender,
		Scope: scope, Description: p.Description, Required: w.ops,
	}
	// A conflict with every overlapping intent of another owner, numbered
	// in announce order after the open ones.
	first := c.ConflictsOpened + 1
	size := headBound(w.arbiter) + len(w.src) + intentBound(&in)
	for i := range w.intents {
		other := &w.intents[i]
		if !other.parse(w.src, false) {
			return guest.Result{}, false
		}
		other.hit = other.owner != in.Owner && other.overlaps(scope)
		if other.hit {
			c.ConflictsOpened++
			size += conflictBound(&Conflict{Intents: [2]string{other.id, in.ID}})
		}
	}
	b := make([]byte, 0, size)
	b = appendHead(b, w.arbiter, w.ops, &c)
	b = append(b, w.src[w.crashedAt:w.conflictsAt]...)
	b = appendIntent(b, &in)
	for i := range w.conflicts {
		b = appendConflict(b, &w.conflicts[i])
	}
	for i := range w.intents {
		if other := &w.intents[i]; other.hit {
			b = appendConflict(b, &Conflict{ID: first, Intents: [2]string{other.id, in.ID}})
			first++
		}
	}
	return guest.Accept(b), true
}

// conflictOf returns the id of the first open conflict intent id is in,
// and whether there is one.
func (w *wireState) conflictOf(id string) (uint64, bool) {
	for i := range w.conflicts {
		if c := &w.conflicts[i]; c.Intents[0] == id || c.Intents[1] == id {
			return c.ID, true
		}
	}
	return 0, false
}

func (w *wireState) onCommitOperation(env *guest.Envelope) (guest.Result, bool) {
	var p commitOperationPayload
	if err := p.decode(view(env.Payload)); err != nil {
		return kit.Invalid("CommitOperation payload: %v", err), true
	}
	if !p.Watermark.Set {
		return kit.Invalid("watermark is required: the number of the session's operations you have seen"), true
	}
	k := w.intent(p.IntentID)
	if k < 0 {
		return kit.Invalid("intent %q is not live", p.IntentID), true
	}
	in := &w.intents[k]
	if !in.parse(w.src, true) {
		return guest.Result{}, false
	}
	if in.owner != env.Sender {
		return kit.Forbidden("intent %q is owned by %s", p.IntentID, in.owner), true
	}
	if id, ok := w.conflictOf(in.id); ok {
		return kit.Invalid("intent %q is in open conflict %d; the arbiter must resolve it first", in.id, id), true
	}
	switch wm := p.Watermark.V; {
	case wm > w.ops:
		return kit.Invalid("watermark %d is ahead of the session's %d operations", wm, w.ops), true
	case wm < in.required:
		return kit.Invalid("stale watermark %d: operation %d touched the scope of intent %q", wm, in.required, in.id), true
	}
	ops := w.ops + 1
	// The intent's paths, to compare the other scopes with.
	scope := w.buf.strs[:0]
	for i := 0; i < len(in.scope); {
		var p string
		p, i = nextString(in.scope, i)
		scope = append(scope, p)
	}
	w.buf.strs = scope
	// Every overlapping record is written anew with its required watermark
	// raised, the intent's own with its operation counted; each may grow
	// by two varint fields and a wider length.
	const grow = 2*11 + 4
	size := headBound(w.arbiter) + len(w.src)
	for i := range w.intents {
		other := &w.intents[i]
		if !other.parse(w.src, false) {
			return guest.Result{}, false
		}
		other.hit = i == k || other.overlaps(scope)
		if other.hit {
			if !other.parse(w.src, true) {
				return guest.Result{}, false
			}
			size += grow
		}
	}
	b := make([]byte, 0, size)
	b = appendHead(b, w.arbiter, ops, &w.counters)
	b = append(b, w.src[w.crashedAt:w.intentsAt]...)
	for i := range w.intents {
		other := &w.intents[i]
		if !other.hit {
			b = append(b, w.src[other.at:other.end]...)
			continue
		}
		n := other.ops
		if i == k {
			n++
		}
		var mark int
		b, mark = kit.OpenRecord(b, fieldIntent)
		b = append(b, w.src[other.rec:other.watermarks]...)
		b = guest.AppendVarint(b, 6, ops)
		b = guest.AppendVarint(b, 7, n)
		b = append(b, w.src[other.claimedFrom:other.end]...)
		b = kit.CloseRecord(b, mark)
	}
	for i := range w.conflicts {
		b = appendConflict(b, &w.conflicts[i])
	}
	return guest.Accept(b), true
}

func (w *wireState) onWithdraw(env *guest.Envelope) (guest.Result, bool) {
	var p intentPayload
	if err := p.decode(view(env.Payload)); err != nil {
		return kit.Invalid("Withdraw payload: %v", err), true
	}
	k := w.intent(p.IntentID)
	if k < 0 {
		return kit.Invalid("intent %q is not live", p.IntentID), true
	}
	in := &w.intents[k]
	if !in.parse(w.src, false) {
		return guest.Result{}, false
	}
	if in.owner != env.Sender {
		return kit.Forbidden("intent %q is owned by %s", p.IntentID, in.owner), true
	}
	// As State.remove: the record goes, and so do its conflicts.
	c := w.counters
	size := headBound(w.arbiter) + w.conflictsAt - w.crashedAt - (in.end - in.at)
	for i := range w.conflicts {
		if cf := &w.conflicts[i]; cf.Intents[0] == in.id || cf.Intents[1] == in.id {
			c.ConflictsDissolved++
		} else {
			size += conflictBound(cf)
		}
	}
	c.Withdrawn++
	b := make([]byte, 0, size)
	b = appendHead(b, w.arbiter, w.ops, &c)
	b = append(b, w.src[w.crashedAt:in.at]...)
	b = append(b, w.src[in.end:w.conflictsAt]...)
	for i := range w.conflicts {
		if cf := &w.conflicts[i]; cf.Intents[0] != in.id && cf.Intents[1] != in.id {
			b = appendConflict(b, cf)
		}
	}
	return guest.Accept(b), true
}
