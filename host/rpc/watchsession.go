package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
)

// WatchSession streams a session's log entries after the requested
// sequence, then each new one as it becomes durable, until the session's
// subscriber hangs up or the server shuts down. Who may watch is who may
// subscribe through StreamSession: unlike the rest of the AdminService it
// needs no Admin capability, since it is how browsers follow a session.
func (a *admin) WatchSession(ctx context.Context, req *connect.Request[adminv1.WatchSessionRequest], stream *connect.ServerStream[adminv1.WatchSessionResponse]) error {
	c, err := authenticated(ctx)
	if err != nil {
		return err
	}
	if req.Msg.GetSessionId() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	sub, err := a.kernel.As(c).Subscribe(ctx, req.Msg.GetSessionId(), req.Msg.GetAfterSequence())
	if err != nil {
		return statusError(a.log, req.Spec().Procedure, err)
	}
	defer sub.Close()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return statusError(a.log, req.Spec().Procedure, err)
		}
		if err := stream.Send(&adminv1.WatchSessionResponse{
			Sequence:         e.GetSequence(),
			Envelope:         e.GetEnvelope(),
			AcceptedAtUnixMs: e.GetAcceptedAtUnixMs(),
			StateAfter:       e.GetStateAfter(),
		}); err != nil {
			return err
		}
	}
}
