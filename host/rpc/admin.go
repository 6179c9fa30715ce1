package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/audit"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
)

// admin implements Concord's own operator API.
type admin struct {
	kernel       *kernel.Kernel
	modes        *modes.Registry
	policyEngine *policy.Engine
	audit        *audit.Log
}

var _ adminv1connect.AdminServiceHandler = (*admin)(nil)

// InspectSession returns a session's metadata, mode state view, resolution
// and its hash to the session's initiator, participants and observers.
func (a *admin) InspectSession(ctx context.Context, req *connect.Request[adminv1.InspectSessionRequest]) (*connect.Response[adminv1.InspectSessionResponse], error) {
	id, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if req.Msg.GetSessionId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	in, err := a.kernel.Inspect(ctx, id.ID, id.Observer, req.Msg.GetSessionId())
	if err != nil {
		return nil, statusError(err)
	}
	rec := in.Session
	decisions, err := a.kernel.Governance(ctx, id.ID, id.Observer, req.Msg.GetSessionId())
	if err != nil {
		return nil, statusError(err)
	}
	var gov []*adminv1.GovernanceDecision
	for _, g := range decisions {
		gov = append(gov, &adminv1.GovernanceDecision{
			MessageId: g.GetMessageId(), Sender: g.GetSender(), PolicyId: g.GetPolicyId(), PolicyDigest: g.GetPolicyDigest(),
			Allow: g.GetAllow(), Reasons: g.GetReasons(), DecidedAtUnixMs: g.GetDecidedAtUnixMs(),
		})
	}
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
	id, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	sid := req.Msg.GetSessionId()
	if _, err := a.kernel.Session(ctx, id.ID, id.Observer, sid); err != nil {
		return nil, statusError(err)
	}
	res, err := a.kernel.ReplaySession(ctx, sid)
	if err != nil {
		return nil, statusError(macperr.Wrap(macperr.InternalError, err, "replay failed"))
	}
	out := &adminv1.ReplaySessionResponse{
		Entries:     uint64(res.Entries),
		Exact:       len(res.Divergences) == 0,
		Divergences: res.Divergences,
	}
	if res.Session != nil {
		out.State = res.Session.GetMetadata().GetState()
		out.Resolution = res.Session.GetResolution()
		if view, err := a.kernel.ViewOf(ctx, res.Session); err == nil {
			out.ModeStateJson = string(view)
		}
	}
	return connect.NewResponse(out), nil
}
