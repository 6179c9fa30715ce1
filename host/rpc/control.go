package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/kernel"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// control runs a lifecycle RPC: unknown sessions and missing authority are
// status errors, everything else is in the Ack.
func (s *service) control(ctx context.Context, procedure string, op kernel.Control, sessionID, reason string) (*macpv1.Ack, error) {
	c, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if sessionID == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	ack, err := s.kernel.Control(ctx, c, op, sessionID, reason)
	if err != nil {
		return nil, statusError(s.log, procedure, err)
	}
	return ack, nil
}

// CancelSession ends an open or suspended session as CANCELLED.
func (s *service) CancelSession(ctx context.Context, req *connect.Request[macpv1.CancelSessionRequest]) (*connect.Response[macpv1.CancelSessionResponse], error) {
	ack, err := s.control(ctx, req.Spec().Procedure, kernel.Cancel, req.Msg.GetSessionId(), req.Msg.GetReason())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&macpv1.CancelSessionResponse{Ack: ack}), nil
}

// SuspendSession pauses an open session; its TTL stops running.
func (s *service) SuspendSession(ctx context.Context, req *connect.Request[macpv1.SuspendSessionRequest]) (*connect.Response[macpv1.SuspendSessionResponse], error) {
	ack, err := s.control(ctx, req.Spec().Procedure, kernel.Suspend, req.Msg.GetSessionId(), req.Msg.GetReason())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&macpv1.SuspendSessionResponse{Ack: ack}), nil
}

// ResumeSession reopens a suspended session with its TTL banked.
func (s *service) ResumeSession(ctx context.Context, req *connect.Request[macpv1.ResumeSessionRequest]) (*connect.Response[macpv1.ResumeSessionResponse], error) {
	ack, err := s.control(ctx, req.Spec().Procedure, kernel.Resume, req.Msg.GetSessionId(), req.Msg.GetReason())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&macpv1.ResumeSessionResponse{Ack: ack}), nil
}
