package kernel

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/macperr"
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

// Control cancels, suspends or resumes session id on behalf of identity.
// Unknown sessions are SESSION_NOT_FOUND and callers without authority
// FORBIDDEN (returned as errors); a session in the wrong state is reported
// in the Ack, as is success. The runtime writes the record of the change to
// the session's log.
func (k *Kernel) Control(ctx context.Context, op Control, identity, id, reason string) (*macpv1.Ack, error) {
	s, ok := k.lookup(id)
	if !ok {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	md := s.rec.GetMetadata()
	if identity != md.GetInitiator() {
		// A role the bound policy grants commitment authority may also
		// control the session.
		in := &policy.Input{Policy: s.rec.GetPolicy(), Session: md, Sender: identity, NowUnixMs: k.now().UnixMilli()}
		if err := k.governor.Authorize(ctx, in); err != nil {
			return nil, macperr.New(macperr.Forbidden, "%q may not %s session %q", identity, opVerb(op), id)
		}
	}
	if _, err := k.catchUp(ctx, s); err != nil {
		return nil, err
	}
	notOpen := func() (*macpv1.Ack, error) {
		return rejectedAck(id, macperr.New(macperr.SessionNotOpen, "session %q is %s", id, stateName(s.state()))), nil
	}
	now := k.now().UnixMilli()
	next := proto.Clone(s.rec).(*storev1.Session)
	var payload proto.Message
	switch op {
	case Cancel:
		switch s.state() {
		case macpv1.SessionState_SESSION_STATE_OPEN, macpv1.SessionState_SESSION_STATE_SUSPENDED:
		default: // already terminal: cancelling is idempotent
			return &macpv1.Ack{Ok: true, SessionId: id, AcceptedAtUnixMs: now, SessionState: s.state()}, nil
		}
		next.Metadata.State = macpv1.SessionState_SESSION_STATE_CANCELLED
		payload = &macpv1.SessionCancelPayload{Reason: reason, CancelledBy: identity}
	case Suspend:
		if s.state() != macpv1.SessionState_SESSION_STATE_OPEN {
			return notOpen()
		}
		next.Metadata.State = macpv1.SessionState_SESSION_STATE_SUSPENDED
		next.SuspendedAtUnixMs = now
		payload = &macpv1.SessionSuspendPayload{Reason: reason, SuspendedBy: identity}
	case Resume:
		if s.state() != macpv1.SessionState_SESSION_STATE_SUSPENDED {
			return notOpen()
		}
		// catchUp already ended a session whose suspension overran its
		// cap, so this one may resume: bank the suspended time.
		suspended := max(now-next.SuspendedAtUnixMs, 0)
		next.SuspendedTotalMs += suspended
		next.SuspendedAtUnixMs = 0
		next.DeadlineUnixMs += suspended
		next.Metadata.ExpiresAtUnixMs = next.DeadlineUnixMs
		next.Metadata.State = macpv1.SessionState_SESSION_STATE_OPEN
		payload = &macpv1.SessionResumePayload{Reason: reason, ResumedBy: identity, BankedMs: max(next.DeadlineUnixMs-now, 0)}
	default:
		return nil, macperr.New(macperr.InternalError, "unknown lifecycle operation %d", op)
	}
	body, err := proto.Marshal(payload)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "encode the runtime record")
	}
	next.LastSequence++
	env := &macpv1.Envelope{
		MacpVersion:     ProtocolVersion,
		Mode:            md.GetMode(),
		MessageType:     op.messageType(),
		MessageId:       fmt.Sprintf("runtime:%s:%d", opVerb(op), next.LastSequence),
		SessionId:       id,
		Sender:          RuntimeSender,
		TimestampUnixMs: now,
		Payload:         body,
	}
	entry := &storev1.Entry{
		Sequence: next.LastSequence, Envelope: env, AcceptedAtUnixMs: now,
		Origin: storev1.Origin_ORIGIN_RUNTIME, StateAfter: next.Metadata.State,
	}
	if err := k.commit(ctx, s, next, entry); err != nil {
		return nil, writeError(err, "the lifecycle change could not be made durable")
	}
	k.log.Info("session "+opVerb(op)+"ed", "session_id", id, "by", identity)
	return &macpv1.Ack{Ok: true, MessageId: env.MessageId, SessionId: id, AcceptedAtUnixMs: now, SessionState: next.Metadata.State}, nil
}

func opVerb(op Control) string {
	switch op {
	case Cancel:
		return "cancel"
	case Suspend:
		return "suspend"
	default:
		return "resume"
	}
}

// rejectedAck reports err in an Ack.
func rejectedAck(id string, err *macperr.Error) *macpv1.Ack {
	return &macpv1.Ack{SessionId: id, Error: &macpv1.MACPError{Code: err.Code, Message: err.Message, SessionId: id}}
}
