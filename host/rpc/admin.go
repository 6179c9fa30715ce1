package rpc

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
)

// admin implements Concord's own operator API. Its calls need the caller's
// Admin capability, except module uploads and removals (CanManageModes)
// and policy pushes (CanManagePolicies).
type admin struct {
	kernel       *kernel.Kernel
	modes        *modes.Registry
	policyEngine *policy.Engine
	log          *slog.Logger
	// done closes at shutdown, ending followed timelines.
	done <-chan struct{}
}

var _ adminv1connect.AdminServiceHandler = (*admin)(nil)

// InspectSession returns a session's metadata, mode state view, resolution
// and its hash, and every governance decision on it.
func (a *admin) InspectSession(ctx context.Context, req *connect.Request[adminv1.InspectSessionRequest]) (*connect.Response[adminv1.InspectSessionResponse], error) {
	c, err := administrator(ctx)
	if err != nil {
		return nil, err
	}
	sid := req.Msg.GetSessionId()
	if sid == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	view := a.kernel.As(c)
	in, err := view.Inspect(ctx, sid)
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	decisions, err := view.Governance(ctx, sid)
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	var gov []*adminv1.GovernanceDecision
	for _, g := range decisions {
		gov = append(gov, &adminv1.GovernanceDecision{
			MessageId: g.GetMessageId(), Sender: g.GetSender(), PolicyId: g.GetPolicyId(), PolicyDigest: g.GetPolicyDigest(),
			Allow: g.GetAllow(), Reasons: g.GetReasons(), DecidedAtUnixMs: g.GetDecidedAtUnixMs(),
		})
	}
	rec := in.Session
	return connect.NewResponse(&adminv1.InspectSessionResponse{
		Governance:     gov,
		Metadata:       rec.GetMetadata(),
		ModeStateJson:  string(in.ModeState),
		Resolution:     rec.GetResolution(),
		ResolutionHash: rec.GetResolutionHash(),
		ModuleDigest:   rec.GetModuleDigest(),
		LogLength:      rec.GetLastSequence(),
	}), nil
}

// ReplaySession replays a session's log through its pinned module and
// policy and reports any divergence from the recording.
func (a *admin) ReplaySession(ctx context.Context, req *connect.Request[adminv1.ReplaySessionRequest]) (*connect.Response[adminv1.ReplaySessionResponse], error) {
	c, err := administrator(ctx)
	if err != nil {
		return nil, err
	}
	if req.Msg.GetSessionId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	res, err := a.kernel.As(c).Replay(ctx, req.Msg.GetSessionId())
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	out := &adminv1.ReplaySessionResponse{
		Entries:       uint64(res.Entries),
		Exact:         len(res.Divergences) == 0,
		Divergences:   res.Divergences,
		ModeStateJson: string(res.ModeState),
	}
	if res.Session != nil {
		out.State = res.Session.GetMetadata().GetState()
		out.Resolution = res.Session.GetResolution()
	}
	return connect.NewResponse(out), nil
}
