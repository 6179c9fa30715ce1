package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/host/tracing"
)

// serveFlags are the flags of `concord serve`. Each flag also reads
// environment variables, its own CONCORD_* name first, then the reference
// runtime's MACP_* name, so that deployments written for that runtime start
// Concord unchanged. A flag given on the command line wins.
type serveFlags struct {
	addr, dataDir, tlsCert, tlsKey, logLevel, origins, wasmCache string
	metricsAddr, otlpEndpoint                                    string
	memory, dev, insecure, metrics                               bool
	maxPayload                                                   int
	limits                                                       limits.Options
	shutdownGrace                                                time.Duration
}

// envNames lists the environment variables of each flag, in priority order.
var envNames = map[string][]string{
	"addr":                {"CONCORD_ADDR", "MACP_BIND_ADDR"},
	"data-dir":            {"CONCORD_DATA_DIR", "MACP_DATA_DIR"},
	"memory":              {"CONCORD_MEMORY", "MACP_MEMORY_ONLY"},
	"dev":                 {"CONCORD_DEV"},
	"insecure":            {"CONCORD_INSECURE", "MACP_ALLOW_INSECURE"},
	"tls-cert":            {"CONCORD_TLS_CERT", "MACP_TLS_CERT_PATH"},
	"tls-key":             {"CONCORD_TLS_KEY", "MACP_TLS_KEY_PATH"},
	"max-payload-bytes":   {"CONCORD_MAX_PAYLOAD_BYTES", "MACP_MAX_PAYLOAD_BYTES"},
	"log-level":           {"CONCORD_LOG_LEVEL"},
	"allowed-origins":     {"CONCORD_ALLOWED_ORIGINS"},
	"wasm-cache-dir":      {"CONCORD_WASM_CACHE_DIR"},
	"shutdown-grace":      {"CONCORD_SHUTDOWN_GRACE"},
	"starts-per-minute":   {"CONCORD_STARTS_PER_MINUTE"},
	"messages-per-minute": {"CONCORD_MESSAGES_PER_MINUTE"},
	"max-open-sessions":   {"CONCORD_MAX_OPEN_SESSIONS"},
	"metrics":             {"CONCORD_METRICS"},
	"metrics-addr":        {"CONCORD_METRICS_ADDR"},
	"otlp-endpoint":       {"CONCORD_OTLP_ENDPOINT"},
}

func newServeFlagSet(f *serveFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("concord serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:50051", "listen address")
	fs.StringVar(&f.dataDir, "data-dir", "./.concord-data", "folder of the durable store and the Wasm compilation cache")
	fs.BoolVar(&f.memory, "memory", false, "keep the store in memory (nothing survives a restart)")
	fs.BoolVar(&f.dev, "dev", false, "development authentication: the bearer token is the sender (loopback only)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow plaintext or --dev on a non-loopback address; with no other authentication configured it also enables dev authentication")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves TLS instead of h2c")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.IntVar(&f.maxPayload, "max-payload-bytes", 1<<20, "largest envelope payload accepted")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.origins, "allowed-origins", "", "comma-separated browser origins allowed by CORS (empty: any)")
	fs.StringVar(&f.wasmCache, "wasm-cache-dir", "", "Wasm compilation cache (default: DATA_DIR/wasm-cache)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long shutdown waits for calls in flight")
	fs.IntVar(&f.limits.StartsPerMinute, "starts-per-minute", 60, "SessionStarts one identity may send per minute (0: no limit)")
	fs.IntVar(&f.limits.MessagesPerMinute, "messages-per-minute", 600, "other envelopes one identity may send per minute (0: no limit)")
	fs.IntVar(&f.limits.MaxOpenSessions, "max-open-sessions", 1000, "sessions one identity may have open or suspended at once (0: no limit)")
	fs.BoolVar(&f.metrics, "metrics", true, "serve Prometheus metrics at GET /metrics")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve the metrics on this address instead of --addr")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export traces over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318 (empty: no traces)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: concord serve [flags]\n\nFlags (environment variables in brackets):")
		fs.VisitAll(func(fl *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s [%s]\n\t%s (default %q)\n", fl.Name, strings.Join(envNames[fl.Name], ", "), fl.Usage, fl.DefValue)
		})
	}
	return fs
}

// applyEnv sets every flag not given on the command line from its
// environment variables.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var errs []error
	fs.VisitAll(func(fl *flag.Flag) {
		if given[fl.Name] {
			return
		}
		for _, name := range envNames[fl.Name] {
			if v := getenv(name); v != "" {
				if err := fl.Value.Set(v); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
				}
				return
			}
		}
	})
	return errors.Join(errs...)
}

func serve(ctx context.Context, args []string, stderr io.Writer) int {
	var f serveFlags
	fs := newServeFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		fmt.Fprintln(stderr, "concord serve:", err)
		return 2
	}
	if l := f.limits; l.StartsPerMinute < 0 || l.MessagesPerMinute < 0 || l.MaxOpenSessions < 0 {
		fmt.Fprintln(stderr, "concord serve: --starts-per-minute, --messages-per-minute and --max-open-sessions must not be negative (0 means no limit)")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintln(stderr, "concord serve: --log-level:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := server.Config{
		Addr:            f.addr,
		DataDir:         f.dataDir,
		Memory:          f.memory,
		Dev:             f.dev || f.insecure,
		Insecure:        f.insecure,
		TLSCert:         f.tlsCert,
		TLSKey:          f.tlsKey,
		MaxPayloadBytes: f.maxPayload,
		WasmCacheDir:    f.wasmCache,
		Limits:          f.limits,
		Metrics:         f.metrics,
		MetricsAddr:     f.metricsAddr,
		Logger:          logger,
		Version:         version,
	}
	if f.origins != "" {
		cfg.AllowedOrigins = strings.Split(f.origins, ",")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		logger.Error("--tls-cert and --tls-key go together")
		return 2
	}
	if f.otlpEndpoint != "" {
		tp, err := tracing.NewProvider(ctx, f.otlpEndpoint, version)
		if err != nil {
			logger.Error("cannot start", "err", err)
			return 2
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				logger.Warn("flush traces", "err", err)
			}
		}()
		cfg.TracerProvider = tp
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		logger.Error("server stopped", "err", err)
		_ = srv.Shutdown(context.Background())
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining calls, flushing the log")
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	<-errc
	logger.Info("stopped")
	return 0
}
