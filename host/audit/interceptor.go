package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// codeHeader carries the MACP code of an RPC error (host/rpc.CodeHeader).
const codeHeader = "macp-error-code"

// maxField bounds the target and message of a record.
const maxField = 512

// governance lists the MACPRuntimeService calls that change governance;
// every AdminService call is recorded too, except reading the trail itself.
var governance = map[string]bool{
	macpv1connect.MACPRuntimeServiceRegisterExtModeProcedure:   true,
	macpv1connect.MACPRuntimeServiceUnregisterExtModeProcedure: true,
	macpv1connect.MACPRuntimeServicePromoteModeProcedure:       true,
	macpv1connect.MACPRuntimeServiceRegisterPolicyProcedure:    true,
	macpv1connect.MACPRuntimeServiceUnregisterPolicyProcedure:  true,
}

// Audited reports whether calls of procedure are recorded.
func Audited(procedure string) bool {
	if procedure == adminv1connect.AdminServiceListAuditRecordsProcedure {
		return false
	}
	return governance[procedure] || strings.HasPrefix(procedure, "/"+adminv1connect.AdminServiceName+"/")
}

// Interceptor returns a connect interceptor that records every audited
// call after it ran. It must come after the auth interceptor. Calls
// without an authenticated caller are not recorded (they changed nothing,
// and recording them would let anyone fill the store); they are logged at debug level.
// A record that cannot be written is logged and does not fail the call,
// which has already happened.
func (l *Log) Interceptor() connect.Interceptor { return interceptor{l} }

type interceptor struct{ l *Log }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		proc := req.Spec().Procedure
		if req.Spec().IsClient || !Audited(proc) {
			return next(ctx, req)
		}
		res, err := next(ctx, req)
		caller, authErr := auth.FromContext(ctx)
		if authErr != nil || caller.Anonymous() {
			i.l.opts.Logger.Debug("governance call without an identity", "procedure", proc, "peer", req.Peer().Addr)
			return res, err
		}
		a := &storev1.AuditAction{Actor: caller.ID, Procedure: proc, Target: clip(target(req.Any(), res)), Ok: true}
		outcome(a, res, err)
		if rerr := i.l.Record(context.WithoutCancel(ctx), a); rerr != nil {
			i.l.opts.Logger.Error("audit record not written", "procedure", proc, "actor", caller.ID, "err", rerr)
		}
		return res, err
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// outcome fills in how the call ended: an RPC error, or a refusal the
// response itself carries (ok=false and an error string, as the MACP
// registry calls answer).
func outcome(a *storev1.AuditAction, res connect.AnyResponse, err error) {
	if err != nil {
		a.Ok = false
		var ce *connect.Error
		if errors.As(err, &ce) {
			a.ErrorCode = ce.Meta().Get(codeHeader)
			if a.ErrorCode == "" {
				a.ErrorCode = strings.ToUpper(ce.Code().String())
			}
			a.ErrorMessage = clip(ce.Message())
		} else {
			a.ErrorCode, a.ErrorMessage = "UNKNOWN", clip(err.Error())
		}
		return
	}
	if r, ok := res.Any().(interface {
		GetOk() bool
		GetError() string
	}); ok && !r.GetOk() {
		a.Ok = false
		a.ErrorMessage = clip(r.GetError())
		if code, _, found := strings.Cut(r.GetError(), ":"); found && isCode(code) {
			a.ErrorCode = code
		}
	}
}

// target names what a call acted on.
func target(req any, res connect.AnyResponse) string {
	switch m := req.(type) {
	case *macpv1.RegisterExtModeRequest:
		return m.GetModeDescriptor().GetMode() + "@" + m.GetModeDescriptor().GetModeVersion()
	case *macpv1.UnregisterExtModeRequest:
		return m.GetMode()
	case *macpv1.PromoteModeRequest:
		if n := m.GetPromotedModeName(); n != "" {
			return m.GetMode() + " -> " + n
		}
		return m.GetMode()
	case *macpv1.RegisterPolicyRequest:
		return m.GetPolicyDescriptor().GetPolicyId()
	case *macpv1.UnregisterPolicyRequest:
		return m.GetPolicyId()
	case *adminv1.UploadModeRequest:
		sum := sha256.Sum256(m.GetWasm())
		digest := "sha256:" + hex.EncodeToString(sum[:])
		if res != nil {
			if up, ok := res.Any().(*adminv1.UploadModeResponse); ok && up.GetModule().GetMode() != "" {
				return up.GetModule().GetMode() + " " + digest
			}
		}
		return digest
	case *adminv1.RemoveModeRequest:
		return m.GetMode()
	case *adminv1.PushPolicyRequest:
		return m.GetPolicyDescriptor().GetPolicyId()
	case *adminv1.InspectSessionRequest:
		return m.GetSessionId()
	case *adminv1.ReplaySessionRequest:
		return m.GetSessionId()
	}
	return ""
}

// isCode reports whether s looks like a MACP error code (UPPER_SNAKE).
func isCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && r != '_' {
			return false
		}
	}
	return true
}

// clip bounds a client-controlled string, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxField {
		return s
	}
	s = s[:maxField]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
