package kernel

import (
	"regexp"
	"strings"

	"github.com/concord-macp/concord/macperr"
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

// Limits on identifiers, so that hostile input cannot bloat keys, dedup
// memory and logs (RATIONALE "Limits on identifiers"). Error messages quote
// a client's ids with a precision (%.64q), so no answer echoes more than a
// bounded part of what was sent.
const (
	maxMessageIDLen = 256
	maxSessionIDLen = 128
	maxSenderLen    = 256
	maxTypeLen      = 128
)

var (
	uuidV4V7   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tokenIDPat = regexp.MustCompile(`^[A-Za-z0-9_-]{22,}$`)
)

// ValidSessionID reports whether id is an acceptable session id: a
// lowercase canonical UUID v4 or v7, or a token of at least 22 characters
// of [A-Za-z0-9_-], at most 128 characters in all. A 36-character id with a
// hyphen must be a valid UUID.
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

// runtimeIDPrefixes start the message ids the runtime writes itself (mode
// timers, lifecycle records). Agents may not use them, so a runtime record
// can never collide with an agent's message or be pre-empted by one.
var runtimeIDPrefixes = []string{"runtime:", "implicit-accept:"}

// reservedID reports whether id belongs to the runtime's namespace.
func reservedID(id string) bool {
	for _, p := range runtimeIDPrefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// checkEnvelope runs the envelope checks of RFC-MACP-0001 that come before
// authentication, in their order (the order decides the code): version,
// required fields, scope, payload size. Field lengths are checked with the
// required fields, and an over-long session id on any message is
// INVALID_SESSION_ID, so no later error message echoes unbounded input.
func (k *Kernel) checkEnvelope(env *macpv1.Envelope) error {
	if env.MacpVersion != ProtocolVersion {
		return macperr.New(macperr.UnsupportedProtocolVersion, "macp_version %.64q is not supported; use %q", env.MacpVersion, ProtocolVersion)
	}
	if env.MessageType == "" || env.MessageId == "" {
		return macperr.New(macperr.InvalidEnvelope, "message_type and message_id are required")
	}
	if len(env.MessageId) > maxMessageIDLen || len(env.MessageType) > maxTypeLen || len(env.Mode) > maxTypeLen || len(env.Sender) > maxSenderLen {
		return macperr.New(macperr.InvalidEnvelope, "an envelope field exceeds its length limit (message_id and sender %d bytes, message_type and mode %d)", maxMessageIDLen, maxTypeLen)
	}
	if len(env.SessionId) > maxSessionIDLen {
		return macperr.New(macperr.InvalidSessionID, "session_id exceeds %d characters", maxSessionIDLen)
	}
	if reservedID(env.MessageId) {
		return macperr.New(macperr.InvalidEnvelope, "message ids beginning with %q are reserved for records the runtime writes", env.MessageId[:strings.IndexByte(env.MessageId, ':')+1])
	}
	if err := checkScope(env); err != nil {
		return err
	}
	if len(env.Payload) > k.opts.MaxPayloadBytes {
		return macperr.New(macperr.PayloadTooLarge, "payload of %d bytes exceeds the limit of %d", len(env.Payload), k.opts.MaxPayloadBytes)
	}
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
			return macperr.New(macperr.InvalidEnvelope, "%.64s needs a session_id and a mode", env.MessageType)
		}
	}
	return nil
}
