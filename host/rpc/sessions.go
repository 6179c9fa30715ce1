package rpc

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/export"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/host/timeline"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// timelinePage is how many log entries SessionTimeline reads at a time.
const timelinePage = 256

// ListSessions lists the sessions the caller may observe that the
// request's filters select.
func (a *admin) ListSessions(ctx context.Context, req *connect.Request[adminv1.ListSessionsRequest]) (*connect.Response[adminv1.ListSessionsResponse], error) {
	c, err := administrator(ctx)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	filter := kernel.SessionFilter{
		States:             m.GetStates(),
		Mode:               m.GetMode(),
		Initiator:          m.GetInitiator(),
		Participant:        m.GetParticipant(),
		ContextID:          m.GetContextId(),
		StartedFromUnixMs:  m.GetStartedFromUnixMs(),
		StartedUntilUnixMs: m.GetStartedUntilUnixMs(),
	}
	page, next, err := a.kernel.As(c).ListSessions(ctx, filter, m.GetPageSize(), m.GetPageToken())
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&adminv1.ListSessionsResponse{Sessions: page, NextPageToken: next}), nil
}

// ExportSession returns a session's snapshot and its whole durable log.
func (a *admin) ExportSession(ctx context.Context, req *connect.Request[adminv1.ExportSessionRequest]) (*connect.Response[adminv1.ExportSessionResponse], error) {
	c, err := administrator(ctx)
	if err != nil {
		return nil, err
	}
	sid := req.Msg.GetSessionId()
	if sid == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	rec, entries, err := a.kernel.As(c).Export(ctx, sid)
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	exp := &adminv1.SessionExport{
		Format:           export.Format,
		Session:          rec,
		Entries:          entries,
		ExportedAtUnixMs: time.Now().UnixMilli(),
	}
	src, custom, err := a.policyEngine.Source(ctx, rec.GetPolicy())
	if err != nil {
		return nil, statusError(a.log, req.Spec().Procedure, err)
	}
	if custom {
		exp.PolicySource = string(src)
	}
	return connect.NewResponse(&adminv1.ExportSessionResponse{Export: exp}), nil
}

// SessionTimeline streams a session's log with its payloads decoded; with
// follow it keeps streaming until the session ends.
func (a *admin) SessionTimeline(ctx context.Context, req *connect.Request[adminv1.SessionTimelineRequest], stream *connect.ServerStream[adminv1.SessionTimelineResponse]) error {
	c, err := administrator(ctx)
	if err != nil {
		return err
	}
	sid, after := req.Msg.GetSessionId(), req.Msg.GetAfterSequence()
	if sid == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("session_id is required"))
	}
	procedure := req.Spec().Procedure
	send := func(e *storev1.Entry) error {
		return stream.Send(&adminv1.SessionTimelineResponse{Entry: timeline.Entry(e)})
	}
	view := a.kernel.As(c)
	md, err := view.Session(ctx, sid)
	if err != nil {
		return statusError(a.log, procedure, err)
	}
	if !req.Msg.GetFollow() || terminal(md.GetState()) {
		// Nothing more will come: the durable log is the whole answer,
		// read a page at a time so that a slow reader holds no read
		// transaction open.
		for {
			var page []*storev1.Entry
			err := view.Log(ctx, sid, after, func(e *storev1.Entry) error {
				page = append(page, e)
				if len(page) == timelinePage {
					return store.ErrStop
				}
				return nil
			})
			if err != nil {
				return statusError(a.log, procedure, err)
			}
			for _, e := range page {
				if err := send(e); err != nil {
					return err
				}
			}
			if len(page) < timelinePage {
				return nil
			}
			after = page[len(page)-1].GetSequence()
		}
	}
	// Subscribed after the state was read: a session that ended meanwhile
	// delivers its terminal entry in the backfill.
	sub, err := view.Subscribe(ctx, sid, after)
	if err != nil {
		return statusError(a.log, procedure, err)
	}
	defer sub.Close()
	// Send the headers now: a client's call returns only once they arrive,
	// and the first entry may be long in coming.
	if err := stream.Send(nil); err != nil {
		return err
	}
	ctx, stop := untilDone(ctx, a.done)
	defer stop()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the client left or the server is stopping
			}
			return statusError(a.log, procedure, err)
		}
		if err := send(e); err != nil {
			return err
		}
		if terminal(e.GetStateAfter()) {
			return nil
		}
	}
}

// terminal reports whether a session in state st can change no more.
func terminal(st macpv1.SessionState) bool {
	switch st {
	case macpv1.SessionState_SESSION_STATE_RESOLVED,
		macpv1.SessionState_SESSION_STATE_EXPIRED,
		macpv1.SessionState_SESSION_STATE_CANCELLED:
		return true
	}
	return false
}

// untilDone returns ctx ended also when done closes (server shutdown).
func untilDone(ctx context.Context, done <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			cancel()
		}
	}()
	return ctx, cancel
}
