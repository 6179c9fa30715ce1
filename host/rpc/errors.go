package rpc

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
)

// CodeHeader is the response metadata key that carries the MACP registry
// code of an RPC-level error, so clients need not parse messages.
const CodeHeader = "macp-error-code"

// DetailsHeader carries MACPError.details of an RPC-level error (binary
// metadata, e.g. {"reasons":[…]} for POLICY_DENIED).
const DetailsHeader = "macp-error-details-bin"

// statusCodes maps the MACP error registry to gRPC/Connect status codes
// (RFC-MACP-0006).
var statusCodes = map[macperr.Code]connect.Code{
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
func StatusCode(c macperr.Code) connect.Code {
	if sc, ok := statusCodes[c]; ok {
		return sc
	}
	return connect.CodeUnknown
}

// sentinels maps the errors of the layers below that carry no MACP code to
// a status. It is the only place such errors are translated.
var sentinels = []struct {
	err  error
	code connect.Code
}{
	{kernel.ErrBadPage, connect.CodeInvalidArgument},
	{kernel.ErrLagging, connect.CodeResourceExhausted},
	{modes.ErrRefused, connect.CodeInvalidArgument},
	{audit.ErrBadPage, connect.CodeInvalidArgument},
	{context.Canceled, connect.CodeCanceled},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
}

// statusError converts an error from the layers below into a connect error.
// A MACP-coded error keeps its code (in the CodeHeader metadata too) and its
// message; a known sentinel gets its status and its text; anything else is
// logged with its details and answered "internal error", so internal
// details never reach a client.
func statusError(log *slog.Logger, procedure string, err error) error {
	if errors.Is(err, storage.ErrNoSpace) {
		return noSpaceError()
	}
	var me *macperr.Error
	if errors.As(err, &me) {
		if me.Code == macperr.InternalError && me.Err != nil {
			log.Error("internal error", "procedure", procedure, "err", err)
		}
		ce := withMACPCode(connect.NewError(StatusCode(me.Code), &codedMessage{code: me.Code, msg: me.Message}), me.Code)
		if len(me.Details) > 0 {
			ce.Meta().Set(DetailsHeader, connect.EncodeBinaryHeader(me.Details))
		}
		return ce
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return connect.NewError(s.code, err)
		}
	}
	log.Error("internal error", "procedure", procedure, "err", err)
	return withMACPCode(connect.NewError(connect.CodeInternal, errors.New("internal error")), macperr.InternalError)
}

type codedMessage struct {
	code macperr.Code
	msg  string
}

func (c *codedMessage) Error() string { return string(c.code) + ": " + c.msg }

func withMACPCode(ce *connect.Error, code macperr.Code) *connect.Error {
	ce.Meta().Set(CodeHeader, string(code))
	return ce
}

// noSpaceError answers a write the store refused because its disk is full:
// RESOURCE_EXHAUSTED with INTERNAL_ERROR as the MACP code and a message that
// says what happened, since the client can retry later.
func noSpaceError() *connect.Error {
	ce := connect.NewError(connect.CodeResourceExhausted, &codedMessage{code: macperr.InternalError, msg: storage.NoSpaceMessage})
	return withMACPCode(ce, macperr.InternalError)
}

// inlineError is err as a MACPError for answers that carry errors inline
// (StreamSession frames, registry responses).
func inlineError(log *slog.Logger, procedure string, err error) *macperr.Error {
	if errors.Is(err, storage.ErrNoSpace) {
		return macperr.Wrap(macperr.InternalError, err, storage.NoSpaceMessage)
	}
	e := macperr.As(err)
	if e.Code == macperr.InternalError {
		log.Error("internal error", "procedure", procedure, "err", err)
	}
	return e
}
