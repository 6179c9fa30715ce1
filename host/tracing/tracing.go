// Package tracing gives Concord its OpenTelemetry traces: one server span
// per RPC (connectrpc.com/otelconnect, honouring a client's traceparent),
// with child spans for the mode step, each policy decision and the store
// commit, made through the hooks of the layers below. The TracerProvider
// is passed in, never taken from OpenTelemetry's globals; NewProvider
// builds one that exports over OTLP/HTTP.
package tracing

import (
	"context"
	"fmt"
	"net/url"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/concord-macp/concord/host/wasm"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// instrumentation names Concord's own spans.
const instrumentation = "github.com/concord-macp/concord"

// Span names of the child spans.
const (
	SpanStep      = "concord.mode.step"
	SpanAuthorize = "concord.policy.authorize"
	SpanGovern    = "concord.policy.govern"
	SpanCommit    = "concord.store.commit"
)

// NewProvider returns a TracerProvider that batches spans and exports them
// over OTLP/HTTP to endpoint, a URL such as http://127.0.0.1:4318 (the
// collector's OTLP/HTTP port; the path defaults to /v1/traces). Shut it
// down to flush the last spans.
func NewProvider(ctx context.Context, endpoint, serviceVersion string) (*sdktrace.TracerProvider, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: OTLP endpoint %q is not an http(s) URL such as http://127.0.0.1:4318", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "concord"),
		attribute.String("service.version", serviceVersion),
	)
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)), nil
}

// Tracer makes Concord's spans with one TracerProvider.
type Tracer struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

// New returns a Tracer that makes spans with tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{tp: tp, tracer: tp.Tracer(instrumentation)}
}

// Interceptors start a server span for every RPC, trusting a client's W3C
// traceparent as its parent, and name the session and message a unary
// request is about on it. Install them in this order, outside the others.
func (t *Tracer) Interceptors() ([]connect.Interceptor, error) {
	i, err := otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(t.tp),
		otelconnect.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: RPC interceptor: %w", err)
	}
	return []connect.Interceptor{i, annotator{}}, nil
}

// annotator puts the ids a unary request names on its RPC span, so that
// a message's trace can be found by its session or message id.
type annotator struct{}

// maxIDAttr bounds the length of an id copied from a request.
const maxIDAttr = 128

func (annotator) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if span := trace.SpanFromContext(ctx); span.IsRecording() && !req.Spec().IsClient {
			span.SetAttributes(requestAttributes(req.Any())...)
		}
		return next(ctx, req)
	}
}

func (annotator) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (annotator) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func requestAttributes(msg any) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	add := func(key, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(key, truncate(v)))
		}
	}
	if r, ok := msg.(interface{ GetEnvelope() *macpv1.Envelope }); ok {
		env := r.GetEnvelope()
		add("macp.session_id", env.GetSessionId())
		add("macp.message_id", env.GetMessageId())
		add("macp.message_type", env.GetMessageType())
		add("macp.mode", env.GetMode())
	} else if r, ok := msg.(interface{ GetSessionId() string }); ok {
		add("macp.session_id", r.GetSessionId())
	}
	return attrs
}

func truncate(s string) string {
	if len(s) > maxIDAttr {
		return s[:maxIDAttr]
	}
	return s
}

// Step makes the span of one mode step (wasm.Options.StepHook).
func (t *Tracer) Step(ctx context.Context, s wasm.StepInfo) func(error) {
	engine := "trusted"
	if s.Sandboxed {
		engine = "sandboxed"
	}
	_, span := t.tracer.Start(ctx, SpanStep, trace.WithAttributes(
		attribute.String("concord.mode", s.Mode),
		attribute.String("concord.module.digest", s.Digest),
		attribute.String("concord.module.engine", engine),
	))
	return func(err error) { end(span, err) }
}

// Evaluate makes the span of one policy decision (policy.Observed).
func (t *Tracer) Evaluate(ctx context.Context, e policy.Evaluation) func(policy.Outcome) {
	name := SpanGovern
	if e.Kind == "authorize" {
		name = SpanAuthorize
	}
	_, span := t.tracer.Start(ctx, name, trace.WithAttributes(
		attribute.String("concord.policy.id", e.PolicyID),
		attribute.String("concord.mode", e.Mode),
	))
	return func(o policy.Outcome) {
		span.SetAttributes(attribute.String("concord.policy.outcome", string(o)))
		if o == policy.Failed {
			span.SetStatus(codes.Error, "the policy could not be evaluated")
		}
		span.End()
	}
}

// Commit makes the span of one store commit, from queued to durable
// (store.Hooks.Commit).
func (t *Tracer) Commit(ctx context.Context) func(error) {
	_, span := t.tracer.Start(ctx, SpanCommit)
	return func(err error) { end(span, err) }
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
