package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/metrics"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/host/tracing"
	"github.com/concord-macp/concord/host/wasm"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// BenchmarkObservationPerSend measures the CPU the observation adds to
// one Send that steps a mode and commits once: the RPC interceptors, the
// step hook, the commit and group hooks and the outcome. It is the
// steady part of what BenchmarkSendLoadObserved compares, without the
// noise of a whole server on a shared machine.
func BenchmarkObservationPerSend(b *testing.B) {
	tp := sdktrace.NewTracerProvider() // records every span, exports none
	defer func() { _ = tp.Shutdown(context.Background()) }()
	variants := []struct {
		name string
		obs  observers
	}{
		{"metrics", observers{metrics: metrics.New(metrics.Sources{KnownMode: func(string) bool { return true }})}},
		{"metrics+traces", observers{metrics: metrics.New(metrics.Sources{KnownMode: func(string) bool { return true }}), tracer: tracing.New(tp)}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			step, hooks, observe := v.obs.stepHook(), v.obs.storeHooks(), fanOut(v.obs.metrics.Observe)
			interceptors, err := v.obs.interceptors()
			if err != nil {
				b.Fatal(err)
			}
			send := connect.UnaryFunc(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				step(ctx, wasm.StepInfo{Digest: "d", Mode: "macp.mode.decision.v1"})(nil)
				if hooks.Commit != nil {
					hooks.Commit(ctx)(nil)
				}
				hooks.Group(store.GroupStats{Commits: 1, Entries: 1, Bytes: 300, Duration: time.Millisecond})
				observe(kernel.Outcome{Mode: "macp.mode.decision.v1", MessageType: "Evaluation", State: macpv1.SessionState_SESSION_STATE_OPEN})
				return connect.NewResponse(&macpv1.SendResponse{}), nil
			})
			for i := len(interceptors) - 1; i >= 0; i-- {
				send = interceptors[i].WrapUnary(send)
			}
			req := connect.NewRequest(&macpv1.SendRequest{Envelope: &macpv1.Envelope{SessionId: "s", MessageId: "m", MessageType: "Evaluation", Mode: "macp.mode.decision.v1"}})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := send(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
