package kernel

import (
	"context"
	"encoding/json"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/macperr"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Bounds of a strictly validated SessionStart.
const (
	maxTTLMs        = 24 * 60 * 60 * 1000
	maxParticipants = 1000
)

var (
	uuidV4V7   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tokenIDPat = regexp.MustCompile(`^[A-Za-z0-9_-]{22,}$`)
)

// ValidSessionID reports whether id is an acceptable session id: a
// lowercase canonical UUID v4 or v7, or a token of at least 22 characters
// of [A-Za-z0-9_-]. A 36-character id with a hyphen must be a valid UUID.
func ValidSessionID(id string) bool {
	if len(id) > maxSessionIDLen {
		return false
	}
	if uuidV4V7.MatchString(id) {
		return true
	}
	if len(id) == 36 && strings.Contains(id, "-") {
		return false
	}
	return tokenIDPat.MatchString(id)
}

// start runs the SessionStart pipeline.
func (k *Kernel) start(ctx context.Context, env *macpv1.Envelope) (*macpv1.Ack, error) {
	if !ValidSessionID(env.SessionId) {
		return nil, macperr.New(macperr.InvalidSessionID, "session_id %q is neither a lowercase UUID v4/v7 nor a token of 22+ characters of [A-Za-z0-9_-]", env.SessionId)
	}
	mode, strict, ok := k.catalog.Lookup(env.Mode)
	if !ok {
		return nil, macperr.New(macperr.ModeNotSupported, "mode %q is not registered", env.Mode)
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
	if want := mode.Descriptor().GetModeVersion(); strict && p.ModeVersion != want {
		return nil, macperr.New(macperr.ModeNotSupported, "mode %s is served at version %q, not %q", env.Mode, want, p.ModeVersion)
	}
	if existing, ok := k.lookup(env.SessionId); ok {
		return k.restart(existing, env)
	}
	if !k.opts.Limits.Open(env.Sender) {
		return nil, macperr.New(macperr.RateLimited, "%s already has as many open sessions as this server allows", env.Sender)
	}
	started := false
	defer func() {
		if !started {
			k.opts.Limits.Close(env.Sender)
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
		ModuleDigest:   mode.Digest(),
		Policy:         pol,
		DeadlineUnixMs: anchor + ttl,
		TtlMs:          ttl,
		MaxSuspendMs:   maxSuspend,
		AnchorUnixMs:   anchor,
		LastSequence:   1,
	}

	s := newSession(rec, mode)
	s.mu.Lock()
	if v, loaded := k.sessions.LoadOrStore(env.SessionId, s); loaded {
		// Another SessionStart for the same id won the race.
		s.mu.Unlock()
		return k.restart(v.(*session), env)
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

	clock := sessionClock(rec, now)
	res, err := mode.Step(ctx, &abiv1.StepRequest{Envelope: env, Session: abiSession(rec), NowUnixMs: now, SessionClockMs: clock})
	if err != nil {
		return fail(macperr.Wrap(macperr.InternalError, err, "the mode module failed on SessionStart"))
	}
	if res.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
		return fail(modeRejection(res))
	}
	rec.ModeState = res.GetState()
	if rec.Timers, err = k.pendingTimers(res, clock); err != nil {
		return fail(macperr.Wrap(macperr.InternalError, err, "the mode module answered SessionStart with an unusable timer"))
	}
	recordActivity(rec.Metadata, env.Sender, now)
	entry := &storev1.Entry{
		Sequence:         1,
		Envelope:         env,
		AcceptedAtUnixMs: now,
		Origin:           storev1.Origin_ORIGIN_AGENT,
		StateAfter:       macpv1.SessionState_SESSION_STATE_OPEN,
	}
	if err := k.commit(ctx, s, rec, entry); err != nil {
		return fail(writeError(err, "the session could not be made durable"))
	}
	started = true
	k.log.Debug("session started", "session_id", env.SessionId, "mode", env.Mode, "initiator", env.Sender)
	return &macpv1.Ack{Ok: true, MessageId: env.MessageId, SessionId: env.SessionId,
		AcceptedAtUnixMs: now, SessionState: macpv1.SessionState_SESSION_STATE_OPEN}, nil
}

// restart answers a SessionStart for a session id already in use: a retry
// of the same message gets a duplicate Ack, anything else is refused.
func (k *Kernel) restart(s *session, env *macpv1.Envelope) (*macpv1.Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, macperr.New(macperr.SessionNotFound, "a concurrent SessionStart for %q failed; retry", env.SessionId)
	}
	if _, dup := s.seen[env.MessageId]; dup {
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
			return macperr.New(macperr.InvalidEnvelope, "participant %q is listed twice", id)
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

// policyDenied builds the POLICY_DENIED rejection with its reasons in the
// details as {"reasons":[…]}.
func policyDenied(reasons []string) error {
	if reasons == nil {
		reasons = []string{}
	}
	details, _ := json.Marshal(struct {
		Reasons []string `json:"reasons"`
	}{reasons})
	msg := "the bound policy denied the commitment"
	if len(reasons) > 0 {
		msg += ": " + strings.Join(reasons, "; ")
	}
	return &macperr.Error{Code: macperr.PolicyDenied, Message: msg, Details: details}
}
