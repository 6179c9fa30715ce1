package kernel

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// A mode may ask the runtime to write an envelope into its session later
// (concord.abi.v1.Timer): Handoff's synthetic implicit accept is one. Timers
// run on the session clock, the open time since the TTL anchor, so time
// spent suspended does not count. They fire lazily, on the next access to
// the session after they came due (a message, a lifecycle call, a read or
// the sweeper), before that access is handled, and they are timestamped at
// the moment they came due. That keeps the log in time order and makes the
// outcome independent of when the access happened, so replay, which runs
// each entry at its recorded time, reproduces every firing exactly.

// maxTimers caps the timers one session may have pending.
const maxTimers = 16

// sessionClock is the session clock at host time now: milliseconds open
// since the TTL anchor, suspensions excluded. It is only meaningful while
// the session is open.
func sessionClock(rec *storev1.Session, now int64) int64 {
	return now - rec.GetAnchorUnixMs() - rec.GetSuspendedTotalMs()
}

// pendingTimers checks the timers an accepted step returned and orders them
// earliest first. A timer due before clock, the step's own session clock,
// is moved to clock, so that its record never predates the step that set
// it. A mode that returns an unusable timer is faulty: the step fails.
func (k *Kernel) pendingTimers(res *abiv1.StepResponse, clock int64) ([]*abiv1.Timer, error) {
	ts := res.GetTimers()
	if len(ts) == 0 {
		return nil, nil
	}
	if len(ts) > maxTimers {
		return nil, fmt.Errorf("the mode set %d timers, over the limit of %d", len(ts), maxTimers)
	}
	out := make([]*abiv1.Timer, 0, len(ts))
	ids := make(map[string]bool, len(ts))
	for _, t := range ts {
		switch {
		case !reservedID(t.GetMessageId()) || len(t.GetMessageId()) > maxMessageIDLen:
			return nil, fmt.Errorf("timer message_id %.64q must start with one of %q", t.GetMessageId(), runtimeIDPrefixes)
		case ids[t.GetMessageId()]:
			return nil, fmt.Errorf("two timers share message_id %.64q", t.GetMessageId())
		case t.GetMessageType() == "" || len(t.GetMessageType()) > maxTypeLen:
			return nil, fmt.Errorf("timer %.64q has no usable message_type", t.GetMessageId())
		case t.GetSender() == "" || len(t.GetSender()) > maxSenderLen:
			return nil, fmt.Errorf("timer %.64q has no usable sender", t.GetMessageId())
		case len(t.GetPayload()) > k.opts.MaxPayloadBytes:
			return nil, fmt.Errorf("timer %.64q carries a payload over the limit of %d bytes", t.GetMessageId(), k.opts.MaxPayloadBytes)
		}
		switch t.GetMessageType() {
		case typeSessionStart, typeCommitment, typeSessionCancel, typeSessionSuspend, typeSessionResume, typeSignal, typeProgress:
			return nil, fmt.Errorf("a timer may not write a %s", t.GetMessageType())
		}
		ids[t.GetMessageId()] = true
		t.DueSessionClockMs = max(t.DueSessionClockMs, clock) // the response is the kernel's own
		out = append(out, t)
	}
	slices.SortStableFunc(out, func(a, b *abiv1.Timer) int {
		return cmp.Compare(a.GetDueSessionClockMs(), b.GetDueSessionClockMs())
	})
	return out, nil
}

// fireDueTimers writes, in due order, the envelopes of every timer of an
// open session that came due by now and before the session's deadline. The
// caller holds s.mu.
func (k *Kernel) fireDueTimers(ctx context.Context, s *session) error {
	// Each round removes or replaces the timer it looked at; the bound
	// guards against a mode that keeps re-arming a timer in the past.
	for range 4 * maxTimers {
		if s.state() != macpv1.SessionState_SESSION_STATE_OPEN || s.mode == nil || len(s.rec.GetTimers()) == 0 {
			return nil
		}
		t := s.rec.GetTimers()[0]
		due := s.rec.GetAnchorUnixMs() + s.rec.GetSuspendedTotalMs() + t.GetDueSessionClockMs()
		if due > k.now().UnixMilli() || due > s.rec.GetDeadlineUnixMs() {
			return nil
		}
		if err := k.fire(ctx, s, t, due); err != nil {
			return err
		}
	}
	return nil
}

// fire offers timer t's envelope to the mode as runtime-written, at host
// time due, and records it if the mode accepts it. A timer the mode refuses
// (an answer raced it) or fails on is dropped without a record; replay
// drops it the same way.
func (k *Kernel) fire(ctx context.Context, s *session, t *abiv1.Timer, due int64) error {
	md := s.rec.GetMetadata()
	env := &macpv1.Envelope{
		MacpVersion:     ProtocolVersion,
		Mode:            md.GetMode(),
		MessageType:     t.GetMessageType(),
		MessageId:       t.GetMessageId(),
		SessionId:       md.GetSessionId(),
		Sender:          t.GetSender(),
		TimestampUnixMs: due,
		Payload:         t.GetPayload(),
	}
	out, err := k.step(ctx, s.mode, s.rec, env, due, t.GetDueSessionClockMs(), true)
	if err != nil {
		k.log.Info("dropped a mode timer the mode did not accept", "session_id", s.id(), "message_id", t.GetMessageId(), "err", err)
		next := successor(s.rec)
		next.Timers = next.Timers[1:]
		s.rec = next // not written: a later commit or a replay drops it again
		k.reschedule(s)
		return nil
	}
	if err := k.recordNow(ctx, s, transition{env: env, origin: storev1.Origin_ORIGIN_RUNTIME, at: due, stepped: out}); err != nil {
		return err
	}
	k.log.Info("runtime wrote a timed record", "session_id", s.id(), "message_type", env.MessageType, "message_id", env.MessageId)
	return nil
}

// isTimerRecord reports whether a runtime-written entry came from a mode's
// timer rather than a lifecycle change.
func isTimerRecord(e *storev1.Entry) bool {
	if e.GetOrigin() != storev1.Origin_ORIGIN_RUNTIME || e.GetEnvelope() == nil {
		return false
	}
	switch e.GetEnvelope().GetMessageType() {
	case typeSessionCancel, typeSessionSuspend, typeSessionResume:
		return false
	}
	return true
}
