package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/host/tracing"
	"github.com/concord-macp/concord/internal/servertest"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// observedSession runs one Decision session with one duplicate, one
// rejection by the mode and one rate-limited SessionStart, and returns the
// session id.
func observedSession(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	sid := servertest.NewSessionID()
	mustOK := func(who string, env *macpv1.Envelope) *macpv1.Ack {
		t.Helper()
		ack := srv.Send(t, who, env)
		if !ack.GetOk() {
			t.Fatalf("%s %s: %v", who, env.GetMessageType(), ack.GetError())
		}
		return ack
	}
	mustOK("coordinator", servertest.Envelope(decisionMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
		Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000}))
	mustOK("alice", servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "go"}))
	vote := servertest.Envelope(decisionMode, "Vote", "m2", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"})
	mustOK("alice", vote)
	if ack := mustOK("alice", vote); !ack.GetDuplicate() {
		t.Fatalf("retried vote not a duplicate: %v", ack)
	}
	// A vote on a proposal that does not exist: the mode refuses it.
	if ack := srv.Send(t, "alice", servertest.Envelope(decisionMode, "Vote", "m3", sid, &decisionv1.VotePayload{ProposalId: "p9", Vote: "APPROVE"})); ack.GetOk() {
		t.Fatalf("vote on an unknown proposal accepted")
	}
	mustOK("coordinator", servertest.Envelope(decisionMode, "Commitment", "m4", sid, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "s", Reason: "r", ModeVersion: "1.0.0",
		ConfigurationVersion: "c", OutcomePositive: true}))
	// The coordinator's second SessionStart of the minute is refused.
	if ack := srv.Send(t, "coordinator", servertest.Envelope(decisionMode, "SessionStart", "m0", servertest.NewSessionID(), &macpv1.SessionStartPayload{
		Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000})); ack.GetError().GetCode() != "RATE_LIMITED" {
		t.Fatalf("second SessionStart: %v", ack)
	}
	// An envelope of a mode nobody serves is labelled "other".
	if ack := srv.Send(t, "bob", servertest.Envelope("ext.nothing.v1", "SessionStart", "x0", servertest.NewSessionID(), &macpv1.SessionStartPayload{
		Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000})); ack.GetError().GetCode() != "MODE_NOT_SUPPORTED" {
		t.Fatalf("unknown mode: %v", ack)
	}
	return sid
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return families
}

// value returns the value (a counter's, a gauge's, a histogram's count) of
// the series of family name with labels, and whether it exists.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// sum adds the values of every series of family name that has labels.
func sum(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var total float64
	f := families[name]
	for _, m := range f.GetMetric() {
		one := &dto.MetricFamily{Name: f.Name, Type: f.Type, Metric: []*dto.Metric{m}}
		if v, ok := value(map[string]*dto.MetricFamily{name: one}, name, labels); ok {
			total += v
		}
	}
	return total
}

func TestMetricsAfterASession(t *testing.T) {
	// Another observer of Send outcomes (the admin UI's) hears them too.
	var outcomes atomic.Int64
	srv := servertest.Start(t, server.Config{Metrics: true, Limits: limits.Options{StartsPerMinute: 1},
		Observe: func(kernel.Outcome) { outcomes.Add(1) }})
	observedSession(t, srv)
	if n := outcomes.Load(); n != 8 {
		t.Errorf("the second observer heard %d outcomes, want 8", n)
	}

	// A watch open while scraping counts as a stream subscriber.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := srv.Client(servertest.GRPC, "alice").WatchSessions(ctx, connect.NewRequest(&macpv1.WatchSessionsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !watch.Receive() { // the listing's CREATED of alice's session
		t.Fatalf("watch: %v", watch.Err())
	}

	fams := scrape(t, srv.URL+"/metrics")
	const send = "/macp.v1.MACPRuntimeService/Send"
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		// 8 Sends in all, every one answered with an Ack.
		{"concord_rpc_requests_total", map[string]string{"procedure": send, "code": "ok"}, 8},
		{"concord_rpc_duration_seconds", map[string]string{"procedure": send, "code": "ok"}, 8},
		{"concord_envelopes_accepted_total", map[string]string{"mode": decisionMode}, 4},
		{"concord_envelopes_duplicate_total", map[string]string{"mode": decisionMode}, 1},
		{"concord_envelopes_rejected_total", map[string]string{"mode": decisionMode, "code": "INVALID_ENVELOPE"}, 1},
		{"concord_envelopes_rejected_total", map[string]string{"mode": decisionMode, "code": "RATE_LIMITED"}, 1},
		{"concord_envelopes_rejected_total", map[string]string{"mode": "other", "code": "MODE_NOT_SUPPORTED"}, 1},
		{"concord_rate_limited_total", map[string]string{"kind": "session_start"}, 1},
		// SessionStart, Proposal, Vote, the refused Vote and the Commitment.
		{"concord_wasm_step_duration_seconds", map[string]string{"mode": decisionMode, "engine": "trusted"}, 5},
		{"concord_policy_evaluation_duration_seconds", map[string]string{"kind": "authorize", "policy": "policy.default", "outcome": "allow"}, 1},
		{"concord_policy_evaluation_duration_seconds", map[string]string{"kind": "govern", "policy": "policy.default", "outcome": "allow"}, 1},
		{"concord_sessions", map[string]string{"state": "resolved"}, 1},
		{"concord_sessions", map[string]string{"state": "open"}, 0},
		{"concord_stream_subscribers", map[string]string{"procedure": "/macp.v1.MACPRuntimeService/WatchSessions"}, 1},
	}
	for _, c := range checks {
		got, ok := value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %t), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// Every accepted envelope is one commit of the store, whatever the
	// grouping.
	if f := fams["concord_store_fsync_group_commits"]; f == nil || f.GetMetric()[0].GetHistogram().GetSampleSum() != 4 {
		t.Errorf("store group commits: %v", f)
	}
	if n := sum(fams, "concord_store_commit_duration_seconds", nil); n < 1 || n > 4 {
		t.Errorf("store commits timed: %v, want 1 to 4 groups", n)
	}
	if n := sum(fams, "concord_wasm_pool_instances", map[string]string{"mode": decisionMode}); n < 1 {
		t.Errorf("decision pool has %v instances", n)
	}
	if n, _ := value(fams, "concord_store_size_bytes", map[string]string{"part": "vlog"}); n <= 0 {
		t.Errorf("store value log is %v bytes", n)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "-4") && len(l.GetValue()) == 36 {
					t.Errorf("%s has a session id as a label: %v", name, m)
				}
			}
		}
	}
	cancel()
}

func TestMetricsOnTheirOwnAddress(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true, Metrics: true, MetricsAddr: "127.0.0.1:0"})
	addr := srv.Server().MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics address")
	}
	fams := scrape(t, "http://"+addr+"/metrics")
	if _, ok := fams["concord_sessions"]; !ok {
		t.Fatal("metrics listener lacks concord_sessions")
	}
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the API port with --metrics-addr: %s", res.Status)
	}
}

func TestTraceOfACommitment(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	srv := servertest.Start(t, server.Config{Memory: true, TracerProvider: tp})

	sid := servertest.NewSessionID()
	for _, m := range []struct {
		who string
		env *macpv1.Envelope
	}{
		{"coordinator", servertest.Envelope(decisionMode, "SessionStart", "m0", sid, &macpv1.SessionStartPayload{
			Participants: []string{"alice"}, ModeVersion: "1.0.0", ConfigurationVersion: "c", TtlMs: 60_000})},
		{"alice", servertest.Envelope(decisionMode, "Proposal", "m1", sid, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "go"})},
		{"alice", servertest.Envelope(decisionMode, "Vote", "m2", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"})},
	} {
		if ack := srv.Send(t, m.who, m.env); !ack.GetOk() {
			t.Fatalf("%s: %v", m.env.GetMessageType(), ack.GetError())
		}
	}
	// The Commitment comes with the client's own trace context.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	req := connect.NewRequest(&macpv1.SendRequest{Envelope: servertest.Envelope(decisionMode, "Commitment", "m3", sid, &macpv1.CommitmentPayload{
		CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "s", Reason: "r", ModeVersion: "1.0.0",
		ConfigurationVersion: "c", OutcomePositive: true})})
	req.Header().Set("traceparent", "00-"+parent.TraceID().String()+"-"+parent.SpanID().String()+"-01")
	res, err := srv.Client(servertest.GRPC, "coordinator").Send(context.Background(), req)
	if err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("Commitment: %v %v", err, res)
	}

	// The RPC span ends as its handler returns, which may be just after
	// the client has its answer.
	var rpcSpan sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); rpcSpan == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == parent.TraceID() && s.Name() == "macp.v1.MACPRuntimeService/Send" {
				rpcSpan = s
			}
		}
	}
	if rpcSpan == nil {
		t.Fatal("no RPC span in the client's trace")
	}
	if rpcSpan.Parent().SpanID() != parent.SpanID() || rpcSpan.SpanKind() != trace.SpanKindServer {
		t.Fatalf("RPC span's parent %v kind %v, want the client's %v", rpcSpan.Parent().SpanID(), rpcSpan.SpanKind(), parent.SpanID())
	}
	attrs := map[string]string{}
	for _, a := range rpcSpan.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["macp.session_id"] != sid || attrs["macp.message_id"] != "m3" || attrs["macp.message_type"] != "Commitment" {
		t.Fatalf("RPC span attributes %v", attrs)
	}
	children := map[string]int{}
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == rpcSpan.SpanContext().SpanID() {
			children[s.Name()]++
			if s.SpanContext().TraceID() != parent.TraceID() {
				t.Errorf("%s is in trace %v", s.Name(), s.SpanContext().TraceID())
			}
		}
	}
	want := map[string]int{tracing.SpanAuthorize: 1, tracing.SpanStep: 1, tracing.SpanGovern: 1, tracing.SpanCommit: 1}
	for name, n := range want {
		if children[name] != n {
			t.Errorf("the RPC span has %d %s children, want %d (children: %v)", children[name], name, n, children)
		}
	}
	if len(children) != len(want) {
		t.Errorf("children %v, want %v", children, want)
	}
}
