package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	coltracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// TestServeExportsMetricsAndTraces runs `concord serve` with
// --metrics-addr and --otlp-endpoint (an in-process OTLP/HTTP receiver)
// and checks that the metrics are served there and the RPC's span is
// exported by the time serve exits.
func TestServeExportsMetricsAndTraces(t *testing.T) {
	var (
		mu    sync.Mutex
		spans []string
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var export coltracev1.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &export) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range export.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					spans = append(spans, s.GetName())
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer receiver.Close()

	addr, metricsAddr := freeAddr(t), freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		cache := filepath.Join(os.TempDir(), "concord-test-wasm-cache")
		done <- run(ctx, []string{"serve", "--addr", addr, "--memory", "--dev", "--wasm-cache-dir", cache,
			"--metrics-addr", metricsAddr, "--otlp-endpoint", receiver.URL}, &logs, &logs)
	}()
	client := macpv1connect.NewMACPRuntimeServiceClient(servertest.H2CClient(), "http://"+addr, connect.WithGRPC())
	var err error
	for range 600 {
		_, err = client.Initialize(context.Background(), connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("server never answered: %v\n%s", err, logs.String())
	}
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `concord_rpc_requests_total{code="ok",procedure="/macp.v1.MACPRuntimeService/Initialize"} 1`) {
		t.Fatalf("metrics: %s\n%s", res.Status, body)
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, s := range spans {
		found = found || s == "macp.v1.MACPRuntimeService/Initialize"
	}
	if !found {
		t.Fatalf("exported spans %v lack the Initialize RPC\n%s", spans, logs.String())
	}
}
