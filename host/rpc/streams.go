package rpc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// procStreamSession names StreamSession in logs.
const procStreamSession = macpv1connect.MACPRuntimeServiceStreamSessionProcedure

// StreamSession runs envelopes through the Send pipeline and streams the
// session's accepted envelopes back, from any point of its history. Invalid
// input is answered inline with a MACPError and the stream stays open; only
// protocol violations of the stream itself end it.
func (s *service) StreamSession(ctx context.Context, stream *connect.BidiStream[macpv1.StreamSessionRequest, macpv1.StreamSessionResponse]) error {
	caller, err := authenticated(ctx)
	if err != nil {
		return err
	}
	view := s.kernel.As(caller)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &streamWriter{stream: stream, flushes: heldFlushes(ctx)}
	var (
		bound    string
		pumpErr  = make(chan error, 1)
		pumpDone = make(chan struct{})
	)
	// The handler must not return while the pump may still write to the
	// stream: stop the pump, refuse further writes, and wait for it.
	defer func() {
		cancel()
		out.close()
		if bound != "" {
			<-pumpDone
		}
	}()
	bind := func(sessionID string, after uint64) error {
		sub, err := view.Subscribe(ctx, sessionID, after)
		if err != nil {
			return err
		}
		bound = sessionID
		go func() {
			defer close(pumpDone)
			pumpErr <- pump(ctx, s.log, sub, out)
		}()
		return nil
	}
	type frame struct {
		req *macpv1.StreamSessionRequest
		err error
	}
	frames := make(chan frame)
	go func() {
		for {
			req, err := stream.Receive()
			select {
			case frames <- frame{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var f frame
		select {
		case err := <-pumpErr:
			return err
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case f = <-frames:
		}
		req, err := f.req, f.err
		if err != nil {
			// io.EOF: the client closed its side. Keep delivering the session
			// to a bound stream until the client hangs up; the receiver
			// goroutine has stopped, so only the pump or ctx ends the loop.
			if bound == "" {
				return nil
			}
			continue
		}
		env, subscribe := req.GetEnvelope(), req.GetSubscribeSessionId()
		if env != nil && subscribe != "" {
			return connect.NewError(connect.CodeInvalidArgument, errors.New("a frame carries an envelope or subscribe_session_id, never both"))
		}
		target := subscribe
		if env != nil {
			target = env.GetSessionId()
		}
		if bound != "" && target != "" && target != bound {
			return connect.NewError(connect.CodeInvalidArgument, errors.New("one session per stream: this stream is bound to "+bound))
		}
		if subscribe != "" {
			if bound != "" {
				continue // already following this session
			}
			if err := bind(subscribe, req.GetAfterSequence()); err != nil {
				if err := out.error(inlineError(s.log, procStreamSession, err), subscribe, ""); err != nil {
					return err
				}
			}
			continue
		}
		if env == nil {
			if err := out.error(macperr.New(macperr.InvalidEnvelope, "the frame carries neither an envelope nor a subscription"), "", ""); err != nil {
				return err
			}
			continue
		}
		ack := s.send(ctx, env)
		if !ack.GetOk() {
			e := ack.GetError()
			if err := out.send(&macpv1.StreamSessionResponse{Response: &macpv1.StreamSessionResponse_Error{Error: e}}); err != nil {
				return err
			}
			continue
		}
		if bound == "" && env.GetSessionId() != "" {
			// Bind from the session's start: the sender sees its own envelope
			// and everything since, in order.
			if err := bind(env.GetSessionId(), 0); err != nil {
				if err := out.error(inlineError(s.log, procStreamSession, err), env.GetSessionId(), env.GetMessageId()); err != nil {
					return err
				}
			}
		}
	}
}

// pump copies a session's accepted envelopes to the stream.
func pump(ctx context.Context, log *slog.Logger, sub *kernel.Subscription, out *streamWriter) error {
	defer sub.Close()
	for {
		// Sends are not flushed while more entries are ready: a burst
		// leaves in one write, flushed before the pump waits for more.
		e, err := sub.TryNext(ctx)
		if e == nil && err == nil {
			out.flush()
			e, err = sub.Next(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return statusError(log, procStreamSession, err)
		}
		if e.GetEnvelope() == nil {
			continue // runtime records without an envelope (expiry)
		}
		if err := out.sendHeld(&macpv1.StreamSessionResponse{Response: &macpv1.StreamSessionResponse_Envelope{Envelope: e.GetEnvelope()}}, true); err != nil {
			return err
		}
	}
}

// streamWriter serialises sends on a bidi stream shared by the receive loop
// (inline errors) and the pump (envelopes).
type streamWriter struct {
	mu     sync.Mutex
	closed bool
	stream *connect.BidiStream[macpv1.StreamSessionRequest, macpv1.StreamSessionResponse]
	// flushes, when not nil, can hold back the flush after a message.
	flushes *flushHolder
}

// send sends r and flushes it, with anything held before it.
func (w *streamWriter) send(r *macpv1.StreamSessionResponse) error { return w.sendHeld(r, false) }

// sendHeld sends r, flushing it unless hold is set; the caller must then
// send or flush again soon.
func (w *streamWriter) sendHeld(r *macpv1.StreamSessionResponse, hold bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return context.Canceled
	}
	if w.flushes != nil {
		w.flushes.hold = hold
		defer func() { w.flushes.hold = false }()
	}
	return w.stream.Send(r)
}

// flush sends whatever a held send left in the buffer.
func (w *streamWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flushes != nil && !w.closed {
		w.flushes.Flush()
	}
}

// close refuses every later send; it waits for a send in progress.
func (w *streamWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

func (w *streamWriter) error(e *macperr.Error, sessionID, messageID string) error {
	return w.send(&macpv1.StreamSessionResponse{Response: &macpv1.StreamSessionResponse_Error{Error: &macpv1.MACPError{
		Code: string(e.Code), Message: e.Message, SessionId: sessionID, MessageId: messageID, Details: e.Details,
	}}})
}

// WatchSessions sends one CREATED event per visible session, then every
// lifecycle event of the sessions the caller may see.
func (s *service) WatchSessions(ctx context.Context, req *connect.Request[macpv1.WatchSessionsRequest], stream *connect.ServerStream[macpv1.WatchSessionsResponse]) error {
	caller, err := authenticated(ctx)
	if err != nil {
		return err
	}
	w := s.kernel.As(caller).WatchSessions(ctx, kernel.SessionFilter{})
	defer w.Close()
	ctx, stop := s.untilShutdown(ctx)
	defer stop()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return s.streamEnd(ctx, req.Spec().Procedure, err)
		}
		if err := stream.Send(&macpv1.WatchSessionsResponse{Event: ev}); err != nil {
			return err
		}
	}
}

// WatchSignals streams every accepted ambient Signal and Progress. It needs
// no credentials.
func (s *service) WatchSignals(ctx context.Context, req *connect.Request[macpv1.WatchSignalsRequest], stream *connect.ServerStream[macpv1.WatchSignalsResponse]) error {
	c, _ := auth.FromContext(ctx)
	w := s.kernel.As(c).WatchSignals()
	defer w.Close()
	ctx, stop := s.untilShutdown(ctx)
	defer stop()
	for {
		env, err := w.Next(ctx)
		if err != nil {
			return s.streamEnd(ctx, req.Spec().Procedure, err)
		}
		if err := stream.Send(&macpv1.WatchSignalsResponse{Envelope: env}); err != nil {
			return err
		}
	}
}

// untilShutdown returns ctx ended also by the server's shutdown, so that
// long-lived streams do not hold the drain up.
func (s *service) untilShutdown(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
		case <-s.done:
			cancel()
		}
	}()
	return ctx, cancel
}

// streamEnd is how a watch ends: quietly when its client left or the server
// is shutting down, with the error's status otherwise.
func (s *service) streamEnd(ctx context.Context, procedure string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return statusError(s.log, procedure, err)
}

// ListSessions pages through the sessions the caller may see.
func (s *service) ListSessions(ctx context.Context, req *connect.Request[macpv1.ListSessionsRequest]) (*connect.Response[macpv1.ListSessionsResponse], error) {
	c, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	page, next, err := s.kernel.As(c).ListSessions(ctx, kernel.SessionFilter{}, req.Msg.GetPageSize(), req.Msg.GetPageToken())
	if err != nil {
		return nil, statusError(s.log, req.Spec().Procedure, err)
	}
	return connect.NewResponse(&macpv1.ListSessionsResponse{Sessions: page, NextPageToken: next}), nil
}

// ListRoots returns the runtime's roots: Concord exposes none.
func (s *service) ListRoots(context.Context, *connect.Request[macpv1.ListRootsRequest]) (*connect.Response[macpv1.ListRootsResponse], error) {
	return connect.NewResponse(&macpv1.ListRootsResponse{}), nil
}

// WatchRoots sends one change hint on connect, then stays idle.
func (s *service) WatchRoots(ctx context.Context, _ *connect.Request[macpv1.WatchRootsRequest], stream *connect.ServerStream[macpv1.WatchRootsResponse]) error {
	if err := stream.Send(&macpv1.WatchRootsResponse{Change: &macpv1.RootsChanged{ObservedAtUnixMs: time.Now().UnixMilli()}}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.done:
	}
	return nil
}
