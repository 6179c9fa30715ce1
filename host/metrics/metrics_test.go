package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/metrics"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// A stream whose reader lags is counted as a drop, and the open-stream
// gauge goes back to zero when it ends.
func TestInterceptorCountsLaggingDrops(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	const procedure = "/test.v1.Test/Watch"
	mux := http.NewServeMux()
	mux.Handle(procedure, connect.NewServerStreamHandler(procedure,
		func(ctx context.Context, _ *connect.Request[macpv1.WatchSignalsRequest], stream *connect.ServerStream[macpv1.WatchSignalsResponse]) error {
			if err := stream.Send(&macpv1.WatchSignalsResponse{}); err != nil {
				return err
			}
			return connect.NewError(connect.CodeResourceExhausted, kernel.ErrLagging)
		}, connect.WithInterceptors(m.Interceptor())))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := connect.NewClient[macpv1.WatchSignalsRequest, macpv1.WatchSignalsResponse](srv.Client(), srv.URL+procedure)
	for range 2 {
		stream, err := client.CallServerStream(context.Background(), connect.NewRequest(&macpv1.WatchSignalsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		for stream.Receive() {
		}
		if connect.CodeOf(stream.Err()) != connect.CodeResourceExhausted {
			t.Fatalf("stream ended with %v", stream.Err())
		}
		_ = stream.Close()
	}
	want := `
# HELP concord_stream_lagging_drops_total Streams ended because their reader fell too far behind, by procedure.
# TYPE concord_stream_lagging_drops_total counter
concord_stream_lagging_drops_total{procedure="/test.v1.Test/Watch"} 2
# HELP concord_stream_subscribers Streaming RPCs open now, by procedure.
# TYPE concord_stream_subscribers gauge
concord_stream_subscribers{procedure="/test.v1.Test/Watch"} 0
# HELP concord_rpc_requests_total RPCs handled, by procedure and status code.
# TYPE concord_rpc_requests_total counter
concord_rpc_requests_total{code="resource_exhausted",procedure="/test.v1.Test/Watch"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"concord_stream_lagging_drops_total", "concord_stream_subscribers", "concord_rpc_requests_total"); err != nil {
		t.Fatal(err)
	}
}

// Labels stay bounded whatever a client sends.
func TestObserveBoundsLabels(t *testing.T) {
	m := metrics.New(metrics.Sources{KnownMode: func(mode string) bool { return mode == "macp.mode.decision.v1" }})
	m.Observe(kernel.Outcome{Mode: "macp.mode.decision.v1", MessageType: "Vote"})
	m.Observe(kernel.Outcome{Mode: "made-up-" + strings.Repeat("x", 100), MessageType: "Vote", Code: macperr.ModeNotSupported})
	m.Observe(kernel.Outcome{Mode: "", MessageType: "Signal", Code: macperr.Code("NOT_A_CODE")})
	m.Observe(kernel.Outcome{Mode: "macp.mode.decision.v1", MessageType: "Vote", Code: macperr.RateLimited})
	want := `
# HELP concord_envelopes_accepted_total Envelopes accepted (durable before the Ack), by mode.
# TYPE concord_envelopes_accepted_total counter
concord_envelopes_accepted_total{mode="macp.mode.decision.v1"} 1
# HELP concord_envelopes_rejected_total Envelopes rejected, by mode and MACP error code.
# TYPE concord_envelopes_rejected_total counter
concord_envelopes_rejected_total{code="MODE_NOT_SUPPORTED",mode="other"} 1
concord_envelopes_rejected_total{code="RATE_LIMITED",mode="macp.mode.decision.v1"} 1
concord_envelopes_rejected_total{code="UNKNOWN",mode="none"} 1
# HELP concord_rate_limited_total Envelopes refused RATE_LIMITED, by kind (session_start or message).
# TYPE concord_rate_limited_total counter
concord_rate_limited_total{kind="message"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"concord_envelopes_accepted_total", "concord_envelopes_rejected_total", "concord_rate_limited_total"); err != nil {
		t.Fatal(err)
	}
}
