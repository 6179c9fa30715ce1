package kernel

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Send runs one envelope through the MACP pipeline on behalf of caller and
// returns its Ack. Send never fails: every outcome is in the Ack. An
// anonymous caller (no credentials) is refused UNAUTHENTICATED once the
// checks that come before authentication have passed.
func (k *Kernel) Send(ctx context.Context, caller access.Caller, env *macpv1.Envelope) *macpv1.Ack {
	env = proto.Clone(env).(*macpv1.Envelope)
	ack, err := k.sendChecked(ctx, caller, nil, env)
	return k.answer(env, ack, err)
}

// SendUnauthenticated answers an envelope whose credentials were presented
// but refused for reason (expired, unknown, malformed): the checks before
// authentication run, then the envelope is refused UNAUTHENTICATED with
// reason's message.
func (k *Kernel) SendUnauthenticated(ctx context.Context, reason error, env *macpv1.Envelope) *macpv1.Ack {
	if reason == nil {
		reason = errors.New("no credentials presented")
	}
	env = proto.Clone(env).(*macpv1.Envelope)
	ack, err := k.sendChecked(ctx, access.Caller{}, reason, env)
	return k.answer(env, ack, err)
}

// answer renders the outcome of a Send as its Ack.
func (k *Kernel) answer(env *macpv1.Envelope, ack *macpv1.Ack, err error) *macpv1.Ack {
	if k.opts.Observe != nil {
		k.opts.Observe(outcomeOf(env, ack, err))
	}
	return k.ackOf(env, ack, err)
}

// ackOf renders the outcome of a Send as its Ack.
func (k *Kernel) ackOf(env *macpv1.Envelope, ack *macpv1.Ack, err error) *macpv1.Ack {
	if err == nil {
		return ack
	}
	e := macperr.As(err)
	if e.Code == macperr.InternalError && !errors.Is(err, storage.ErrNoSpace) { // the store logs a full disk once
		k.log.Error("send failed", "session_id", fmt.Sprintf("%.128s", env.GetSessionId()), "message_id", fmt.Sprintf("%.256s", env.GetMessageId()), "err", err)
	}
	sid, mid := env.GetSessionId(), env.GetMessageId()
	if len(sid) > maxSessionIDLen {
		sid = ""
	}
	if len(mid) > maxMessageIDLen {
		mid = ""
	}
	return &macpv1.Ack{
		Ok:        false,
		MessageId: mid,
		SessionId: sid,
		Error: &macpv1.MACPError{
			Code:      string(e.Code),
			Message:   e.Message,
			SessionId: sid,
			MessageId: mid,
			Details:   e.Details,
		},
	}
}

// sendChecked runs the envelope checks, authentication, the deployment's
// authorisation and the rate limit (RFC-MACP-0001 checks 1–7, in order),
// then the ambient plane or the session pipeline.
func (k *Kernel) sendChecked(ctx context.Context, caller access.Caller, authErr error, env *macpv1.Envelope) (*macpv1.Ack, error) {
	if err := k.checkEnvelope(env); err != nil {
		return nil, err
	}
	if err := authenticate(caller, authErr, env); err != nil {
		return nil, err
	}
	if err := authorize(caller, env); err != nil {
		return nil, err
	}
	kind := limits.Message
	if env.MessageType == typeSessionStart {
		kind = limits.Start
	}
	if !k.limits.Allow(env.Sender, kind, k.now()) {
		return nil, macperr.New(macperr.RateLimited, "%.64q is sending faster than this server allows; retry later", env.Sender)
	}
	switch env.MessageType {
	case typeSignal, typeProgress:
		if env.SessionId == "" {
			return k.ambient(env)
		}
	}
	if ack, done, err := k.route(ctx, caller, env); done {
		return ack, err
	}
	if env.MessageType == typeSessionStart {
		return k.start(ctx, caller, env)
	}
	return k.apply(ctx, env)
}

// authenticate derives the envelope's sender from the caller (check 5): an
// empty sender is filled in, a different one is refused.
func authenticate(caller access.Caller, authErr error, env *macpv1.Envelope) error {
	if authErr != nil {
		return macperr.New(macperr.Unauthenticated, "%s", authErr.Error())
	}
	if caller.Anonymous() {
		return macperr.New(macperr.Unauthenticated, "no credentials presented")
	}
	if env.Sender != "" && env.Sender != caller.ID {
		return macperr.New(macperr.Unauthenticated, "envelope sender %.64q does not match the authenticated identity", env.Sender)
	}
	env.Sender = caller.ID
	return nil
}

// authorize applies what the deployment lets the caller do (check 6):
// observers read but never send, and only callers allowed to may start
// sessions, in the modes they are allowed.
func authorize(caller access.Caller, env *macpv1.Envelope) error {
	if caller.Observer {
		return macperr.New(macperr.Forbidden, "%.64q is an observer: it may read sessions but not send", caller.ID)
	}
	if env.MessageType != typeSessionStart {
		return nil
	}
	if !caller.CanStartSessions {
		return macperr.New(macperr.Forbidden, "%.64q may not start sessions", caller.ID)
	}
	if !caller.MayUseMode(env.Mode) {
		return macperr.New(macperr.Forbidden, "%.64q may not start sessions in mode %.128q", caller.ID, env.Mode)
	}
	return nil
}

// ambient accepts a Signal or ambient Progress. They never touch a session.
func (k *Kernel) ambient(env *macpv1.Envelope) (*macpv1.Ack, error) {
	if env.MessageType == typeSignal && len(env.Payload) > 0 {
		var p macpv1.SignalPayload
		if err := proto.Unmarshal(env.Payload, &p); err != nil {
			return nil, macperr.New(macperr.InvalidEnvelope, "Signal payload does not decode: %v", err)
		}
		if p.SignalType == "" {
			return nil, macperr.New(macperr.InvalidEnvelope, "Signal payload needs a signal_type")
		}
	}
	if env.MessageType == typeProgress {
		var p macpv1.ProgressPayload
		if err := proto.Unmarshal(env.Payload, &p); err != nil {
			return nil, macperr.New(macperr.InvalidEnvelope, "Progress payload does not decode: %v", err)
		}
	}
	k.signals.Publish("", env)
	return &macpv1.Ack{
		Ok:               true,
		MessageId:        env.MessageId,
		AcceptedAtUnixMs: k.now().UnixMilli(),
		SessionState:     macpv1.SessionState_SESSION_STATE_OPEN,
	}, nil
}

// outcomeOf summarises an answer for Options.Observe.
func outcomeOf(env *macpv1.Envelope, ack *macpv1.Ack, err error) Outcome {
	o := Outcome{Mode: env.GetMode(), MessageType: env.GetMessageType()}
	if len(o.Mode) > maxTypeLen || len(o.MessageType) > maxTypeLen {
		o.Mode, o.MessageType = "", ""
	}
	if err != nil {
		o.Code = macperr.CodeOf(err)
		return o
	}
	o.Duplicate, o.State = ack.GetDuplicate(), ack.GetSessionState()
	return o
}
