// Package macperr is the MACP error registry (RFC-MACP-0006) as Go values: a
// typed Code, an Error that carries one through Go error chains, and CodeOf
// to read it back. It is the ground package of the repository: the guest SDK
// (abi/guest), the policy engine and every host package import it, and it
// imports nothing of ours.
//
// A rejection is built where the reason is known and travels up unchanged:
//
//	return macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
//
// The transport maps the code to a gRPC status in one table and shows the
// message to the client; the wrapped cause (Wrap) is for logs only.
package macperr

import (
	"errors"
	"fmt"
)

// Code is a MACP error registry code, e.g. "SESSION_NOT_FOUND".
type Code string

// The MACP error registry. UNAUTHORIZED and DUPLICATE_MESSAGE are deprecated
// or reserved by the specification and never emitted.
const (
	Unauthenticated            Code = "UNAUTHENTICATED"
	Forbidden                  Code = "FORBIDDEN"
	SessionNotFound            Code = "SESSION_NOT_FOUND"
	SessionNotOpen             Code = "SESSION_NOT_OPEN"
	SessionAlreadyExists       Code = "SESSION_ALREADY_EXISTS"
	InvalidEnvelope            Code = "INVALID_ENVELOPE"
	UnsupportedProtocolVersion Code = "UNSUPPORTED_PROTOCOL_VERSION"
	ModeNotSupported           Code = "MODE_NOT_SUPPORTED"
	PayloadTooLarge            Code = "PAYLOAD_TOO_LARGE"
	RateLimited                Code = "RATE_LIMITED"
	InvalidSessionID           Code = "INVALID_SESSION_ID"
	InternalError              Code = "INTERNAL_ERROR"
	UnknownPolicyVersion       Code = "UNKNOWN_POLICY_VERSION"
	PolicyDenied               Code = "POLICY_DENIED"
	InvalidPolicyDefinition    Code = "INVALID_POLICY_DEFINITION"
)

// registry lists every code Concord may emit, in the specification's order.
var registry = [...]Code{
	Unauthenticated, Forbidden, SessionNotFound, SessionNotOpen, SessionAlreadyExists,
	InvalidEnvelope, UnsupportedProtocolVersion, ModeNotSupported, PayloadTooLarge,
	RateLimited, InvalidSessionID, InternalError, UnknownPolicyVersion, PolicyDenied,
	InvalidPolicyDefinition,
}

// Codes returns every code of the registry.
func Codes() []Code { return append([]Code(nil), registry[:]...) }

// Known reports whether c is a code of the registry.
func (c Code) Known() bool {
	for _, k := range registry {
		if c == k {
			return true
		}
	}
	return false
}

func (c Code) String() string { return string(c) }

// Error is a rejection with a registry code.
type Error struct {
	Code    Code
	Message string
	// Details is machine-readable context, e.g. {"reasons":[…]} for
	// POLICY_DENIED.
	Details []byte
	// Err is the underlying cause, if any. Message is for clients; Err is
	// for logs and is never sent.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with code and a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with code and message whose cause is err.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// As returns the *Error in err's chain. An error without one is reported as
// INTERNAL_ERROR with a generic message, so that nothing unclassified
// reaches a client.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: InternalError, Message: "internal error", Err: err}
}

// CodeOf returns the registry code of err: "" for nil, INTERNAL_ERROR for an
// error that carries no code.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	return As(err).Code
}
