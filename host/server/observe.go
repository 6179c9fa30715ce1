package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/metrics"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/host/tracing"
	"github.com/concord-macp/concord/host/wasm"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// observers are the server's metrics and tracer, either of which may be
// absent; they plug into the layers through the layers' own hooks.
type observers struct {
	metrics *metrics.Metrics
	tracer  *tracing.Tracer
}

// stepHook reports each mode step to both.
func (o observers) stepHook() wasm.StepHook {
	var hooks []wasm.StepHook
	if o.metrics != nil {
		hooks = append(hooks, o.metrics.Step)
	}
	if o.tracer != nil {
		hooks = append(hooks, o.tracer.Step)
	}
	switch len(hooks) {
	case 0:
		return nil
	case 1:
		return hooks[0]
	}
	return func(ctx context.Context, s wasm.StepInfo) func(error) {
		a, b := hooks[0](ctx, s), hooks[1](ctx, s)
		return func(err error) { b(err); a(err) }
	}
}

// governor observes g's evaluations.
func (o observers) governor(g policy.Governor) policy.Governor {
	if o.metrics != nil {
		g = policy.Observed(g, o.metrics.Evaluate)
	}
	if o.tracer != nil {
		g = policy.Observed(g, o.tracer.Evaluate)
	}
	return g
}

// storeHooks observe commits (traces) and synced groups (metrics).
func (o observers) storeHooks() store.Hooks {
	var h store.Hooks
	if o.metrics != nil {
		h.Group = o.metrics.StoreGroup
	}
	if o.tracer != nil {
		h.Commit = o.tracer.Commit
	}
	return h
}

// interceptors wrap every RPC: the trace span outermost, then metrics.
func (o observers) interceptors() ([]connect.Interceptor, error) {
	var out []connect.Interceptor
	if o.tracer != nil {
		tr, err := o.tracer.Interceptors()
		if err != nil {
			return nil, err
		}
		out = append(out, tr...)
	}
	if o.metrics != nil {
		out = append(out, o.metrics.Interceptor())
	}
	return out, nil
}

// fanOut tells every observer of Send outcomes; nil ones are skipped, and
// with none the kernel gets nil and pays nothing.
func fanOut(observers ...func(kernel.Outcome)) func(kernel.Outcome) {
	var all []func(kernel.Outcome)
	for _, f := range observers {
		if f != nil {
			all = append(all, f)
		}
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return func(o kernel.Outcome) {
		for _, f := range all {
			f(o)
		}
	}
}

// metricSources are what the metrics read when scraped.
func (s *Server) metricSources(registry *modes.Registry) metrics.Sources {
	return metrics.Sources{
		SessionStates: s.sessionStates,
		Pools: func() []wasm.Pool {
			var pools []wasm.Pool
			for _, e := range []*wasm.Engine{s.engine, s.sandbox} {
				if e != nil {
					pools = append(pools, e.Pools()...)
				}
			}
			return pools
		},
		StoreSize: s.storeSize,
		KnownMode: func(name string) bool {
			if _, _, err := registry.Lookup(name); err == nil {
				return true
			}
			// A mode no longer served may still run pinned sessions.
			for _, e := range []*wasm.Engine{s.engine, s.sandbox} {
				if e == nil {
					continue
				}
				for _, p := range e.Pools() {
					if p.Mode == name {
						return true
					}
				}
			}
			return false
		},
		Logger: s.log,
	}
}

// sessionStates counts the sessions in each state, paging through all of
// them as an operator.
func (s *Server) sessionStates(ctx context.Context) (map[macpv1.SessionState]int, error) {
	if s.kernel == nil {
		return nil, nil
	}
	view := s.kernel.As(access.Operator("metrics"))
	counts := map[macpv1.SessionState]int{}
	token := ""
	for {
		page, next, err := view.ListSessions(ctx, kernel.SessionFilter{}, kernel.MaxPageSize, token)
		if err != nil {
			return nil, fmt.Errorf("server: count sessions: %w", err)
		}
		for _, md := range page {
			counts[md.GetState()]++
		}
		if next == "" {
			return counts, nil
		}
		token = next
	}
}

// withMetrics serves the metrics at GET /metrics beside the API.
func withMetrics(api http.Handler, m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.Path, m.Handler())
	mux.Handle("/", api)
	return mux
}

// listenMetrics binds the metrics address, so that a bad one fails New;
// Serve serves it.
func (s *Server) listenMetrics() error {
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("server: listen for metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.Path, s.metrics.Handler())
	s.metricsLn = ln
	s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// serveMetrics serves the metrics on their own listener until Shutdown.
func (s *Server) serveMetrics() {
	s.log.Info("serving metrics", "addr", s.metricsLn.Addr().String(), "path", metrics.Path)
	go func() {
		if err := s.metricsHTTP.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	}()
}

// MetricsAddr is the address of the metrics' own listener; "" when metrics
// are served on the API's port or not at all.
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// observeMetrics is the metrics' Send observer, nil without metrics.
func (s *Server) observeMetrics() func(kernel.Outcome) {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.Observe
}
