package kernel

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// RuntimeSender is the sender of the records the runtime writes itself
// (SessionCancel, SessionSuspend, SessionResume).
const RuntimeSender = "concord"

// Control is a lifecycle operation requested through an RPC.
type Control int

// The lifecycle operations.
const (
	Cancel Control = iota + 1
	Suspend
	Resume
)

func (c Control) messageType() string {
	switch c {
	case Cancel:
		return typeSessionCancel
	case Suspend:
		return typeSessionSuspend
	default:
		return typeSessionResume
	}
}

func (c Control) verb() string {
	switch c {
	case Cancel:
		return "cancel"
	case Suspend:
		return "suspend"
	default:
		return "resume"
	}
}

// Control cancels, suspends or resumes session id on behalf of caller.
// Unknown sessions are SESSION_NOT_FOUND and callers without authority
// FORBIDDEN (returned as errors); a session in the wrong state is reported
// in the Ack, as is success. The runtime writes the record of the change to
// the session's log.
//
// Authority: the session's initiator, or a caller the bound policy grants
// commitment authority (a role delegated by policy); an operator — an
// administrator who may also observe every session — may cancel any session
// (RATIONALE "Administrators may cancel").
func (k *Kernel) Control(ctx context.Context, caller access.Caller, op Control, id, reason string) (*macpv1.Ack, error) {
	if err := checkControl(caller, op); err != nil {
		return nil, err
	}
	if ack, done, err := k.routeControl(ctx, caller, op, id, reason); done {
		return ack, err
	}
	return k.control(ctx, caller, op, id, reason)
}

// checkControl refuses a lifecycle call before it reaches a session: here,
// and again on the owner node for a forwarded one (Serve).
func checkControl(caller access.Caller, op Control) error {
	if caller.Anonymous() {
		return macperr.New(macperr.Unauthenticated, "no credentials presented")
	}
	if op < Cancel || op > Resume {
		return macperr.New(macperr.InternalError, "unknown lifecycle operation %d", op)
	}
	return nil
}

// control is Control on the node that owns the session, after checkControl.
func (k *Kernel) control(ctx context.Context, caller access.Caller, op Control, id, reason string) (*macpv1.Ack, error) {
	s, err := k.locked(ctx, id)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	md := s.rec.GetMetadata()
	if caller.ID != md.GetInitiator() && !(op == Cancel && caller.Admin && caller.Observer) {
		in := &policy.Input{Policy: s.rec.GetPolicy(), Session: md, Sender: caller.ID, NowUnixMs: k.now().UnixMilli()}
		if err := k.governor.Authorize(ctx, in); err != nil {
			return nil, macperr.New(macperr.Forbidden, "%.64q may not %s session %.64q", caller.ID, op.verb(), id)
		}
	}
	if _, err := k.catchUp(ctx, s); err != nil {
		return nil, err
	}
	now := k.now().UnixMilli()
	t := transition{origin: storev1.Origin_ORIGIN_RUNTIME, at: now}
	var payload proto.Message
	switch op {
	case Cancel:
		if !isLive(s.state()) { // already terminal: cancelling is idempotent
			return &macpv1.Ack{Ok: true, SessionId: id, AcceptedAtUnixMs: now, SessionState: s.state()}, nil
		}
		t.lifecycle = macpv1.SessionState_SESSION_STATE_CANCELLED
		payload = &macpv1.SessionCancelPayload{Reason: reason, CancelledBy: caller.ID}
	case Suspend:
		if s.state() != macpv1.SessionState_SESSION_STATE_OPEN {
			return notOpenAck(id, s.state()), nil
		}
		t.lifecycle = macpv1.SessionState_SESSION_STATE_SUSPENDED
		t.edit = func(next *storev1.Session) { next.SuspendedAtUnixMs = now }
		payload = &macpv1.SessionSuspendPayload{Reason: reason, SuspendedBy: caller.ID}
	case Resume:
		if s.state() != macpv1.SessionState_SESSION_STATE_SUSPENDED {
			return notOpenAck(id, s.state()), nil
		}
		// catchUp already ended a session whose suspension overran its
		// cap, so this one may resume: bank the suspended time.
		suspended := max(now-s.rec.GetSuspendedAtUnixMs(), 0)
		deadline := s.rec.GetDeadlineUnixMs() + suspended
		t.lifecycle = macpv1.SessionState_SESSION_STATE_OPEN
		t.edit = func(next *storev1.Session) {
			next.SuspendedTotalMs += suspended
			next.SuspendedAtUnixMs = 0
			next.DeadlineUnixMs = deadline
			next.Metadata.ExpiresAtUnixMs = deadline
		}
		payload = &macpv1.SessionResumePayload{Reason: reason, ResumedBy: caller.ID, BankedMs: max(deadline-now, 0)}
	}
	body, err := proto.Marshal(payload)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "encode the runtime record")
	}
	t.env = &macpv1.Envelope{
		MacpVersion:     ProtocolVersion,
		Mode:            md.GetMode(),
		MessageType:     op.messageType(),
		MessageId:       fmt.Sprintf("runtime:%s:%d", op.verb(), s.rec.GetLastSequence()+1),
		SessionId:       id,
		Sender:          RuntimeSender,
		TimestampUnixMs: now,
		Payload:         body,
	}
	if err := k.recordNow(ctx, s, t); err != nil {
		return nil, err
	}
	k.log.Info("session "+op.verb()+"ed", "session_id", id, "message_id", t.env.MessageId, "by", caller.ID)
	return &macpv1.Ack{Ok: true, MessageId: t.env.MessageId, SessionId: id, AcceptedAtUnixMs: now, SessionState: s.state()}, nil
}

// notOpenAck reports a lifecycle call on a session in the wrong state.
func notOpenAck(id string, st macpv1.SessionState) *macpv1.Ack {
	return &macpv1.Ack{SessionId: id, Error: &macpv1.MACPError{
		Code: string(macperr.SessionNotOpen), Message: fmt.Sprintf("session %.64q is %s", id, stateName(st)), SessionId: id,
	}}
}

// catchUp brings session s up to the present before it is used: it writes
// the records of mode timers that came due, then expires the session if its
// time ran out. It reports whether the session expired now. The caller
// holds s.mu.
func (k *Kernel) catchUp(ctx context.Context, s *session) (expired bool, err error) {
	if !k.owns(s.sid) {
		return false, nil // the owner node catches up (cluster.go)
	}
	if err := k.fireDueTimers(ctx, s); err != nil {
		return false, err
	}
	return k.expireIfDue(ctx, s)
}

// expireIfDue expires a session whose time ran out: an OPEN session past
// its deadline, or a SUSPENDED one whose cumulative suspension exceeds its
// cap. It writes a runtime expiry record (an entry without an envelope) and
// reports whether it expired the session. The caller holds s.mu.
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
	t := transition{origin: storev1.Origin_ORIGIN_RUNTIME, at: now, lifecycle: macpv1.SessionState_SESSION_STATE_EXPIRED}
	if err := k.recordNow(ctx, s, t); err != nil {
		return false, err
	}
	k.log.Info("session expired", "session_id", s.id(), "deadline_unix_ms", s.rec.GetDeadlineUnixMs())
	return true, nil
}
