package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/cmthash"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/macperr"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/policy"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Message types the kernel itself gives meaning to.
const (
	typeSessionStart   = "SessionStart"
	typeCommitment     = "Commitment"
	typeSignal         = "Signal"
	typeProgress       = "Progress"
	typeSessionCancel  = "SessionCancel"
	typeSessionSuspend = "SessionSuspend"
	typeSessionResume  = "SessionResume"
)

// Limits on identifiers, so that hostile input cannot bloat keys and memory.
const (
	maxMessageIDLen = 256
	maxSessionIDLen = 128
	maxSenderLen    = 256
	maxTypeLen      = 128
)

// Send runs one envelope through the MACP pipeline on behalf of identity
// (the authenticated sender; "" when the caller presented no credentials)
// and returns its Ack. Send never fails: every outcome is in the Ack.
func (k *Kernel) Send(ctx context.Context, identity string, env *macpv1.Envelope) *macpv1.Ack {
	env = proto.Clone(env).(*macpv1.Envelope)
	ack, err := k.send(ctx, identity, env)
	if err != nil {
		e := macperr.As(err)
		// A full disk is logged once by the store, not once per refusal.
		if e.Code == macperr.InternalError && !errors.Is(err, store.ErrDiskFull) {
			k.log.Error("send failed", "session_id", env.GetSessionId(), "message_id", env.GetMessageId(), "err", err)
		}
		return &macpv1.Ack{
			Ok:        false,
			MessageId: env.GetMessageId(),
			SessionId: env.GetSessionId(),
			Error: &macpv1.MACPError{
				Code:      e.Code,
				Message:   e.Message,
				SessionId: env.GetSessionId(),
				MessageId: env.GetMessageId(),
				Details:   e.Details,
			},
		}
	}
	return ack
}

func (k *Kernel) send(ctx context.Context, identity string, env *macpv1.Envelope) (*macpv1.Ack, error) {
	if err := k.checkEnvelope(identity, env); err != nil {
		return nil, err
	}
	kind := limits.Message
	if env.MessageType == typeSessionStart {
		kind = limits.Start
	}
	if !k.opts.Limits.Allow(env.Sender, kind, k.now()) {
		return nil, macperr.New(macperr.RateLimited, "%s is sending faster than this server allows; retry later", env.Sender)
	}
	switch env.MessageType {
	case typeSignal, typeProgress:
		if env.SessionId == "" {
			return k.ambient(env)
		}
	case typeSessionStart:
		return k.start(ctx, env)
	}
	return k.apply(ctx, env)
}

// checkEnvelope runs the envelope checks of RFC-MACP-0001 in their order
// (the order decides the code) and fills the sender from identity.
func (k *Kernel) checkEnvelope(identity string, env *macpv1.Envelope) error {
	if env.MacpVersion != ProtocolVersion {
		return macperr.New(macperr.UnsupportedProtocolVersion, "macp_version %q is not supported; use %q", env.MacpVersion, ProtocolVersion)
	}
	if env.MessageType == "" || env.MessageId == "" {
		return macperr.New(macperr.InvalidEnvelope, "message_type and message_id are required")
	}
	if reservedID(env.MessageId) {
		return macperr.New(macperr.InvalidEnvelope, "message ids beginning with %q are reserved for records the runtime writes", env.MessageId[:strings.IndexByte(env.MessageId, ':')+1])
	}
	if len(env.MessageId) > maxMessageIDLen || len(env.MessageType) > maxTypeLen || len(env.Mode) > maxTypeLen || len(env.Sender) > maxSenderLen {
		return macperr.New(macperr.InvalidEnvelope, "an envelope field exceeds its length limit")
	}
	if err := checkScope(env); err != nil {
		return err
	}
	if len(env.Payload) > k.opts.MaxPayloadBytes {
		return macperr.New(macperr.PayloadTooLarge, "payload of %d bytes exceeds the limit of %d", len(env.Payload), k.opts.MaxPayloadBytes)
	}
	if identity == "" {
		return macperr.New(macperr.Unauthenticated, "no credentials presented")
	}
	if env.Sender != "" && env.Sender != identity {
		return macperr.New(macperr.Unauthenticated, "envelope sender %q does not match the authenticated identity", env.Sender)
	}
	env.Sender = identity
	return nil
}

// checkScope enforces which message types are ambient and which belong to a
// session.
func checkScope(env *macpv1.Envelope) error {
	hasSession, hasMode := env.SessionId != "", env.Mode != ""
	switch env.MessageType {
	case typeSignal:
		if hasSession || hasMode {
			return macperr.New(macperr.InvalidEnvelope, "a Signal is ambient: session_id and mode must be empty")
		}
	case typeProgress:
		if hasSession != hasMode {
			return macperr.New(macperr.InvalidEnvelope, "a Progress needs both session_id and mode, or neither")
		}
	default:
		if !hasSession || !hasMode {
			return macperr.New(macperr.InvalidEnvelope, "%s needs a session_id and a mode", env.MessageType)
		}
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

// lookup returns the live session with id.
func (k *Kernel) lookup(id string) (*session, bool) {
	v, ok := k.sessions.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*session), true
}

// maxModeStateBytes caps the state a mode may keep, so that one commit
// always fits in a store transaction.
const maxModeStateBytes = 2 << 20

// apply runs a session-scoped envelope (anything but SessionStart). The
// envelope joins the session's queue and is applied by the session's
// drainer (see drain); the wait for durability happens after that, so that
// the session's next messages can be applied meanwhile. The Ack goes out
// only once the entry is durable.
func (k *Kernel) apply(ctx context.Context, env *macpv1.Envelope) (*macpv1.Ack, error) {
	s, ok := k.lookup(env.SessionId)
	if !ok {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", env.SessionId)
	}
	r := &request{ctx: ctx, env: env, done: make(chan struct{})}
	s.qmu.Lock()
	s.queue = append(s.queue, r)
	start := !s.draining
	s.draining = true
	s.qmu.Unlock()
	if start {
		// Apply the batch that holds this envelope right here; a drainer
		// goroutine takes over only if more arrived meanwhile.
		if k.drainBatch(s) {
			go k.drain(s)
		}
	}
	<-r.done
	if r.err != nil {
		return nil, r.err
	}
	if r.dupSeq > 0 {
		// A retry of a message that may still be on its way to the disk:
		// answer once the original is durable.
		if err := s.waitDurable(ctx, r.dupSeq); err != nil {
			return nil, macperr.Wrap(macperr.InternalError, err, "the original message is not durable yet")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return k.duplicateAck(s, env), nil
	}
	if err := r.wait(ctx); err != nil {
		return nil, writeError(err, "the message could not be made durable")
	}
	return r.ack, nil
}

// request is one envelope waiting in a session's queue, and, once done is
// closed, its outcome.
type request struct {
	ctx  context.Context
	env  *macpv1.Envelope
	done chan struct{}

	ack    *macpv1.Ack
	wait   func(context.Context) error
	dupSeq uint64 // for a duplicate: the sequence of the original
	err    error
}

// drain applies the session's queued envelopes in arrival order until the
// queue is empty. One drainer runs per session at a time. It takes s.mu
// once per batch rather than once per message: when many agents write to
// one session, handing the lock from waiter to waiter would cost a
// goroutine switch (and, once the mutex turns to starvation mode, a trip
// through the run queue) for every message, and the session would spend
// most of its time waiting for the next lock holder to be scheduled.
func (k *Kernel) drain(s *session) {
	for k.drainBatch(s) {
	}
}

// drainBatch applies the envelopes queued so far and reports whether more
// arrived meanwhile; when none did, the drainer's turn is over.
func (k *Kernel) drainBatch(s *session) (more bool) {
	s.qmu.Lock()
	batch := s.queue
	s.queue = nil
	s.qmu.Unlock()
	s.mu.Lock()
	for _, r := range batch {
		k.applyRequest(s, r)
	}
	s.mu.Unlock()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) == 0 {
		s.draining = false
		return false
	}
	return true
}

// applyRequest applies r and hands its outcome over. A panic on the way is
// r's failure only: the session's lock and queue must not be left held.
// The caller holds s.mu.
func (k *Kernel) applyRequest(s *session, r *request) {
	defer close(r.done)
	defer func() {
		if p := recover(); p != nil {
			k.log.Error("panic while applying a message", "session_id", s.id(), "message_id", r.env.GetMessageId(), "panic", p)
			r.err = macperr.New(macperr.InternalError, "the message could not be applied")
		}
	}()
	r.ack, r.wait, r.dupSeq, r.err = k.applyHeld(r.ctx, s, r.env)
}

// applyHeld checks and applies env and queues its write. It returns the
// Ack to send once wait succeeds, or, for a duplicate, the sequence of the
// original. The caller holds s.mu.
func (k *Kernel) applyHeld(ctx context.Context, s *session, env *macpv1.Envelope) (ack *macpv1.Ack, wait func(context.Context) error, dupSeq uint64, err error) {
	if s.dead {
		return nil, nil, 0, macperr.New(macperr.SessionNotFound, "session %q does not exist", env.SessionId)
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up while the envelope waited in the queue.
		return nil, nil, 0, macperr.Wrap(macperr.InternalError, err, "the request ended before the message was applied")
	}
	md := s.rec.GetMetadata()
	if seq, dup := s.seen[env.MessageId]; dup {
		return nil, nil, seq, nil
	}
	ack, wait, err = k.applyChecked(ctx, s, md, env)
	return ack, wait, 0, err
}

// applyChecked runs the checks after dedup, steps the mode and queues the
// entry. The caller holds s.mu.
func (k *Kernel) applyChecked(ctx context.Context, s *session, md *macpv1.SessionMetadata, env *macpv1.Envelope) (*macpv1.Ack, func(context.Context) error, error) {
	if env.Mode != md.GetMode() {
		return nil, nil, macperr.New(macperr.InvalidEnvelope, "mode %q does not match the session's mode %q", env.Mode, md.GetMode())
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

	var commitment *macpv1.CommitmentPayload
	if env.MessageType == typeCommitment {
		if commitment, err = k.checkCommitment(ctx, s, env); err != nil {
			return nil, nil, err
		}
	}
	now := k.now().UnixMilli()
	clock := sessionClock(s.rec, now)
	res, err := s.mode.Step(ctx, &abiv1.StepRequest{
		State:          s.rec.GetModeState(),
		Envelope:       env,
		Session:        abiSession(s.rec),
		NowUnixMs:      now,
		SessionClockMs: clock,
	})
	if err != nil {
		return nil, nil, macperr.Wrap(macperr.InternalError, err, "the mode module failed on this message")
	}
	if res.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
		return nil, nil, modeRejection(res)
	}
	if len(res.GetState()) > maxModeStateBytes {
		return nil, nil, macperr.New(macperr.InternalError, "the mode's state would grow to %d bytes, over the limit of %d", len(res.GetState()), maxModeStateBytes)
	}
	timers, err := k.pendingTimers(res, clock)
	if err != nil {
		return nil, nil, macperr.Wrap(macperr.InternalError, err, "the mode module answered with an unusable timer")
	}
	var governance *storev1.Governance
	if commitment != nil {
		if governance, err = k.govern(ctx, s, env, commitment, now); err != nil {
			return nil, nil, err
		}
	}

	next := proto.Clone(s.rec).(*storev1.Session)
	next.ModeState = res.GetState()
	next.Timers = timers
	next.LastSequence++
	recordActivity(next.Metadata, env.Sender, now)
	if commitment != nil || isTerminal(s.mode.Descriptor(), env.MessageType) {
		next.Metadata.State = macpv1.SessionState_SESSION_STATE_RESOLVED
		next.Resolution = commitment
	}
	entry := &storev1.Entry{
		Sequence:         next.LastSequence,
		Envelope:         env,
		AcceptedAtUnixMs: now,
		Origin:           storev1.Origin_ORIGIN_AGENT,
		StateAfter:       next.Metadata.State,
	}
	entry.Governance = governance
	if commitment != nil {
		// A payload with fields the hash label does not cover has no hash.
		if h, err := cmthash.Hash(commitment); err == nil {
			entry.CommitmentHash = h
			next.ResolutionHash = h
		} else if !errors.Is(err, cmthash.ErrCannotVerify) {
			return nil, nil, macperr.Wrap(macperr.InternalError, err, "could not hash the commitment")
		}
	}
	wait, err := k.enqueue(ctx, s, next, entry)
	if err != nil {
		return nil, nil, writeError(err, "the message could not be queued for writing")
	}
	return &macpv1.Ack{Ok: true, MessageId: env.MessageId, SessionId: env.SessionId,
		AcceptedAtUnixMs: now, SessionState: next.Metadata.State}, wait, nil
}

func noWait(context.Context) error { return nil }

func (k *Kernel) duplicateAck(s *session, env *macpv1.Envelope) *macpv1.Ack {
	return &macpv1.Ack{Ok: true, Duplicate: true, MessageId: env.MessageId, SessionId: env.SessionId,
		AcceptedAtUnixMs: k.now().UnixMilli(), SessionState: s.state()}
}

// modeRejection turns a mode's reject verdict into a coded error. A module
// that answers with no usable code is treated as broken.
func modeRejection(res *abiv1.StepResponse) error {
	switch code := res.GetErrorCode(); code {
	case macperr.Forbidden, macperr.InvalidEnvelope, macperr.PolicyDenied:
		return macperr.New(code, "%s", res.GetErrorMessage())
	case "":
		return macperr.New(macperr.InternalError, "the mode rejected the message without an error code")
	default:
		return macperr.New(code, "%s", res.GetErrorMessage())
	}
}

func isTerminal(d *macpv1.ModeDescriptor, messageType string) bool {
	for _, t := range d.GetTerminalMessageTypes() {
		if t == messageType {
			return true
		}
	}
	return false
}

// checkCommitment runs the checks common to every mode's Commitment:
// authority first (FORBIDDEN), then the payload (INVALID_ENVELOPE).
func (k *Kernel) checkCommitment(ctx context.Context, s *session, env *macpv1.Envelope) (*macpv1.CommitmentPayload, error) {
	var c macpv1.CommitmentPayload
	decodeErr := proto.Unmarshal(env.Payload, &c)
	in := &policy.Input{
		Policy: s.rec.GetPolicy(), Session: s.rec.GetMetadata(), Sender: env.Sender,
		Commitment: &c, NowUnixMs: k.now().UnixMilli(),
	}
	if err := k.governor.Authorize(ctx, in); err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment payload does not decode: %v", decodeErr)
	}
	md := s.rec.GetMetadata()
	for _, f := range []struct{ name, value string }{
		{"commitment_id", c.CommitmentId}, {"action", c.Action},
		{"authority_scope", c.AuthorityScope}, {"reason", c.Reason},
	} {
		if strings.TrimSpace(f.value) == "" {
			return nil, macperr.New(macperr.InvalidEnvelope, "Commitment %s must not be empty", f.name)
		}
	}
	if c.ModeVersion != md.GetModeVersion() {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment mode_version %q does not match the session's %q", c.ModeVersion, md.GetModeVersion())
	}
	if c.ConfigurationVersion != md.GetConfigurationVersion() {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment configuration_version %q does not match the session's %q", c.ConfigurationVersion, md.GetConfigurationVersion())
	}
	if c.PolicyVersion != "" && c.PolicyVersion != md.GetPolicyVersion() {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment policy_version %q does not match the session's %q", c.PolicyVersion, md.GetPolicyVersion())
	}
	if sup := c.Supersedes; sup != nil {
		if sup.SessionId == "" || !cmthash.WellFormed(sup.CommitmentHash) {
			return nil, macperr.New(macperr.InvalidEnvelope, "Commitment supersedes needs a session_id and a commitment_hash of the form sha256:<64 lowercase hex>")
		}
	}
	if want, ok := outcomeOfAction(c.Action); ok && want != c.OutcomePositive {
		return nil, macperr.New(macperr.InvalidEnvelope, "Commitment action %q requires outcome_positive=%t", c.Action, want)
	}
	return &c, nil
}

// outcomeOfAction returns the polarity an action's last segment implies, if
// it implies one.
func outcomeOfAction(action string) (positive, ok bool) {
	last := action[strings.LastIndexByte(action, '.')+1:]
	switch last {
	case "rejected", "failed", "declined":
		return false, true
	case "selected", "accepted", "completed", "approved":
		return true, true
	}
	return false, false
}

// govern asks the bound policy about a commitment the mode found eligible
// and returns the decision to record with it.
func (k *Kernel) govern(ctx context.Context, s *session, env *macpv1.Envelope, c *macpv1.CommitmentPayload, now int64) (*storev1.Governance, error) {
	in := &policy.Input{
		Policy: s.rec.GetPolicy(), Session: s.rec.GetMetadata(), Sender: env.Sender,
		Commitment: c, NowUnixMs: now,
		ModeState: func(ctx context.Context) ([]byte, error) {
			v, err := s.mode.View(ctx, &abiv1.ViewRequest{State: s.rec.GetModeState(), Session: abiSession(s.rec)})
			if err != nil {
				return nil, err
			}
			return []byte(v.GetJson()), nil
		},
	}
	d, err := k.governor.Govern(ctx, in)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the policy could not be evaluated")
	}
	g := &storev1.Governance{
		PolicyId: s.rec.GetPolicy().GetPolicyId(), PolicyDigest: policyDigest(s.rec.GetPolicy()),
		Allow: d.Allow, Reasons: d.Reasons, MessageId: env.MessageId, Sender: env.Sender, DecidedAtUnixMs: now,
	}
	if !d.Allow {
		k.log.Info("policy denied a commitment", "session_id", s.id(), "policy", g.PolicyId, "reasons", d.Reasons)
		// A denied Commitment never enters the log; its decision goes to the
		// session's audit trail.
		if b, err := proto.Marshal(g); err == nil {
			key := fmt.Sprintf("%s\x00%016x%s", s.id(), now, env.MessageId)
			if err := k.store.Put(ctx, store.Audit, key, b); err != nil {
				k.log.Error("could not record a policy denial in the audit trail", "session_id", s.id(), "err", err)
			}
		}
		return nil, policyDenied(d.Reasons)
	}
	return g, nil
}

// policyDigest identifies a bound policy by content: id, schema version and
// rules (RFC-MACP-0012's policy identity).
func policyDigest(d *macpv1.PolicyDescriptor) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s", d.GetPolicyId(), d.GetSchemaVersion(), d.GetRules())
	return hex.EncodeToString(h.Sum(nil))
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

func stateName(st macpv1.SessionState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "SESSION_STATE_"))
}
