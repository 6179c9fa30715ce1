package kernel

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/macperr"
	"github.com/concord-macp/concord/host/store"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// session is one session in memory. The fields above pubMu are guarded by
// mu; the snapshot rec is replaced, never mutated, once it has been queued.
//
// A session's messages are applied one at a time under mu, but the wait for
// durability happens after mu is released: the next message can be applied
// while the previous one is being written. Writes complete in the order they
// were queued; an accepted message is acknowledged, published to streams and
// announced only once it is durable, in sequence order (see publish).
type session struct {
	// sid is the session id; it never changes, so it is read without mu.
	sid string

	mu   sync.Mutex
	rec  *storev1.Session
	seen map[string]uint64 // accepted message id -> its sequence (dedup memory)
	mode Mode
	// dead marks a session whose SessionStart failed after it was published
	// in the map; whoever finds it treats it as unknown.
	dead bool

	qmu sync.Mutex
	// queue holds agents' envelopes waiting for the drainer, in arrival
	// order; draining is true while a drainer runs (see Kernel.drain).
	queue    []*request
	draining bool

	pubMu sync.Mutex
	// published is the highest sequence known durable and published.
	published uint64
	// ready holds durable entries waiting for an earlier one to be.
	ready map[uint64]publication
	// advanced is closed (and replaced) whenever published moves.
	advanced chan struct{}
}

// publication is what goes out once an entry is durable.
type publication struct {
	entry *storev1.Entry
	event *macpv1.SessionLifecycleEvent // nil when the entry changes no state
}

func newSession(rec *storev1.Session, mode Mode) *session {
	return &session{sid: rec.GetMetadata().GetSessionId(), rec: rec, seen: map[string]uint64{}, mode: mode,
		ready: map[uint64]publication{}, advanced: make(chan struct{})}
}

func (s *session) id() string { return s.sid }

func (s *session) state() macpv1.SessionState { return s.rec.GetMetadata().GetState() }

// enqueue queues next and entries for writing and makes next the session's
// snapshot. The caller holds s.mu. The returned wait blocks until the write
// is durable and then publishes the entries; the caller must call it (after
// releasing s.mu, or before, as commit does) and must not report success
// unless it returns nil. A failed write leaves the in-memory session ahead
// of the log, but the store then refuses every later write, so nothing built
// on it is ever acknowledged; a restart reloads the durable state.
func (k *Kernel) enqueue(ctx context.Context, s *session, next *storev1.Session, entries ...*storev1.Entry) (wait func(ctx context.Context) error, err error) {
	prev := s.rec.GetMetadata().GetState()
	if entries[0].GetSequence() == 1 {
		prev = macpv1.SessionState_SESSION_STATE_UNSPECIFIED
	}
	// The client must not be able to abandon a write half way: once queued
	// it may land, and the session must then reflect it.
	p, err := k.store.Enqueue(context.WithoutCancel(ctx), next, entries...)
	if err != nil {
		return nil, fmt.Errorf("queue commit of session %s: %w", next.GetMetadata().GetSessionId(), err)
	}
	if isLive(prev) && !isLive(next.GetMetadata().GetState()) {
		k.opts.Limits.Close(next.GetMetadata().GetInitiator()) // its open-session slot
	}
	s.rec = next
	for _, e := range entries {
		if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT {
			s.seen[e.GetEnvelope().GetMessageId()] = e.GetSequence()
		}
	}
	var event *macpv1.SessionLifecycleEvent
	if ev := lifecycleEvent(prev, next.GetMetadata().GetState()); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_UNSPECIFIED {
		event = &macpv1.SessionLifecycleEvent{
			EventType:        ev,
			Session:          proto.Clone(next.GetMetadata()).(*macpv1.SessionMetadata),
			ObservedAtUnixMs: k.now().UnixMilli(),
		}
	}
	return func(ctx context.Context) error {
		if err := p.Wait(context.WithoutCancel(ctx)); err != nil {
			k.log.Error("a write of the session log failed; the store refuses further writes until restarted",
				"session_id", next.GetMetadata().GetSessionId(), "err", err)
			return fmt.Errorf("commit session %s: %w", next.GetMetadata().GetSessionId(), err)
		}
		for i, e := range entries {
			item := publication{entry: e}
			if i == len(entries)-1 {
				item.event = event
			}
			k.publish(s, item)
		}
		return nil
	}, nil
}

// commit writes next and entries and waits until they are durable. The
// caller holds s.mu.
func (k *Kernel) commit(ctx context.Context, s *session, next *storev1.Session, entries ...*storev1.Entry) error {
	wait, err := k.enqueue(ctx, s, next, entries...)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// publish hands a durable entry to the session's streams and its lifecycle
// event to watchers, strictly in sequence order: an entry that became
// durable before an earlier one waits for it.
func (k *Kernel) publish(s *session, item publication) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.ready[item.entry.GetSequence()] = item
	moved := false
	for {
		next, ok := s.ready[s.published+1]
		if !ok {
			break
		}
		delete(s.ready, s.published+1)
		s.published++
		moved = true
		k.feed.Publish(s.id(), next.entry)
		if next.event != nil {
			k.lifecycle.Publish("", next.event)
		}
	}
	if moved {
		close(s.advanced)
		s.advanced = make(chan struct{})
	}
}

// waitDurable blocks until the entry with sequence seq is durable.
func (s *session) waitDurable(ctx context.Context, seq uint64) error {
	for {
		s.pubMu.Lock()
		done, ch := s.published >= seq, s.advanced
		s.pubMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUp brings session s up to the present before it is used: it writes
// the records of mode timers that came due, then expires the session if its
// time ran out (see fireDueTimers and expireIfDue). It reports whether the
// session expired now. The caller holds s.mu.
func (k *Kernel) catchUp(ctx context.Context, s *session) (expired bool, err error) {
	if err := k.fireDueTimers(ctx, s); err != nil {
		return false, err
	}
	if expired, err = k.expireIfDue(ctx, s); err != nil {
		return false, writeError(err, "could not record the session's expiry")
	}
	return expired, nil
}

// expireIfDue expires a session whose time ran out: an OPEN session past
// its deadline, or a SUSPENDED one whose cumulative suspension exceeds its
// cap. It writes a runtime expiry record to the log and reports whether it
// expired the session. The caller holds s.mu.
func (k *Kernel) expireIfDue(ctx context.Context, s *session) (bool, error) {
	now := k.now().UnixMilli()
	switch s.state() {
	case macpv1.SessionState_SESSION_STATE_OPEN:
		if now <= s.rec.GetDeadlineUnixMs() {
			return false, nil
		}
	case macpv1.SessionState_SESSION_STATE_SUSPENDED:
		if s.rec.GetSuspendedTotalMs()+(now-s.rec.GetSuspendedAtUnixMs()) <= s.rec.GetMaxSuspendMs() {
			return false, nil
		}
	default:
		return false, nil
	}
	next := proto.Clone(s.rec).(*storev1.Session)
	next.Metadata.State = macpv1.SessionState_SESSION_STATE_EXPIRED
	next.LastSequence++
	entry := &storev1.Entry{
		Sequence:         next.LastSequence,
		AcceptedAtUnixMs: now,
		Origin:           storev1.Origin_ORIGIN_RUNTIME,
		StateAfter:       macpv1.SessionState_SESSION_STATE_EXPIRED,
	}
	if err := k.commit(ctx, s, next, entry); err != nil {
		return false, err
	}
	k.log.Info("session expired", "session_id", s.id(), "deadline_unix_ms", s.rec.GetDeadlineUnixMs())
	return true, nil
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

// mayObserve reports whether identity may read the session: its initiator
// and declared participants.
func mayObserve(md *macpv1.SessionMetadata, identity string) bool {
	if identity == md.GetInitiator() {
		return true
	}
	for _, p := range md.GetParticipants() {
		if p == identity {
			return true
		}
	}
	return false
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

// writeError reports a write of the session log that failed. A write the
// store refused because the disk is full says so, so that the client knows
// nothing was stored and that a retry can succeed later.
func writeError(err error, message string) *macperr.Error {
	if errors.Is(err, store.ErrDiskFull) {
		return macperr.Wrap(macperr.InternalError, err, store.DiskFullMessage)
	}
	return macperr.Wrap(macperr.InternalError, err, message)
}
