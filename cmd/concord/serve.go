package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/concord-macp/concord/host/auth"
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
	headers, exampleDir, metricsAddr, otlpEndpoint               string
	memory, dev, insecure, metrics                               bool
	maxPayload                                                   int
	limits                                                       limits.Options
	shutdownGrace                                                time.Duration
	auth                                                         auth.Config
	jwksTTL                                                      seconds
	ui                                                           uiFlags
	cluster                                                      clusterFlags
}

// uiFlags configure the admin console's OIDC login.
type uiFlags struct{ issuer, clientID, clientSecret, redirectURL, cookieKey string }

// envNames lists the environment variables of each flag, in priority order.
var envNames = map[string][]string{
	"addr":                  {"CONCORD_ADDR", "MACP_BIND_ADDR"},
	"data-dir":              {"CONCORD_DATA_DIR", "MACP_DATA_DIR"},
	"memory":                {"CONCORD_MEMORY", "MACP_MEMORY_ONLY"},
	"dev":                   {"CONCORD_DEV"},
	"insecure":              {"CONCORD_INSECURE", "MACP_ALLOW_INSECURE"},
	"tls-cert":              {"CONCORD_TLS_CERT", "MACP_TLS_CERT_PATH"},
	"tls-key":               {"CONCORD_TLS_KEY", "MACP_TLS_KEY_PATH"},
	"max-payload-bytes":     {"CONCORD_MAX_PAYLOAD_BYTES", "MACP_MAX_PAYLOAD_BYTES"},
	"log-level":             {"CONCORD_LOG_LEVEL"},
	"allowed-origins":       {"CONCORD_ALLOWED_ORIGINS"},
	"allowed-headers":       {"CONCORD_ALLOWED_HEADERS"},
	"serve-example":         {"CONCORD_SERVE_EXAMPLE"},
	"wasm-cache-dir":        {"CONCORD_WASM_CACHE_DIR"},
	"shutdown-grace":        {"CONCORD_SHUTDOWN_GRACE"},
	"starts-per-minute":     {"CONCORD_STARTS_PER_MINUTE"},
	"messages-per-minute":   {"CONCORD_MESSAGES_PER_MINUTE"},
	"max-open-sessions":     {"CONCORD_MAX_OPEN_SESSIONS"},
	"auth-tokens-file":      {"CONCORD_AUTH_TOKENS_FILE", "MACP_AUTH_TOKENS_FILE"},
	"auth-tokens-json":      {"CONCORD_AUTH_TOKENS_JSON", "MACP_AUTH_TOKENS_JSON"},
	"oidc-issuer":           {"CONCORD_OIDC_ISSUER", "MACP_AUTH_ISSUER"},
	"oidc-audience":         {"CONCORD_OIDC_AUDIENCE", "MACP_AUTH_AUDIENCE"},
	"oidc-jwks-url":         {"CONCORD_OIDC_JWKS_URL", "MACP_AUTH_JWKS_URL"},
	"oidc-jwks-json":        {"CONCORD_OIDC_JWKS_JSON", "MACP_AUTH_JWKS_JSON"},
	"oidc-jwks-ttl":         {"CONCORD_OIDC_JWKS_TTL", "MACP_AUTH_JWKS_TTL_SECS"},
	"oidc-sender-claim":     {"CONCORD_OIDC_SENDER_CLAIM"},
	"tls-client-ca":         {"CONCORD_TLS_CLIENT_CA"},
	"auth-recheck":          {"CONCORD_AUTH_RECHECK"},
	"ui-oidc-issuer":        {"CONCORD_UI_OIDC_ISSUER"},
	"ui-oidc-client-id":     {"CONCORD_UI_OIDC_CLIENT_ID"},
	"ui-oidc-client-secret": {"CONCORD_UI_OIDC_CLIENT_SECRET"},
	"ui-oidc-redirect-url":  {"CONCORD_UI_OIDC_REDIRECT_URL"},
	"ui-cookie-key":         {"CONCORD_UI_COOKIE_KEY"},
	"metrics":               {"CONCORD_METRICS"},
	"metrics-addr":          {"CONCORD_METRICS_ADDR"},
	"otlp-endpoint":         {"CONCORD_OTLP_ENDPOINT"},
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
	fs.StringVar(&f.origins, "allowed-origins", "", "comma-separated browser origins allowed by CORS: exact (https://app.example.com), * or wildcard subdomains (https://*.example.com); empty: any")
	fs.StringVar(&f.headers, "allowed-headers", "", "comma-separated extra request headers browsers may send (beyond Connect, gRPC-web, Authorization, X-Macp-Token, traceparent, tracestate, x-request-id)")
	fs.StringVar(&f.exampleDir, "serve-example", "", "serve the built browser example from this folder at /examples/web/ (make web-example builds examples/web/dist)")
	fs.StringVar(&f.wasmCache, "wasm-cache-dir", "", "Wasm compilation cache (default: DATA_DIR/wasm-cache)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long shutdown waits for calls in flight")
	fs.IntVar(&f.limits.StartsPerMinute, "starts-per-minute", 60, "SessionStarts one identity may send per minute (0: no limit)")
	fs.IntVar(&f.limits.MessagesPerMinute, "messages-per-minute", 600, "other envelopes one identity may send per minute (0: no limit)")
	fs.IntVar(&f.limits.MaxOpenSessions, "max-open-sessions", 1000, "sessions one identity may have open or suspended at once (0: no limit)")
	fs.StringVar(&f.auth.TokensFile, "auth-tokens-file", "", "static bearer tokens file (JSON; reloaded on change and on SIGHUP)")
	fs.StringVar(&f.auth.TokensJSON, "auth-tokens-json", "", "static bearer tokens inline (JSON); wins over --auth-tokens-file")
	fs.StringVar(&f.auth.OIDC.Issuer, "oidc-issuer", "", "JWT issuer URL; its keys come from OpenID discovery unless --oidc-jwks-url or --oidc-jwks-json is set")
	fs.StringVar(&f.auth.OIDC.Audience, "oidc-audience", auth.DefaultAudience, "audience JWTs must name")
	fs.StringVar(&f.auth.OIDC.JWKSURL, "oidc-jwks-url", "", "fixed JWKS URL instead of discovery")
	fs.StringVar(&f.auth.OIDC.JWKSJSON, "oidc-jwks-json", "", "fixed JWKS inline (JSON); the only place an HS256 (oct) key is accepted")
	f.jwksTTL = seconds(auth.DefaultJWKSTTL)
	fs.Var(&f.jwksTTL, "oidc-jwks-ttl", "how long a fetched JWKS is used before it is fetched again (seconds or a duration)")
	fs.StringVar(&f.auth.OIDC.SenderClaim, "oidc-sender-claim", "sub", "JWT claim that is the sender")
	fs.StringVar(&f.auth.ClientCAFile, "tls-client-ca", "", "CA bundle (PEM) of client certificates that authenticate their connection (mTLS; needs --tls-cert)")
	fs.DurationVar(&f.auth.Recheck, "auth-recheck", auth.DefaultRecheck, "how often open streams check that their credentials still hold")
	fs.StringVar(&f.ui.issuer, "ui-oidc-issuer", "", "OIDC issuer URL for the admin console's login (without it the console needs --dev)")
	fs.StringVar(&f.ui.clientID, "ui-oidc-client-id", "", "OIDC client id of the admin console")
	fs.StringVar(&f.ui.clientSecret, "ui-oidc-client-secret", "", "OIDC client secret of the admin console")
	fs.StringVar(&f.ui.redirectURL, "ui-oidc-redirect-url", "", "the console's OIDC callback URL, e.g. https://HOST/ui/callback")
	fs.StringVar(&f.ui.cookieKey, "ui-cookie-key", "", "hex key (32+ bytes) signing console session cookies (default: random per start)")
	fs.BoolVar(&f.metrics, "metrics", true, "serve Prometheus metrics at GET /metrics")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve the metrics on this address instead of --addr")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export traces over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318 (empty: no traces)")
	f.cluster.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: concord serve [flags]\n\nFlags (environment variables in brackets):")
		fs.VisitAll(func(fl *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s [%s]\n\t%s (default %q)\n", fl.Name, strings.Join(flagEnv(fl.Name), ", "), fl.Usage, fl.DefValue)
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
		for _, name := range flagEnv(fl.Name) {
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

// flagEnv returns the environment variables of flag name.
func flagEnv(name string) []string {
	if names, ok := envNames[name]; ok {
		return names
	}
	return clusterEnv[name]
}

// splitList splits a comma-separated flag value, dropping blanks around
// and between items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
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
		Dev:             f.dev || (f.insecure && !f.auth.Configured()),
		Auth:            f.auth,
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
	cfg.AllowedOrigins = splitList(f.origins)
	cfg.AllowedHeaders = splitList(f.headers)
	cfg.ExampleDir = f.exampleDir
	cfg.Auth.OIDC.JWKSTTL = time.Duration(f.jwksTTL)
	if f.auth.Recheck <= 0 {
		logger.Error("--auth-recheck must be positive")
		return 2
	}
	cfg.UI = server.UIConfig{OIDCIssuer: f.ui.issuer, OIDCClientID: f.ui.clientID, OIDCClientSecret: f.ui.clientSecret, OIDCRedirectURL: f.ui.redirectURL}
	if f.ui.cookieKey != "" {
		key, err := hex.DecodeString(f.ui.cookieKey)
		if err != nil || len(key) < 32 {
			fmt.Fprintln(stderr, "concord serve: --ui-cookie-key must be at least 32 bytes written in hex")
			return 2
		}
		cfg.UI.CookieKey = key
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		logger.Error("--tls-cert and --tls-key go together")
		return 2
	}
	clusterCfg, err := f.cluster.config()
	if err != nil {
		logger.Error("cluster", "err", err)
		return 2
	}
	cfg.Cluster = clusterCfg
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
	// Listen first: connections made while the store opens and the modes
	// load wait in the backlog rather than being refused.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		logger.Error("cannot listen", "addr", cfg.Addr, "err", err)
		return 1
	}
	cfg.Listener = ln
	srv, err := server.New(ctx, cfg)
	if err != nil {
		_ = ln.Close()
		logger.Error("cannot start", "err", err)
		return 1
	}
	// SIGHUP reloads the tokens file, the client CAs and the TLS
	// certificate; each keeps its old content if the new one is broken.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
wait:
	for {
		select {
		case err := <-errc:
			logger.Error("server stopped", "err", err)
			_ = srv.Shutdown(context.Background())
			return 1
		case <-hup:
			if err := srv.Reload(); err != nil {
				logger.Error("SIGHUP: reload incomplete; what failed keeps its previous content", "err", err)
			} else {
				logger.Info("SIGHUP: reloaded tokens, client CAs and TLS certificate")
			}
		case <-ctx.Done():
			break wait
		}
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

// seconds is a duration flag that also takes a plain number of seconds,
// as the reference runtime's MACP_AUTH_JWKS_TTL_SECS does.
type seconds time.Duration

func (s *seconds) String() string { return time.Duration(*s).String() }

func (s *seconds) Set(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive number of seconds or a duration such as 5m, not %q", v)
	}
	*s = seconds(d)
	return nil
}
