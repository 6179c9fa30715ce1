// Package metrics exports Concord's Prometheus metrics: RPCs, envelopes by
// mode and error code, Wasm steps and instance pools, policy evaluations,
// store commits and size, sessions by state and live streams. It owns one
// registry per server (no global state) and plugs into the layers below
// through their hooks: the kernel's Observe, the engine's StepHook, the
// governor's EvalHook, the store's Hooks and a connect interceptor. Every
// label takes values from a bounded set; no session or message id is ever
// a label.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/host/wasm"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Label values used when the real value is not from a bounded set.
const (
	// OtherMode stands for a mode the server does not serve (a client may
	// send any string).
	OtherMode = "other"
	// NoMode stands for an envelope without a mode (ambient signals).
	NoMode = "none"
	// UnknownCode stands for an error code outside the MACP registry.
	UnknownCode = "UNKNOWN"
)

// Sources are read at scrape time. Every field is optional.
type Sources struct {
	// SessionStates counts the sessions in each state.
	SessionStates func(ctx context.Context) (map[macpv1.SessionState]int, error)
	// Pools describes the instance pools of the Wasm engines.
	Pools func() []wasm.Pool
	// StoreSize reports the store's size on disk.
	StoreSize func() (lsm, vlog int64, err error)
	// KnownMode reports whether a mode is served; other modes are labelled
	// OtherMode. Nil labels every mode OtherMode.
	KnownMode func(mode string) bool
	// Logger receives scrape errors.
	Logger *slog.Logger
}

// Metrics is one server's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	src Sources

	rpcRequests  *prometheus.CounterVec
	rpcDuration  *prometheus.HistogramVec
	streams      *prometheus.GaugeVec
	streamDrops  *prometheus.CounterVec
	accepted     *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
	stepFailures *prometheus.CounterVec
	evalDuration *prometheus.HistogramVec
	commitTime   prometheus.Histogram
	groupSize    prometheus.Histogram
	commitFails  prometheus.Counter
}

// Buckets, in seconds. Wasm steps take microseconds, policy evaluations
// tens of microseconds, synced commits around a millisecond.
var (
	stepBuckets   = prometheus.ExponentialBuckets(5e-6, 4, 10)     // 5 µs … 1.3 s
	evalBuckets   = prometheus.ExponentialBuckets(10e-6, 4, 9)     // 10 µs … 0.65 s
	commitBuckets = prometheus.ExponentialBuckets(100e-6, 2.5, 10) // 0.1 ms … 0.38 s
	rpcBuckets    = prometheus.ExponentialBuckets(250e-6, 4, 9)    // 0.25 ms … 16 s
	groupBuckets  = prometheus.ExponentialBuckets(1, 2, 11)        // 1 … 1024 commits
)

// New builds the metrics and registers them, with the Go runtime's and the
// process's, in a registry of their own.
func New(src Sources) *Metrics {
	if src.Logger == nil {
		src.Logger = slog.Default()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		src: src,
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rpc_requests_total", Help: "RPCs handled, by procedure and status code.",
		}, []string{"procedure", "code"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "concord_rpc_duration_seconds", Help: "Time to handle an RPC (the whole stream for streaming RPCs), by procedure and status code.",
			Buckets: rpcBuckets,
		}, []string{"procedure", "code"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "concord_stream_subscribers", Help: "Streaming RPCs open now, by procedure.",
		}, []string{"procedure"}),
		streamDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_stream_lagging_drops_total", Help: "Streams ended because their reader fell too far behind, by procedure.",
		}, []string{"procedure"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_envelopes_accepted_total", Help: "Envelopes accepted (durable before the Ack), by mode.",
		}, []string{"mode"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_envelopes_duplicate_total", Help: "Retried envelopes answered as duplicates, by mode.",
		}, []string{"mode"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_envelopes_rejected_total", Help: "Envelopes rejected, by mode and MACP error code.",
		}, []string{"mode", "code"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_rate_limited_total", Help: "Envelopes refused RATE_LIMITED, by kind (session_start or message).",
		}, []string{"kind"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "concord_wasm_step_duration_seconds", Help: "Time of one mode step in its Wasm module, by mode, module digest and engine (trusted or sandboxed).",
			Buckets: stepBuckets,
		}, []string{"mode", "digest", "engine"}),
		stepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "concord_wasm_step_failures_total", Help: "Mode steps that failed in the module (trap, timeout, memory, ABI), by mode, digest and engine.",
		}, []string{"mode", "digest", "engine"}),
		evalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "concord_policy_evaluation_duration_seconds", Help: "Time of one policy evaluation, by kind (authorize or govern), policy version and outcome (allow, deny, error).",
			Buckets: evalBuckets,
		}, []string{"kind", "policy", "outcome"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_store_commit_duration_seconds", Help: "Time to commit and fsync one store transaction (a group of commits).",
			Buckets: commitBuckets,
		}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "concord_store_fsync_group_commits", Help: "Commits carried by one synced store transaction.",
			Buckets: groupBuckets,
		}),
		commitFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "concord_store_commit_failures_total", Help: "Store transactions that failed (the store then refuses writes).",
		}),
	}
	m.reg.MustRegister(m.rpcRequests, m.rpcDuration, m.streams, m.streamDrops,
		m.accepted, m.duplicates, m.rejected, m.rateLimited,
		m.stepDuration, m.stepFailures, m.evalDuration,
		m.commitTime, m.groupSize, m.commitFails,
		scrapeCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(m.src.Logger.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true,
	})
}

// Registry returns the registry the metrics are in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe counts one Send outcome (kernel.Options.Observe).
func (m *Metrics) Observe(o kernel.Outcome) {
	mode := m.modeLabel(o.Mode)
	switch {
	case o.Code != "":
		m.rejected.WithLabelValues(mode, codeLabel(o.Code)).Inc()
		if o.Code == macperr.RateLimited {
			kind := "message"
			if o.MessageType == "SessionStart" {
				kind = "session_start"
			}
			m.rateLimited.WithLabelValues(kind).Inc()
		}
	case o.Duplicate:
		m.duplicates.WithLabelValues(mode).Inc()
	default:
		m.accepted.WithLabelValues(mode).Inc()
	}
}

// Step times one mode step (wasm.Options.StepHook).
func (m *Metrics) Step(_ context.Context, s wasm.StepInfo) func(error) {
	began := time.Now()
	return func(err error) {
		labels := []string{s.Mode, s.Digest, engineLabel(s.Sandboxed)}
		m.stepDuration.WithLabelValues(labels...).Observe(time.Since(began).Seconds())
		if err != nil {
			m.stepFailures.WithLabelValues(labels...).Inc()
		}
	}
}

// Evaluate times one policy evaluation (policy.Observed).
func (m *Metrics) Evaluate(_ context.Context, e policy.Evaluation) func(policy.Outcome) {
	began := time.Now()
	return func(o policy.Outcome) {
		m.evalDuration.WithLabelValues(e.Kind, e.PolicyID, string(o)).Observe(time.Since(began).Seconds())
	}
}

// StoreGroup records one synced store transaction (store.Hooks.Group).
func (m *Metrics) StoreGroup(g store.GroupStats) {
	if g.Err != nil {
		m.commitFails.Inc()
		return
	}
	m.commitTime.Observe(g.Duration.Seconds())
	m.groupSize.Observe(float64(g.Commits))
}

func (m *Metrics) modeLabel(mode string) string {
	switch {
	case mode == "":
		return NoMode
	case m.src.KnownMode != nil && m.src.KnownMode(mode):
		return mode
	}
	return OtherMode
}

func codeLabel(c macperr.Code) string {
	if c.Known() {
		return string(c)
	}
	return UnknownCode
}

func engineLabel(sandboxed bool) string {
	if sandboxed {
		return "sandboxed"
	}
	return "trusted"
}
