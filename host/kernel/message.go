package kernel

import (
	"context"
	"strings"

	"github.com/concord-macp/concord/macperr"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// applyHeld checks and applies env and queues its write. It returns the
// Ack to send once wait succeeds, or, for a duplicate, the sequence of the
// original. The caller holds s.mu.
func (k *Kernel) applyHeld(ctx context.Context, s *session, env *macpv1.Envelope) (ack *macpv1.Ack, wait func(context.Context) error, dupSeq uint64, err error) {
	if s.dead {
		return nil, nil, 0, s.deadError()
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up while the envelope waited in the queue.
		return nil, nil, 0, macperr.Wrap(macperr.InternalError, err, "the request ended before the message was applied")
	}
	s.touch(k.now())
	md := s.rec.GetMetadata()
	seq, dup, err := k.seen(ctx, s, env.MessageId)
	if err != nil {
		return nil, nil, 0, err
	}
	if dup {
		return nil, nil, seq, nil
	}
	ack, wait, err = k.applyChecked(ctx, s, md, env)
	return ack, wait, 0, err
}

// applyChecked runs the session pipeline after dedup (RFC-MACP-0001, in
// its order), steps the mode and records the message. The caller holds
// s.mu.
func (k *Kernel) applyChecked(ctx context.Context, s *session, md *macpv1.SessionMetadata, env *macpv1.Envelope) (*macpv1.Ack, func(context.Context) error, error) {
	if env.Mode != md.GetMode() {
		return nil, nil, macperr.New(macperr.InvalidEnvelope, "mode %.128q does not match the session's mode %q", env.Mode, md.GetMode())
	}
	expired, err := k.catchUp(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	if expired || s.state() != macpv1.SessionState_SESSION_STATE_OPEN {
		return nil, nil, macperr.New(macperr.SessionNotOpen, "session %q is %s", env.SessionId, stateName(s.state()))
	}
	switch env.MessageType {
	case typeSessionCancel, typeSessionSuspend, typeSessionResume:
		return nil, nil, macperr.New(macperr.Forbidden, "%s is written by the runtime only; call the %sSession RPC", env.MessageType, strings.TrimPrefix(env.MessageType, "Session"))
	case typeProgress:
		// Session-scoped progress is broadcast like a signal, never recorded.
		k.signals.Publish("", env)
		return &macpv1.Ack{Ok: true, MessageId: env.MessageId, SessionId: env.SessionId,
			AcceptedAtUnixMs: k.now().UnixMilli(), SessionState: s.state()}, noWait, nil
	case typeSessionStart:
		return nil, nil, macperr.New(macperr.SessionAlreadyExists, "session %q already exists", env.SessionId)
	}
	if s.mode == nil {
		return nil, nil, macperr.New(macperr.InternalError, "the module session %q is pinned to is not available", env.SessionId)
	}
	t := transition{env: env, origin: storev1.Origin_ORIGIN_AGENT, at: k.now().UnixMilli()}
	if env.MessageType == typeCommitment {
		if t.commitment, err = k.checkCommitment(ctx, s, env); err != nil {
			return nil, nil, err
		}
	}
	if t.stepped, err = k.step(ctx, s.mode, s.rec, env, t.at, sessionClock(s.rec, t.at), false); err != nil {
		return nil, nil, err
	}
	if t.commitment != nil {
		if t.governance, err = k.govern(ctx, s, env, t.commitment, t.at); err != nil {
			return nil, nil, err
		}
	}
	wait, err := k.record(ctx, s, t)
	if err != nil {
		return nil, nil, err
	}
	return &macpv1.Ack{Ok: true, MessageId: env.MessageId, SessionId: env.SessionId,
		AcceptedAtUnixMs: t.at, SessionState: s.state()}, wait, nil
}

func noWait(context.Context) error { return nil }

func (k *Kernel) duplicateAck(s *session, env *macpv1.Envelope) *macpv1.Ack {
	return &macpv1.Ack{Ok: true, Duplicate: true, MessageId: env.MessageId, SessionId: env.SessionId,
		AcceptedAtUnixMs: k.now().UnixMilli(), SessionState: s.state()}
}

func stateName(st macpv1.SessionState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "SESSION_STATE_"))
}
