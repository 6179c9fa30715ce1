package kernel

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// session is one session in memory. Every field is guarded by mu; the
// snapshot rec is replaced, never mutated, once it has been written.
type session struct {
	mu   sync.Mutex
	rec  *storev1.Session
	seen map[string]struct{} // accepted message ids (dedup memory)
	mode Mode
	// dead marks a session whose SessionStart failed after it was published
	// in the map; whoever finds it treats it as unknown.
	dead bool
}

func (s *session) id() string { return s.rec.GetMetadata().GetSessionId() }

func (s *session) state() macpv1.SessionState { return s.rec.GetMetadata().GetState() }

// commit makes next the session's snapshot after writing it and entries
// durably. On failure the in-memory session is left as it was.
func (k *Kernel) commit(ctx context.Context, s *session, next *storev1.Session, entries ...*storev1.Entry) error {
	// The client must not be able to abandon a write half way: once queued
	// it may land, and the session must then reflect it.
	if err := k.store.Commit(context.WithoutCancel(ctx), next, entries...); err != nil {
		return fmt.Errorf("commit session %s: %w", next.GetMetadata().GetSessionId(), err)
	}
	prev := s.rec.GetMetadata().GetState()
	if entries[0].GetSequence() == 1 {
		prev = macpv1.SessionState_SESSION_STATE_UNSPECIFIED
	}
	s.rec = next
	for _, e := range entries {
		if e.GetOrigin() == storev1.Origin_ORIGIN_AGENT {
			s.seen[e.GetEnvelope().GetMessageId()] = struct{}{}
		}
		k.feed.Publish(next.GetMetadata().GetSessionId(), e)
	}
	if ev := lifecycleEvent(prev, next.GetMetadata().GetState()); ev != macpv1.SessionLifecycleEvent_EVENT_TYPE_UNSPECIFIED {
		k.lifecycle.Publish("", &macpv1.SessionLifecycleEvent{
			EventType:        ev,
			Session:          proto.Clone(next.GetMetadata()).(*macpv1.SessionMetadata),
			ObservedAtUnixMs: k.now().UnixMilli(),
		})
	}
	return nil
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
