// Package server assembles a Concord server from its parts — the Badger
// store, the wazero engine with the built-in modes, the policy governor, the
// kernel and the API handler — and serves it on a listener over h2c or TLS.
// cmd/concord and the integration tests both build servers here.
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/concord-macp/concord/host/audit"
	"go.opentelemetry.io/otel/trace"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/cluster"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/metrics"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/host/rpc"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/host/tracing"
	"github.com/concord-macp/concord/host/wasm"
	"github.com/concord-macp/concord/policy"
	"github.com/concord-macp/concord/ui"
	"github.com/concord-macp/concord/ui/stats"
)

// Config is everything a server needs to start.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:50051".
	Addr string
	// Listener, when set, is already listening on Addr: `concord serve`
	// listens before it opens the store and loads the modes, so that
	// clients connecting during start-up wait in the backlog instead of
	// being refused.
	Listener net.Listener
	// DataDir holds the Badger store and the Wasm compilation cache.
	DataDir string
	// Memory keeps the store in memory: nothing survives a restart.
	Memory bool
	// Dev enables development authentication (bearer token = sender). It
	// never combines with Auth.
	Dev bool
	// Auth configures real authentication: static tokens, JWT/OIDC and
	// client certificates (Auth.ClientCAFile needs TLS).
	Auth auth.Config
	// Insecure allows dev authentication or plaintext beyond loopback.
	Insecure bool
	// TLSCert and TLSKey enable TLS when both are set.
	TLSCert, TLSKey string
	// MaxPayloadBytes caps envelope payloads (default 1 MiB).
	MaxPayloadBytes int
	// WasmCacheDir is the compilation cache; default DataDir/wasm-cache, or
	// none for a memory server.
	WasmCacheDir string
	// AllowedOrigins restricts browser origins (CORS): exact origins, "*",
	// or wildcard subdomains ("https://*.example.com"); empty allows all.
	AllowedOrigins []string
	// AllowedHeaders are request headers browsers may send beyond those the
	// protocols, bearer tokens and tracing need.
	AllowedHeaders []string
	// ExampleDir, when set, is the built browser example (examples/web/dist),
	// served at ExamplePath for a demo.
	ExampleDir string
	// MaxModuleBytes caps an uploaded mode module (default 16 MiB).
	MaxModuleBytes int
	// SweepInterval is how often expired sessions are swept (default 1s).
	SweepInterval time.Duration
	// Limits rate-limits each identity and caps its open sessions
	// (RATE_LIMITED); the zero value sets no limits.
	Limits limits.Options
	// UI configures the admin console under /ui/ (see UIConfig).
	UI UIConfig
	// Metrics collects Prometheus metrics and serves them at GET /metrics,
	// on MetricsAddr when that is set, else on Addr.
	Metrics     bool
	MetricsAddr string
	// TracerProvider, when set, gets a span per RPC with child spans for
	// the mode step, the policy decisions and the store commit; nil makes
	// no spans.
	TracerProvider trace.TracerProvider
	// Observe, when set, is told the outcome of every Send as well (the
	// admin UI's overview).
	Observe func(kernel.Outcome)
	// PolicyUploads bound the compiling and testing of uploaded Rego
	// policies (PushPolicy); zero fields take policy's defaults.
	PolicyUploads policy.UploadLimits
	// DiskSpace measures the data directory's filesystem for the store's
	// full-disk guard; nil uses statfs. Tests that cannot mount a small
	// filesystem pass a simulated one.
	DiskSpace store.SpaceFunc
	// Cluster, when set, makes this server one node of a Concord cluster on
	// NATS JetStream: the store is the cluster's (DataDir keeps the Wasm
	// cache and an embedded NATS server's files), and each open session is
	// served by the node that holds its lease.
	Cluster *cluster.Config
	// Now overrides the clock (tests).
	Now     func() time.Time
	Logger  *slog.Logger
	Version string
}

// Server is a running Concord server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store storage.Store
	// badger is the store when it is Badger (not a cluster).
	badger *store.Store
	// node is this server's cluster node, when it is one.
	node   *cluster.Node
	engine *wasm.Engine
	// sandbox runs uploaded modules.
	sandbox *wasm.Engine
	kernel  *kernel.Kernel
	modes   *modes.Registry
	policy  *policy.Engine
	console *ui.Handler
	// trail is the audit trail of governance actions.
	trail *audit.Log
	http  *http.Server
	// authn is the resolver chain when Auth is configured.
	authn *auth.Chain
	// certs serves the TLS certificate when TLS is on.
	certs *certificates
	// metrics is nil unless Config.Metrics; metricsHTTP serves them on
	// Config.MetricsAddr.
	metrics     *metrics.Metrics
	metricsHTTP *http.Server
	metricsLn   net.Listener
	// governor serves replays of exported sessions.
	governor policy.Governor
	// streamsDone closes at shutdown to end long-lived streams.
	streamsDone chan struct{}
	closeOnce   sync.Once
}

// New opens the store, loads the built-in modes, restores every session and
// prepares the API. It does not listen yet, except on Config.MetricsAddr.
func New(ctx context.Context, cfg Config) (srv *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = kernel.DefaultMaxPayloadBytes
	}
	if err := checkExposure(cfg); err != nil {
		return nil, err
	}
	browserAccess := rpc.CORS{Origins: cfg.AllowedOrigins, Headers: cfg.AllowedHeaders}
	if err := browserAccess.Validate(); err != nil {
		return nil, fmt.Errorf("server: CORS: %w", err)
	}
	var example http.Handler
	if cfg.ExampleDir != "" {
		if example, err = exampleFiles(cfg.ExampleDir); err != nil {
			return nil, err
		}
	}
	if cfg.Dev && cfg.Auth.Configured() {
		return nil, errors.New("server: dev authentication never combines with tokens, OIDC or client certificates: drop --dev (or --insecure's dev fallback)")
	}
	if cfg.Auth.ClientCAFile != "" && (cfg.TLSCert == "" || cfg.TLSKey == "") {
		return nil, errors.New("server: client-certificate authentication (--tls-client-ca) needs TLS (--tls-cert/--tls-key)")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, streamsDone: make(chan struct{})}
	defer func() {
		if err != nil {
			s.close(context.WithoutCancel(ctx))
		}
	}()

	// Credentials and certificates first: a mistake there fails before
	// the store and the modes load.
	var authn auth.Authenticator = auth.Deny{}
	switch {
	case cfg.Dev:
		authn = auth.Dev{}
	case cfg.Auth.Configured():
		s.authn, err = auth.New(ctx, cfg.Auth, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		authn = s.authn
	default:
		cfg.Logger.Warn("no authentication configured: every call that needs an identity is refused; configure tokens or OIDC, or use --dev on loopback")
	}
	if s.tlsEnabled() {
		s.certs, err = loadCertificates(cfg.TLSCert, cfg.TLSKey, cfg.Auth.PollInterval, cfg.Logger)
		if err != nil {
			return nil, err
		}
	}

	if !cfg.Memory {
		if cfg.DataDir == "" {
			return nil, errors.New("server: a data directory is required unless the store is in memory")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("server: create data dir: %w", err)
		}
		if cfg.WasmCacheDir == "" {
			cfg.WasmCacheDir = filepath.Join(cfg.DataDir, "wasm-cache")
		}
	}
	var obs observers
	if cfg.TracerProvider != nil {
		obs.tracer = tracing.New(cfg.TracerProvider)
	}
	registry := modes.New()
	if cfg.Metrics {
		s.metrics = metrics.New(s.metricSources(registry))
		obs.metrics = s.metrics
	}
	if err := s.openStore(ctx, obs.storeHooks()); err != nil {
		return nil, err
	}
	s.engine, err = wasm.NewEngine(ctx, wasm.Options{CacheDir: cfg.WasmCacheDir, Logger: cfg.Logger, StepHook: obs.stepHook()})
	if err != nil {
		return nil, fmt.Errorf("server: start wasm engine: %w", err)
	}
	loader := modes.LoaderFunc(func(ctx context.Context, b []byte) (mode.Module, error) { return s.engine.Load(ctx, b) })
	if err := registry.LoadBuiltins(ctx, loader); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// Uploaded modules are untrusted: they run in a second engine whose
	// calls have a deadline and whose instances a runaway call closes.
	s.sandbox, err = wasm.NewEngine(ctx, wasm.Options{CacheDir: cfg.WasmCacheDir, Sandbox: true, Logger: cfg.Logger, StepHook: obs.stepHook()})
	if err != nil {
		return nil, fmt.Errorf("server: start sandbox engine: %w", err)
	}
	err = registry.EnableUploads(ctx, modes.Uploads{
		Store:          s.store,
		Loader:         modes.LoaderFunc(func(ctx context.Context, b []byte) (mode.Module, error) { return s.sandbox.Load(ctx, b) }),
		MaxModuleBytes: cfg.MaxModuleBytes,
		Now:            cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	policies, err := policy.NewRegistry(ctx, policy.RegistryOptions{Persister: policyStore{s.store}, Now: cfg.Now, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: policy registry: %w", err)
	}
	engine, err := policy.NewEngine(ctx, policy.EngineOptions{Registry: policies, Sources: policyStore{s.store}, Logger: cfg.Logger, Uploads: cfg.PolicyUploads})
	if err != nil {
		return nil, fmt.Errorf("server: policy engine: %w", err)
	}
	s.modes, s.policy, s.governor = registry, engine, engine
	consoleStats := stats.New(cfg.Now)
	if s.node != nil {
		// Every node serves the modes and policies any node registers.
		s.node.OnChange([]storage.Kind{storage.ModeBindings, storage.ModeDeclarations}, registry.Sync)
		s.node.OnChange([]storage.Kind{storage.Policies}, policies.Sync)
	}
	s.kernel, err = kernel.New(ctx, kernel.Options{
		Store:           s.store,
		Catalog:         registry,
		Governor:        obs.governor(engine),
		Logger:          cfg.Logger,
		Now:             cfg.Now,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		SweepInterval:   cfg.SweepInterval,
		Limits:          limits.New(cfg.Limits),
		Observe:         fanOut(s.observeMetrics(), consoleStats.Observe, cfg.Observe),
		Cluster:         s.clusterHooks(),
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.node != nil {
		if err := s.node.Attach(ctx, s.kernel); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	s.trail, err = audit.Open(ctx, s.store, audit.Options{Now: cfg.Now, Logger: cfg.Logger, Node: s.nodeName()})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	interceptors, err := obs.interceptors()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var handler http.Handler = rpc.NewHandler(rpc.Options{
		Kernel:          s.kernel,
		Modes:           registry,
		Policies:        policies,
		PolicyEngine:    engine,
		Authenticator:   authn,
		Logger:          cfg.Logger,
		Version:         cfg.Version,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		CORS:            browserAccess,
		Done:            s.streamsDone,
		AuthRecheck:     cfg.Auth.Recheck,
		Audit:           s.trail,
		Interceptors:    interceptors,
		Readiness:       s.readiness(),
	})
	if s.metrics != nil {
		if cfg.MetricsAddr == "" {
			handler = withMetrics(handler, s.metrics)
		} else if err := s.listenMetrics(); err != nil {
			return nil, err
		}
	}
	s.console, err = s.newConsole(ctx, consoleStats, policies)
	if err != nil {
		return nil, fmt.Errorf("server: admin console: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, s.console)
	mux.Handle("/", handler)
	handler = mux
	if example != nil {
		handler = withExample(handler, example)
	}
	if s.tlsEnabled() {
		handler = auth.WithTLSState(handler)
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.tlsEnabled() {
		protocols.SetHTTP2(true)
		var clientCAs func() *x509.CertPool
		if s.authn != nil && cfg.Auth.ClientCAFile != "" {
			clientCAs = s.authn.ClientCAs
		}
		s.http.TLSConfig = tlsConfig(s.certs, clientCAs)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	s.http.Protocols = protocols
	return s, nil
}

func (s *Server) tlsEnabled() bool { return s.cfg.TLSCert != "" && s.cfg.TLSKey != "" }

// Handler returns the server's API handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// StoreStats returns the Badger store's commit counters (zero for a
// cluster node).
func (s *Server) StoreStats() store.Stats {
	if s.badger == nil {
		return store.Stats{}
	}
	return s.badger.Stats()
}

// Node returns the server's cluster node, or nil when it is not one.
func (s *Server) Node() *cluster.Node { return s.node }

// Kernel returns the server's kernel.
func (s *Server) Kernel() *kernel.Kernel { return s.kernel }

// Serve accepts connections on ln until Shutdown. It returns nil after a
// graceful shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.metricsHTTP != nil {
		s.serveMetrics()
	}
	var err error
	if s.tlsEnabled() {
		err = s.http.ServeTLS(ln, "", "")
	} else {
		err = s.http.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ListenAndServe listens on the configured address (or serves on
// Config.Listener, when set) and serves.
func (s *Server) ListenAndServe() error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("server: listen: %w", err)
		}
	}
	scheme := "h2c"
	if s.tlsEnabled() {
		scheme = "TLS"
	}
	s.log.Info("concord serving MACP", "addr", ln.Addr().String(), "transport", scheme,
		"store", map[bool]string{true: "memory", false: s.cfg.DataDir}[s.cfg.Memory], "auth", s.authName())
	return s.Serve(ln)
}

// authName says how callers authenticate, for the startup log.
func (s *Server) authName() string {
	switch {
	case s.cfg.Dev:
		return "dev"
	case s.authn != nil:
		return strings.Join(s.authn.Resolvers(), ",")
	default:
		return "none"
	}
}

// Reload re-reads the tokens file, the client CA file and the TLS
// certificate (what SIGHUP does); whatever fails to load keeps its
// previous content and is reported.
func (s *Server) Reload() error {
	var errs []error
	if s.authn != nil {
		errs = append(errs, s.authn.Reload())
	}
	if s.certs != nil {
		errs = append(errs, s.certs.reload())
	}
	return errors.Join(errs...)
}

// Shutdown stops accepting calls, waits for those in flight (until ctx
// ends), then stops the kernel and flushes and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.streamsDone) })
	if s.metricsHTTP != nil {
		_ = s.metricsHTTP.Shutdown(ctx) // closes the listener, served or not
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("server: drain: %w", err)
		_ = s.http.Close()
	}
	return errors.Join(err, s.close(ctx))
}

// Halt stops the server the way a crash would, for failover tests:
// connections are cut without draining, and a cluster node releases no
// lease and stops its embedded NATS server at once.
func (s *Server) Halt() {
	s.closeOnce.Do(func() { close(s.streamsDone) })
	_ = s.http.Close()
	if s.node != nil {
		s.node.Halt()
		s.node = nil
	}
	_ = s.close(context.Background())
}

func (s *Server) close(ctx context.Context) error {
	var errs []error
	if s.authn != nil {
		s.authn.Close()
	}
	if s.certs != nil {
		s.certs.close()
	}
	if s.console != nil {
		s.console.Close()
	}
	if s.metricsLn != nil {
		_ = s.metricsLn.Close() // never served when New failed
	}
	if s.kernel != nil {
		s.kernel.Close()
	}
	if s.node != nil {
		s.node.Close() // releases its leases: the other nodes take over
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close(ctx))
	}
	if s.sandbox != nil {
		errs = append(errs, s.sandbox.Close(ctx))
	}
	if s.badger != nil {
		errs = append(errs, s.badger.Close())
	}
	return errors.Join(errs...)
}

// checkExposure refuses configurations that would expose development
// authentication or plaintext beyond this machine without --insecure.
func checkExposure(cfg Config) error {
	if cfg.Insecure || isLoopback(cfg.Addr) {
		return nil
	}
	if cfg.Dev {
		return fmt.Errorf("server: dev authentication only serves loopback addresses, not %q (pass --insecure to override)", cfg.Addr)
	}
	if cfg.TLSCert == "" || cfg.TLSKey == "" {
		return fmt.Errorf("server: plaintext on the non-loopback address %q needs TLS (--tls-cert/--tls-key) or --insecure", cfg.Addr)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openStore opens Badger, or joins the cluster and uses its store.
func (s *Server) openStore(ctx context.Context, hooks store.Hooks) error {
	if s.cfg.Cluster == nil {
		b, err := store.Open(ctx, store.Options{Dir: filepath.Join(s.cfg.DataDir, "badger"), InMemory: s.cfg.Memory, Logger: s.cfg.Logger, Hooks: hooks, Space: s.cfg.DiskSpace})
		if err != nil {
			return fmt.Errorf("server: open store: %w", err)
		}
		s.badger, s.store = b, b
		return nil
	}
	if s.cfg.Memory {
		return errors.New("server: a cluster node keeps its sessions in the cluster; --memory does not apply")
	}
	cc := *s.cfg.Cluster
	if cc.DataDir == "" {
		cc.DataDir = s.cfg.DataDir
	}
	if cc.Logger == nil {
		cc.Logger = s.cfg.Logger
	}
	node, err := cluster.Start(ctx, cc)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.node, s.store = node, node.Store()
	return nil
}

// clusterHooks is the kernel's view of the cluster, nil for one node.
func (s *Server) clusterHooks() kernel.Cluster {
	if s.node == nil {
		return nil
	}
	return s.node
}

// readiness is what health reports on: the Badger store's full-disk
// guard, nil (always ready) for a cluster node.
func (s *Server) readiness() rpc.Readiness {
	if s.badger == nil {
		return nil
	}
	return s.badger
}

// storeSize is the Badger store's size on disk (zero for a cluster node).
func (s *Server) storeSize() (lsm, vlog int64, err error) {
	if s.badger == nil {
		return 0, 0, nil
	}
	return s.badger.Size()
}

func (s *Server) nodeName() string {
	if s.node == nil {
		return ""
	}
	return s.node.Name()
}
