// Package server assembles a Concord server from its parts — the Badger
// store, the wazero engine with the built-in modes, the policy governor, the
// kernel and the API handler — and serves it on a listener over h2c or TLS.
// cmd/concord and the integration tests both build servers here.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/modes"
	"github.com/concord-macp/concord/host/rpc"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/host/wasm"
	"github.com/concord-macp/concord/policy"
)

// Config is everything a server needs to start.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:50051".
	Addr string
	// DataDir holds the Badger store and the Wasm compilation cache.
	DataDir string
	// Memory keeps the store in memory: nothing survives a restart.
	Memory bool
	// Dev enables development authentication (bearer token = sender).
	Dev bool
	// Insecure allows dev authentication or plaintext beyond loopback.
	Insecure bool
	// TLSCert and TLSKey enable TLS when both are set.
	TLSCert, TLSKey string
	// MaxPayloadBytes caps envelope payloads (default 1 MiB).
	MaxPayloadBytes int
	// WasmCacheDir is the compilation cache; default DataDir/wasm-cache, or
	// none for a memory server.
	WasmCacheDir string
	// AllowedOrigins restricts browser origins (CORS); empty allows all.
	AllowedOrigins []string
	// MaxModuleBytes caps an uploaded mode module (default 16 MiB).
	MaxModuleBytes int
	// SweepInterval is how often expired sessions are swept (default 1s).
	SweepInterval time.Duration
	// Limits rate-limits each identity and caps its open sessions
	// (RATE_LIMITED); the zero value sets no limits.
	Limits limits.Options
	// PolicyUploads bound the compiling and testing of uploaded Rego
	// policies (PushPolicy); zero fields take policy's defaults.
	PolicyUploads policy.UploadLimits
	// DiskSpace measures the data directory's filesystem for the store's
	// full-disk guard; nil uses statfs. Tests that cannot mount a small
	// filesystem pass a simulated one.
	DiskSpace store.SpaceFunc
	// Now overrides the clock (tests).
	Now     func() time.Time
	Logger  *slog.Logger
	Version string
}

// Server is a running Concord server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	engine *wasm.Engine
	// sandbox runs uploaded modules.
	sandbox *wasm.Engine
	kernel  *kernel.Kernel
	http    *http.Server
	// streamsDone closes at shutdown to end long-lived streams.
	streamsDone chan struct{}
	closeOnce   sync.Once
}

// New opens the store, loads the built-in modes, restores every session and
// prepares the API. It does not listen yet.
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
	s := &Server{cfg: cfg, log: cfg.Logger, streamsDone: make(chan struct{})}
	defer func() {
		if err != nil {
			s.close(context.WithoutCancel(ctx))
		}
	}()

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
	s.store, err = store.Open(ctx, store.Options{Dir: filepath.Join(cfg.DataDir, "badger"), InMemory: cfg.Memory, Logger: cfg.Logger, Space: cfg.DiskSpace})
	if err != nil {
		return nil, fmt.Errorf("server: open store: %w", err)
	}
	s.engine, err = wasm.NewEngine(ctx, wasm.Options{CacheDir: cfg.WasmCacheDir, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: start wasm engine: %w", err)
	}
	registry := modes.New()
	loader := modes.LoaderFunc(func(ctx context.Context, b []byte) (kernel.Mode, error) { return s.engine.Load(ctx, b) })
	if err := registry.LoadBuiltins(ctx, loader); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// Uploaded modules are untrusted: they run in a second engine whose
	// calls have a deadline and whose instances a runaway call closes.
	s.sandbox, err = wasm.NewEngine(ctx, wasm.Options{CacheDir: cfg.WasmCacheDir, Sandbox: true, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("server: start sandbox engine: %w", err)
	}
	err = registry.EnableUploads(ctx, modes.Uploads{
		Store:          s.store,
		Loader:         modes.LoaderFunc(func(ctx context.Context, b []byte) (kernel.Mode, error) { return s.sandbox.Load(ctx, b) }),
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
	s.kernel, err = kernel.New(ctx, kernel.Options{
		Store:           s.store,
		Catalog:         registry,
		Governor:        engine,
		Logger:          cfg.Logger,
		Now:             cfg.Now,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		SweepInterval:   cfg.SweepInterval,
		Limits:          limits.New(cfg.Limits),
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var authn auth.Authenticator = auth.Deny{}
	if cfg.Dev {
		authn = auth.Dev{}
	} else {
		cfg.Logger.Warn("no authentication configured: every authenticated call will be refused; use --dev on loopback")
	}
	handler := rpc.NewHandler(rpc.Options{
		Kernel:          s.kernel,
		Modes:           registry,
		Policies:        policies,
		PolicyEngine:    engine,
		Authenticator:   authn,
		Logger:          cfg.Logger,
		Version:         cfg.Version,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		AllowedOrigins:  cfg.AllowedOrigins,
		Done:            s.streamsDone,
		Readiness:       s.store,
	})
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.tlsEnabled() {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	s.http.Protocols = protocols
	return s, nil
}

func (s *Server) tlsEnabled() bool { return s.cfg.TLSCert != "" && s.cfg.TLSKey != "" }

// Handler returns the server's API handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// StoreStats returns the store's commit counters.
func (s *Server) StoreStats() store.Stats { return s.store.Stats() }

// Kernel returns the server's kernel.
func (s *Server) Kernel() *kernel.Kernel { return s.kernel }

// Serve accepts connections on ln until Shutdown. It returns nil after a
// graceful shutdown.
func (s *Server) Serve(ln net.Listener) error {
	var err error
	if s.tlsEnabled() {
		cert, cerr := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if cerr != nil {
			return fmt.Errorf("server: load TLS key pair: %w", cerr)
		}
		s.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		err = s.http.ServeTLS(ln, "", "")
	} else {
		err = s.http.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ListenAndServe listens on the configured address and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	scheme := "h2c"
	if s.tlsEnabled() {
		scheme = "TLS"
	}
	s.log.Info("concord serving MACP", "addr", ln.Addr().String(), "transport", scheme,
		"store", map[bool]string{true: "memory", false: s.cfg.DataDir}[s.cfg.Memory], "dev_auth", s.cfg.Dev)
	return s.Serve(ln)
}

// Shutdown stops accepting calls, waits for those in flight (until ctx
// ends), then stops the kernel and flushes and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.streamsDone) })
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("server: drain: %w", err)
		_ = s.http.Close()
	}
	return errors.Join(err, s.close(ctx))
}

func (s *Server) close(ctx context.Context) error {
	var errs []error
	if s.kernel != nil {
		s.kernel.Close()
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Close(ctx))
	}
	if s.sandbox != nil {
		errs = append(errs, s.sandbox.Close(ctx))
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
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
