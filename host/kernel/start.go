package kernel

import (
	"context"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/macperr"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Bounds of a strictly validated SessionStart.
const (
	maxTTLMs        = 24 * 60 * 60 * 1000
	maxParticipants = 1000
)

// start runs the SessionStart pipeline (RFC-MACP-0001 §5.2, in its order).
func (k *Kernel) start(ctx context.Context, caller access.Caller, env *macpv1.Envelope) (*macpv1.Ack, error) {
	if !ValidSessionID(env.SessionId) {
		return nil, macperr.New(macperr.InvalidSessionID, "session_id %.128q is neither a lowercase UUID v4/v7 nor a token of 22+ characters of [A-Za-z0-9_-]", env.SessionId)
	}
	module, strict, err := k.catalog.Lookup(env.Mode)
	if err != nil {
		return nil, err
	}
	if len(env.Payload) == 0 {
		return nil, macperr.New(macperr.InvalidEnvelope, "SessionStart needs a payload")
	}
	var p macpv1.SessionStartPayload
	if err := proto.Unmarshal(env.Payload, &p); err != nil {
		return nil, macperr.New(macperr.InvalidEnvelope, "SessionStart payload does not decode: %v", err)
	}
	if err := validateStart(&p, strict); err != nil {
		return nil, err
	}
	if want := module.Descriptor().GetModeVersion(); strict && p.ModeVersion != want {
		return nil, macperr.New(macperr.ModeNotSupported, "mode %s is served at version %q, not %.64q", env.Mode, want, p.ModeVersion)
	}
	if k.index.has(env.SessionId) {
		return k.restart(ctx, env)
	}
	if !k.limits.Open(env.Sender, caller.MaxOpenSessions) {
		return nil, macperr.New(macperr.RateLimited, "%.64q already has as many open sessions as this server allows", env.Sender)
	}
	started := false
	defer func() {
		if !started {
			k.limits.Close(env.Sender)
		}
	}()
	pol, err := k.governor.Bind(ctx, env.Mode, p.PolicyVersion)
	if err != nil {
		return nil, err
	}

	now := k.now().UnixMilli()
	anchor := env.TimestampUnixMs
	if anchor <= 0 || anchor > now {
		anchor = now
	}
	maxSuspend := p.MaxSuspendMs
	if maxSuspend == 0 {
		maxSuspend = k.opts.DefaultMaxSuspendMs
	}
	ttl := p.TtlMs
	if ttl <= 0 || ttl > maxTTLMs { // only reachable for non-strict modes
		ttl = maxTTLMs
	}
	extKeys := make([]string, 0, len(p.Extensions))
	for key := range p.Extensions {
		extKeys = append(extKeys, key)
	}
	sort.Strings(extKeys)
	// The session before its first entry: the transition of the
	// SessionStart makes it sequence 1.
	rec := &storev1.Session{
		Metadata: &macpv1.SessionMetadata{
			SessionId:            env.SessionId,
			Mode:                 env.Mode,
			State:                macpv1.SessionState_SESSION_STATE_OPEN,
			StartedAtUnixMs:      now,
			ExpiresAtUnixMs:      anchor + ttl,
			ModeVersion:          p.ModeVersion,
			ConfigurationVersion: p.ConfigurationVersion,
			PolicyVersion:        pol.GetPolicyId(),
			Participants:         p.Participants,
			Initiator:            env.Sender,
			ContextId:            p.ContextId,
			ExtensionKeys:        extKeys,
		},
		ModuleDigest:   module.Digest(),
		Policy:         pol,
		DeadlineUnixMs: anchor + ttl,
		TtlMs:          ttl,
		MaxSuspendMs:   maxSuspend,
		AnchorUnixMs:   anchor,
	}

	s := newSession(rec, module)
	s.mu.Lock()
	if _, loaded := k.sessions.LoadOrStore(env.SessionId, s); loaded {
		// Another SessionStart for the same id won the race.
		s.mu.Unlock()
		return k.restart(ctx, env)
	}
	defer s.mu.Unlock()
	k.index.add(env.SessionId)
	fail := func(err error) (*macpv1.Ack, error) {
		s.dead = true
		if k.sessions.CompareAndDelete(env.SessionId, s) {
			k.index.remove(env.SessionId)
		}
		return nil, err
	}
	t := transition{env: env, origin: storev1.Origin_ORIGIN_AGENT, at: now}
	if t.stepped, err = k.step(ctx, module, rec, env, now, sessionClock(rec, now), false); err != nil {
		return fail(err)
	}
	if err := k.recordNow(ctx, s, t); err != nil {
		return fail(err)
	}
	started = true
	s.touch(k.now())
	k.schedule(s)
	k.log.Debug("session started", "session_id", env.SessionId, "message_id", env.MessageId, "mode", env.Mode, "initiator", env.Sender)
	return &macpv1.Ack{Ok: true, MessageId: env.MessageId, SessionId: env.SessionId,
		AcceptedAtUnixMs: now, SessionState: s.state()}, nil
}

// restart answers a SessionStart for a session id already in use: a retry
// of the same message gets a duplicate Ack, anything else is refused.
func (k *Kernel) restart(ctx context.Context, env *macpv1.Envelope) (*macpv1.Ack, error) {
	s, err := k.locked(ctx, env.SessionId)
	if err != nil {
		if macperr.CodeOf(err) == macperr.SessionNotFound {
			return nil, macperr.New(macperr.SessionNotFound, "a concurrent SessionStart for %q failed; retry", env.SessionId)
		}
		return nil, err
	}
	defer s.mu.Unlock()
	_, dup, err := k.seen(ctx, s, env.MessageId)
	if err != nil {
		return nil, err
	}
	if dup {
		return k.duplicateAck(s, env), nil
	}
	return nil, macperr.New(macperr.SessionAlreadyExists, "session %q already exists", env.SessionId)
}

// validateStart applies the SessionStart binding rules. Strict modes get the
// full set; others only what keeps the runtime safe.
func validateStart(p *macpv1.SessionStartPayload, strict bool) error {
	if len(p.Participants) > maxParticipants {
		return macperr.New(macperr.InvalidEnvelope, "at most %d participants are allowed, got %d", maxParticipants, len(p.Participants))
	}
	if p.MaxSuspendMs < 0 {
		return macperr.New(macperr.InvalidEnvelope, "max_suspend_ms must not be negative")
	}
	seen := make(map[string]struct{}, len(p.Participants))
	for _, id := range p.Participants {
		if strings.TrimSpace(id) == "" {
			return macperr.New(macperr.InvalidEnvelope, "participant ids must not be empty")
		}
		if len(id) > maxSenderLen {
			return macperr.New(macperr.InvalidEnvelope, "participant id exceeds %d bytes", maxSenderLen)
		}
		if _, dup := seen[id]; dup {
			return macperr.New(macperr.InvalidEnvelope, "participant %.64q is listed twice", id)
		}
		seen[id] = struct{}{}
	}
	if !strict {
		return nil
	}
	if p.TtlMs < 1 || p.TtlMs > maxTTLMs {
		return macperr.New(macperr.InvalidEnvelope, "ttl_ms must be between 1 and %d, got %d", maxTTLMs, p.TtlMs)
	}
	if strings.TrimSpace(p.ModeVersion) == "" {
		return macperr.New(macperr.InvalidEnvelope, "mode_version is required")
	}
	if strings.TrimSpace(p.ConfigurationVersion) == "" {
		return macperr.New(macperr.InvalidEnvelope, "configuration_version is required")
	}
	return nil
}
