package kernel

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concord-macp/concord/host/cmthash"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Every change to a session goes one way: its writer (SessionStart, an
// agent's message, a mode timer, a lifecycle call, the expiry) describes it
// as a transition, and record turns it into the next snapshot and the log
// entry, takes the next sequence and queues both for writing. Writers that
// consult the mode first do so through step, which applies the checks
// every mode answer must pass. No writer builds a snapshot or an entry of
// its own.

// transition is one change to a session.
type transition struct {
	// env is the envelope the entry records; nil for an expiry.
	env    *macpv1.Envelope
	origin storev1.Origin
	// at is the host time the entry is accepted at.
	at int64
	// stepped is the mode's accepted answer to env; nil when the mode is
	// not consulted (lifecycle records, expiry).
	stepped *stepped
	// lifecycle, when set, is the state the change moves the session to
	// by the runtime's own authority (cancel, suspend, resume, expire).
	lifecycle macpv1.SessionState
	// edit adjusts the snapshot's lifecycle bookkeeping (suspension times,
	// the deadline) after the rest of the transition is applied.
	edit func(next *storev1.Session)
	// commitment is the Commitment that resolves the session, with the
	// governance decision that allowed it.
	commitment *macpv1.CommitmentPayload
	governance *storev1.Governance
}

// stepped is a mode's accepted answer, checked.
type stepped struct {
	state  []byte
	timers []*abiv1.Timer
	// terminal is set when the envelope's type ends the session
	// (the mode's terminal_message_types).
	terminal bool
	// clock is the session clock the mode stepped at.
	clock int64
}

// maxModeStateBytes caps the state a mode may keep, so that one commit
// always fits in a store transaction.
const maxModeStateBytes = 2 << 20

// step offers env to module m with the state of snapshot rec, at host time
// at and session clock clock, and checks the answer: a rejection becomes
// the mode's coded error, and a module that fails, grows its state over the
// cap or sets an unusable timer fails the message with INTERNAL_ERROR.
func (k *Kernel) step(ctx context.Context, m mode.Module, rec *storev1.Session, env *macpv1.Envelope, at, clock int64, runtimeWritten bool) (*stepped, error) {
	res, err := m.Step(ctx, &abiv1.StepRequest{
		State:          rec.GetModeState(),
		Envelope:       env,
		Session:        abiSession(rec),
		NowUnixMs:      at,
		RuntimeWritten: runtimeWritten,
		SessionClockMs: clock,
	})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the mode module failed on this message")
	}
	if res.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
		return nil, k.modeRejection(rec, env, res)
	}
	if len(res.GetState()) > maxModeStateBytes {
		return nil, macperr.New(macperr.InternalError, "the mode's state would grow to %d bytes, over the limit of %d", len(res.GetState()), maxModeStateBytes)
	}
	timers, err := k.pendingTimers(res, clock)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the mode module answered with an unusable timer")
	}
	return &stepped{state: res.GetState(), timers: timers, terminal: mode.IsTerminal(m.Descriptor(), env.GetMessageType()), clock: clock}, nil
}

// maxModeMessage bounds the rejection text of a mode passed on to clients.
const maxModeMessage = 1024

// modeRejection turns a mode's reject verdict into a coded error. The code
// must be one of the specification's registry: a module that answers with
// none, or with another, is treated as broken and its text is logged, not
// sent, since modules may be uploaded by anyone with the right.
func (k *Kernel) modeRejection(rec *storev1.Session, env *macpv1.Envelope, res *abiv1.StepResponse) error {
	code := macperr.Code(res.GetErrorCode())
	if !code.Known() || code == macperr.InternalError {
		k.log.Warn("a mode rejected a message with no usable error code",
			"session_id", rec.GetMetadata().GetSessionId(), "message_id", env.GetMessageId(), "module", rec.GetModuleDigest(),
			"code", fmt.Sprintf("%.64q", res.GetErrorCode()), "message", fmt.Sprintf("%.256q", res.GetErrorMessage()))
		return macperr.New(macperr.InternalError, "the mode rejected the message without a valid error code")
	}
	msg := res.GetErrorMessage()
	if len(msg) > maxModeMessage {
		msg = msg[:maxModeMessage]
	}
	return macperr.New(code, "%s", msg)
}

// record applies t to session s: it builds the next snapshot and the entry
// that records t, makes the snapshot current and queues both for writing.
// The returned wait blocks until they are durable and then publishes the
// entry (see enqueue). The caller holds s.mu.
func (k *Kernel) record(ctx context.Context, s *session, t transition) (wait func(context.Context) error, err error) {
	if !k.owns(s.sid) {
		return nil, notOwner(s.sid) // cluster.go
	}
	next := successor(s.rec)
	entry := &storev1.Entry{
		Envelope:         t.env,
		AcceptedAtUnixMs: t.at,
		Origin:           t.origin,
		Governance:       t.governance,
	}
	if t.stepped != nil {
		next.ModeState = t.stepped.state
		next.Timers = t.stepped.timers
		if t.stepped.terminal {
			next.Metadata.State = macpv1.SessionState_SESSION_STATE_RESOLVED
		}
		entry.SessionClockMs = t.stepped.clock
	}
	if t.lifecycle != macpv1.SessionState_SESSION_STATE_UNSPECIFIED {
		next.Metadata.State = t.lifecycle
	}
	if t.commitment != nil {
		next.Metadata.State = macpv1.SessionState_SESSION_STATE_RESOLVED
		next.Resolution = t.commitment
		// A payload with fields the hash label does not cover has no hash.
		if h, err := cmthash.Hash(t.commitment); err == nil {
			entry.CommitmentHash = h
			next.ResolutionHash = h
		} else if !errors.Is(err, cmthash.ErrCannotVerify) {
			return nil, macperr.Wrap(macperr.InternalError, err, "could not hash the commitment")
		}
	}
	if t.edit != nil {
		t.edit(next)
	}
	if t.origin == storev1.Origin_ORIGIN_AGENT {
		recordActivity(next.Metadata, t.env.GetSender(), t.at)
	}
	next.LastSequence++
	entry.Sequence = next.LastSequence
	entry.StateAfter = next.Metadata.State
	wait, err = k.enqueue(ctx, s, next, entry)
	if err != nil {
		return nil, writeError(err, "the change could not be queued for writing")
	}
	return wait, nil
}

// writeError reports a write of the session log that failed. A write the
// store refused for want of space says so, so that the client knows nothing
// was stored and that a retry can succeed later.
func writeError(err error, message string) *macperr.Error {
	if errors.Is(err, storage.ErrNoSpace) {
		return macperr.Wrap(macperr.InternalError, err, storage.NoSpaceMessage)
	}
	return macperr.Wrap(macperr.InternalError, err, message)
}

// recordNow is record followed by the wait for durability, for writers
// that answer only once their change is durable. The caller holds s.mu.
func (k *Kernel) recordNow(ctx context.Context, s *session, t transition) error {
	wait, err := k.record(ctx, s, t)
	if err != nil {
		return err
	}
	if err := wait(ctx); err != nil {
		return writeError(err, "the change could not be made durable")
	}
	return nil
}

// successor returns a copy of rec to build the next snapshot on. Snapshots
// are never changed once current, so the copy shares rec's immutable parts
// (the mode state bytes, the timers, the bound policy, the resolution) and
// clones only the metadata that transitions edit.
func successor(rec *storev1.Session) *storev1.Session {
	next := &storev1.Session{}
	src, dst := rec.ProtoReflect(), next.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	next.Metadata = proto.Clone(rec.GetMetadata()).(*macpv1.SessionMetadata)
	return next
}

// Snapshot policy: a commit saves the mode state when it is small (cheaper
// than stepping again), when the session ends, and otherwise every
// snapshotEvery entries, so that a commit writes a bounded amount and a load
// steps the mode at most snapshotEvery times (RATIONALE "Log-structured
// session state").
const (
	inlineStateBytes = 4 << 10
	snapshotEvery    = 64
)

// saveState reports whether the commit of next saves its mode state.
func saveState(next *storev1.Session) bool {
	return next.GetLastSequence() == 1 ||
		len(next.GetModeState()) <= inlineStateBytes ||
		!isLive(next.GetMetadata().GetState()) ||
		next.GetLastSequence()-next.GetStateSequence() >= snapshotEvery
}

// enqueue queues next and entry for writing and makes next the session's
// snapshot. The caller holds s.mu. The returned wait blocks until the write
// is durable and then publishes the entry; the caller must call it (after
// releasing s.mu, or before, as recordNow does) and must not report success
// unless it returns nil. A failed write leaves the in-memory session ahead
// of the log, but the store then refuses every later write, so nothing
// built on it is ever acknowledged; a restart reloads the durable state.
func (k *Kernel) enqueue(ctx context.Context, s *session, next *storev1.Session, entry *storev1.Entry) (wait func(ctx context.Context) error, err error) {
	prev := s.rec.GetMetadata().GetState()
	if entry.GetSequence() == 1 {
		prev = macpv1.SessionState_SESSION_STATE_UNSPECIFIED
	}
	save := saveState(next)
	if save {
		next.StateSequence = next.LastSequence
	}
	// The client must not be able to abandon a write half way: once queued
	// it may land, and the session must then reflect it.
	p, err := k.store.Enqueue(context.WithoutCancel(ctx), storage.Commit{Session: next, Entries: []*storev1.Entry{entry}, SaveState: save})
	if err != nil {
		k.writeFailed(s)
		return nil, fmt.Errorf("queue commit of session %s: %w", s.id(), err)
	}
	if isLive(prev) && !isLive(next.GetMetadata().GetState()) {
		k.limits.Close(next.GetMetadata().GetInitiator()) // its open-session slot
	}
	s.rec = next
	if entry.GetOrigin() == storev1.Origin_ORIGIN_AGENT {
		s.pubMu.Lock()
		s.inflight[entry.GetEnvelope().GetMessageId()] = entry.GetSequence()
		s.pubMu.Unlock()
	}
	k.reschedule(s)
	item := publication{entry: entry}
	if ev := lifecycleEvent(prev, next.GetMetadata().GetState()); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_UNSPECIFIED {
		item.event = &macpv1.SessionLifecycleEvent{
			EventType:        ev,
			Session:          proto.Clone(next.GetMetadata()).(*macpv1.SessionMetadata),
			ObservedAtUnixMs: k.now().UnixMilli(),
		}
	}
	return func(ctx context.Context) error {
		if err := p.Wait(context.WithoutCancel(ctx)); err != nil {
			k.writeFailed(s)
			k.log.Error("a write of the session log failed; the store refuses further writes until restarted",
				"session_id", s.id(), "message_id", entry.GetEnvelope().GetMessageId(), "sequence", entry.GetSequence(), "err", err)
			return fmt.Errorf("commit session %s: %w", s.id(), err)
		}
		k.publish(s, item)
		return nil
	}, nil
}

// recordActivity counts one accepted message of sender in md.
func recordActivity(md *macpv1.SessionMetadata, sender string, at int64) {
	for _, a := range md.ParticipantActivity {
		if a.ParticipantId == sender {
			a.MessageCount++
			a.LastMessageAtUnixMs = at
			return
		}
	}
	md.ParticipantActivity = append(md.ParticipantActivity, &macpv1.ParticipantActivity{
		ParticipantId: sender, LastMessageAtUnixMs: at, MessageCount: 1,
	})
	sort.Slice(md.ParticipantActivity, func(i, j int) bool {
		return md.ParticipantActivity[i].ParticipantId < md.ParticipantActivity[j].ParticipantId
	})
}

// isLive reports whether a session in state st holds an open-session slot.
func isLive(st macpv1.SessionState) bool {
	return st == macpv1.SessionState_SESSION_STATE_OPEN || st == macpv1.SessionState_SESSION_STATE_SUSPENDED
}

// lifecycleEvent names the transition from prev to next, if it is one.
func lifecycleEvent(prev, next macpv1.SessionState) macpv1.SessionLifecycleEvent_EventType {
	if prev == next {
		return macpv1.SessionLifecycleEvent_EVENT_TYPE_UNSPECIFIED
	}
	switch next {
	case macpv1.SessionState_SESSION_STATE_OPEN:
		if prev == macpv1.SessionState_SESSION_STATE_SUSPENDED {
			return macpv1.SessionLifecycleEvent_EVENT_TYPE_RESUMED
		}
		return macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED
	case macpv1.SessionState_SESSION_STATE_RESOLVED:
		return macpv1.SessionLifecycleEvent_EVENT_TYPE_RESOLVED
	case macpv1.SessionState_SESSION_STATE_EXPIRED:
		return macpv1.SessionLifecycleEvent_EVENT_TYPE_EXPIRED
	case macpv1.SessionState_SESSION_STATE_SUSPENDED:
		return macpv1.SessionLifecycleEvent_EVENT_TYPE_SUSPENDED
	case macpv1.SessionState_SESSION_STATE_CANCELLED:
		return macpv1.SessionLifecycleEvent_EVENT_TYPE_CANCELLED
	}
	return macpv1.SessionLifecycleEvent_EVENT_TYPE_UNSPECIFIED
}

// abiSession projects a session snapshot to the context a mode sees.
func abiSession(rec *storev1.Session) *abiv1.Session {
	md := rec.GetMetadata()
	return &abiv1.Session{
		SessionId:            md.GetSessionId(),
		Mode:                 md.GetMode(),
		ModeVersion:          md.GetModeVersion(),
		ConfigurationVersion: md.GetConfigurationVersion(),
		PolicyVersion:        md.GetPolicyVersion(),
		Initiator:            md.GetInitiator(),
		Participants:         md.GetParticipants(),
		StartedAtUnixMs:      rec.GetAnchorUnixMs(),
		PolicyRules:          rec.GetPolicy().GetRules(),
		PolicySchemaVersion:  rec.GetPolicy().GetSchemaVersion(),
	}
}
