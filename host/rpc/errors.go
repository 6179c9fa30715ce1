package rpc

import (
	"errors"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/macperr"
	"github.com/concord-macp/concord/host/store"
)

// CodeHeader is the response metadata key that carries the MACP registry
// code of an RPC-level error, so clients need not parse messages.
const CodeHeader = "macp-error-code"

// DetailsHeader carries MACPError.details of an RPC-level error (binary
// metadata, e.g. {"reasons":[…]} for POLICY_DENIED).
const DetailsHeader = "macp-error-details-bin"

// statusCodes maps the MACP error registry to gRPC/Connect status codes
// (RFC-MACP-0006).
var statusCodes = map[string]connect.Code{
	macperr.Unauthenticated:            connect.CodeUnauthenticated,
	macperr.Forbidden:                  connect.CodePermissionDenied,
	macperr.SessionNotFound:            connect.CodeNotFound,
	macperr.SessionNotOpen:             connect.CodeFailedPrecondition,
	macperr.SessionAlreadyExists:       connect.CodeAlreadyExists,
	macperr.InvalidEnvelope:            connect.CodeInvalidArgument,
	macperr.UnsupportedProtocolVersion: connect.CodeFailedPrecondition,
	macperr.ModeNotSupported:           connect.CodeFailedPrecondition,
	macperr.PayloadTooLarge:            connect.CodeResourceExhausted,
	macperr.RateLimited:                connect.CodeResourceExhausted,
	macperr.InvalidSessionID:           connect.CodeInvalidArgument,
	macperr.InternalError:              connect.CodeInternal,
	macperr.UnknownPolicyVersion:       connect.CodeFailedPrecondition,
	macperr.PolicyDenied:               connect.CodeFailedPrecondition,
	macperr.InvalidPolicyDefinition:    connect.CodeInvalidArgument,
}

// StatusCode returns the gRPC/Connect code for a MACP registry code.
func StatusCode(macpCode string) connect.Code {
	if c, ok := statusCodes[macpCode]; ok {
		return c
	}
	return connect.CodeUnknown
}

// statusError converts a kernel error into a connect error with the mapped
// status and the MACP code in the metadata.
func statusError(err error) error {
	if errors.Is(err, store.ErrDiskFull) {
		return diskFullError()
	}
	e := macperr.As(err)
	msg := e.Message
	if e.Code == macperr.InternalError {
		msg = "internal error"
	}
	ce := connect.NewError(StatusCode(e.Code), &codedMessage{code: e.Code, msg: msg})
	ce = withMACPCode(ce, e.Code)
	if len(e.Details) > 0 {
		ce.Meta().Set(DetailsHeader, connect.EncodeBinaryHeader(e.Details))
	}
	return ce
}

type codedMessage struct{ code, msg string }

func (c *codedMessage) Error() string { return c.code + ": " + c.msg }

func withMACPCode(ce *connect.Error, code string) *connect.Error {
	ce.Meta().Set(CodeHeader, code)
	return ce
}

// diskFullError answers a write the store refused because its disk is
// full: RESOURCE_EXHAUSTED with INTERNAL_ERROR as the MACP code and a
// message that says what happened, since the client can retry later.
func diskFullError() *connect.Error {
	ce := connect.NewError(connect.CodeResourceExhausted, &codedMessage{code: macperr.InternalError, msg: store.DiskFullMessage})
	return withMACPCode(ce, macperr.InternalError)
}
