// Package macperr carries MACP error registry codes through Go errors, so that
// every layer of the host can reject with the code the specification names and
// the transport can surface it unchanged.
package macperr

import (
	"errors"
	"fmt"
)

// The MACP error registry (RFC-MACP-0006). UNAUTHORIZED and DUPLICATE_MESSAGE
// are deprecated or reserved and never emitted.
const (
	Unauthenticated            = "UNAUTHENTICATED"
	Forbidden                  = "FORBIDDEN"
	SessionNotFound            = "SESSION_NOT_FOUND"
	SessionNotOpen             = "SESSION_NOT_OPEN"
	SessionAlreadyExists       = "SESSION_ALREADY_EXISTS"
	InvalidEnvelope            = "INVALID_ENVELOPE"
	UnsupportedProtocolVersion = "UNSUPPORTED_PROTOCOL_VERSION"
	ModeNotSupported           = "MODE_NOT_SUPPORTED"
	PayloadTooLarge            = "PAYLOAD_TOO_LARGE"
	RateLimited                = "RATE_LIMITED"
	InvalidSessionID           = "INVALID_SESSION_ID"
	InternalError              = "INTERNAL_ERROR"
	UnknownPolicyVersion       = "UNKNOWN_POLICY_VERSION"
	PolicyDenied               = "POLICY_DENIED"
	InvalidPolicyDefinition    = "INVALID_POLICY_DEFINITION"
)

// Error is a rejection with a registry code.
type Error struct {
	Code    string
	Message string
	// Details is machine-readable context, e.g. {"reasons":[…]} for
	// POLICY_DENIED.
	Details []byte
	// Err is the underlying cause, if any; it is not shown to clients.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with code and a formatted message.
func New(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with code and message whose cause is err.
func Wrap(code string, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// As returns the *Error in err's chain; an error without one is reported as
// INTERNAL_ERROR so that nothing leaks unclassified to a client.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: InternalError, Message: "internal error", Err: err}
}

// Code returns the registry code of err ("" for nil).
func Code(err error) string {
	if err == nil {
		return ""
	}
	return As(err).Code
}
