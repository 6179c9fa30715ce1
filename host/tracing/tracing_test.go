package tracing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/tracing"
	"github.com/concord-macp/concord/host/wasm"
)

// receiver is an in-process OTLP/HTTP trace receiver.
type receiver struct {
	mu    sync.Mutex
	names []string
	attrs map[string]string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var export coltracev1.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &export); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			r.attrs[a.GetKey()] = a.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.names = append(r.names, s.GetName())
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&coltracev1.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

func TestProviderExportsOverOTLP(t *testing.T) {
	rcv := &receiver{attrs: map[string]string{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	ctx := context.Background()
	tp, err := tracing.NewProvider(ctx, srv.URL, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	tr := tracing.New(tp)
	done := tr.Step(ctx, wasm.StepInfo{Digest: "abc", Mode: "macp.mode.decision.v1"})
	done(nil)
	if err := tp.Shutdown(ctx); err != nil { // flushes
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.names) != 1 || rcv.names[0] != tracing.SpanStep {
		t.Fatalf("receiver got spans %v", rcv.names)
	}
	if rcv.attrs["service.name"] != "concord" || rcv.attrs["service.version"] != "v-test" {
		t.Fatalf("resource %v", rcv.attrs)
	}
}

func TestProviderRefusesANonURL(t *testing.T) {
	for _, endpoint := range []string{"127.0.0.1:4318", "ftp://x", "http://", ":::"} {
		if _, err := tracing.NewProvider(context.Background(), endpoint, "v"); err == nil {
			t.Errorf("endpoint %q accepted", endpoint)
		}
	}
}
