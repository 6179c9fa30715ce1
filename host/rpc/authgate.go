package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// publicProcedures need no identity: the discovery calls and the watch
// calls the official SDKs make without credentials.
var publicProcedures = map[string]bool{
	macpv1connect.MACPRuntimeServiceInitializeProcedure:        true,
	macpv1connect.MACPRuntimeServiceListModesProcedure:         true,
	macpv1connect.MACPRuntimeServiceListExtModesProcedure:      true,
	macpv1connect.MACPRuntimeServiceGetManifestProcedure:       true,
	macpv1connect.MACPRuntimeServiceListRootsProcedure:         true,
	macpv1connect.MACPRuntimeServiceWatchRootsProcedure:        true,
	macpv1connect.MACPRuntimeServiceWatchModeRegistryProcedure: true,
	macpv1connect.MACPRuntimeServiceWatchPoliciesProcedure:     true,
}

// IsPublic reports whether procedure needs no identity.
func IsPublic(procedure string) bool { return publicProcedures[procedure] }

// sendAuthMessage makes a refused credential read the same in Send's Ack
// as in every other call's UNAUTHENTICATED status: the kernel only sees
// that no identity was established and says "no credentials presented",
// so the Ack's message is replaced by the authentication's own reason.
// The check order and the code stay the kernel's.
type sendAuthMessage struct{}

func (sendAuthMessage) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err != nil || req.Spec().Procedure != macpv1connect.MACPRuntimeServiceSendProcedure {
			return res, err
		}
		_, authErr := auth.FromContext(ctx)
		if !errors.Is(authErr, auth.ErrRejected) {
			return res, err
		}
		if send, ok := res.Any().(*macpv1.SendResponse); ok {
			if e := send.GetAck().GetError(); e != nil && e.GetCode() == string(macperr.Unauthenticated) && e.GetMessage() == auth.ErrNoCredentials.Error() {
				e.Message = authErr.Error()
			}
		}
		return res, err
	}
}

func (sendAuthMessage) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (sendAuthMessage) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
