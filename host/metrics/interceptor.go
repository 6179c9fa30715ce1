package metrics

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/kernel"
)

// Interceptor counts and times every RPC the server handles, keeps the
// number of open streams and counts streams dropped for lagging. Put it
// outside the authentication interceptor, so refused calls count too.
// Procedures are a bounded set: only registered ones reach interceptors.
func (m *Metrics) Interceptor() connect.Interceptor { return interceptor{m} }

type interceptor struct{ m *Metrics }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		began := time.Now()
		res, err := next(ctx, req)
		i.m.finished(req.Spec().Procedure, began, err)
		return res, err
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		procedure := conn.Spec().Procedure
		open := i.m.streams.WithLabelValues(procedure)
		open.Inc()
		defer open.Dec()
		began := time.Now()
		err := next(ctx, conn)
		if errors.Is(err, kernel.ErrLagging) {
			i.m.streamDrops.WithLabelValues(procedure).Inc()
		}
		i.m.finished(procedure, began, err)
		return err
	}
}

func (m *Metrics) finished(procedure string, began time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	m.rpcRequests.WithLabelValues(procedure, code).Inc()
	m.rpcDuration.WithLabelValues(procedure, code).Observe(time.Since(began).Seconds())
}
