package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/concord-macp/concord/host/access"
)

// Config selects the resolvers of a Chain. The zero value configures none.
type Config struct {
	// TokensFile is a static tokens file (reloaded on change and Reload).
	TokensFile string
	// TokensJSON is an inline tokens document; it wins over TokensFile.
	TokensJSON string
	// OIDC configures JWT bearer tokens when OIDC.Issuer is set.
	OIDC OIDCOptions
	// ClientCAFile enables client-certificate authentication: certificates
	// issued by these CAs (PEM) authenticate their connection.
	ClientCAFile string
	// PollInterval is how often the files are checked for changes (default
	// DefaultPollInterval; negative: only on Reload).
	PollInterval time.Duration
	// Recheck is how often open streams re-resolve their credentials
	// (default DefaultRecheck).
	Recheck time.Duration
}

// Configured reports whether any resolver is configured.
func (c Config) Configured() bool {
	return c.TokensFile != "" || c.TokensJSON != "" || c.ClientCAFile != "" ||
		c.OIDC.Issuer != "" || c.OIDC.JWKSURL != "" || c.OIDC.JWKSJSON != ""
}

// Chain is the resolver chain, in the reference runtime's order: a
// presented bearer token decides alone (a dot-shaped one goes to the JWT
// resolver, an opaque one to the static tokens); without a bearer token a
// verified client certificate authenticates the connection.
type Chain struct {
	static *StaticTokens
	jwt    *JWT
	certs  *ClientCerts
	log    *slog.Logger
}

var _ ExpiringAuthenticator = (*Chain)(nil)

// New builds the chain cfg describes. Close stops its file watchers.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Chain, error) {
	if log == nil {
		log = slog.Default()
	}
	if !cfg.Configured() {
		return nil, errors.New("auth: no resolver is configured")
	}
	c := &Chain{log: log}
	var err error
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if cfg.TokensFile != "" || cfg.TokensJSON != "" {
		if c.static, err = NewStaticTokens(StaticOptions{File: cfg.TokensFile, JSON: cfg.TokensJSON, PollInterval: cfg.PollInterval, Logger: log}); err != nil {
			return nil, err
		}
	}
	if cfg.OIDC.Issuer != "" {
		if c.jwt, err = NewJWT(ctx, cfg.OIDC, log); err != nil {
			return nil, err
		}
	} else if cfg.OIDC.JWKSURL != "" || cfg.OIDC.JWKSJSON != "" {
		err = errors.New("auth: a JWKS needs the issuer its tokens name (--oidc-issuer)")
		return nil, err
	}
	if cfg.ClientCAFile != "" {
		if c.certs, err = NewClientCerts(cfg.ClientCAFile, cfg.PollInterval, log); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Resolvers names the configured resolvers, in chain order.
func (c *Chain) Resolvers() []string {
	var names []string
	if c.jwt != nil {
		names = append(names, "jwt")
	}
	if c.static != nil {
		names = append(names, "static-tokens")
	}
	if c.certs != nil {
		names = append(names, "client-certificate")
	}
	return names
}

// Authenticate implements Authenticator.
func (c *Chain) Authenticate(ctx context.Context, h http.Header) (access.Caller, error) {
	caller, _, err := c.AuthenticateUntil(ctx, h)
	return caller, err
}

// AuthenticateUntil implements ExpiringAuthenticator.
func (c *Chain) AuthenticateUntil(ctx context.Context, h http.Header) (access.Caller, time.Time, error) {
	caller, until, resolver, err := c.resolve(ctx, h)
	if err != nil && !errors.Is(err, ErrNoCredentials) {
		c.log.Debug("credentials refused", "resolver", resolver, "err", err)
	}
	return caller, until, err
}

func (c *Chain) resolve(ctx context.Context, h http.Header) (access.Caller, time.Time, string, error) {
	token, err := credential(h)
	if err != nil {
		return access.Caller{}, time.Time{}, "", err
	}
	switch {
	case token != "" && jwtShaped(token):
		if c.jwt == nil {
			return access.Caller{}, time.Time{}, "jwt", reject("JWT bearer tokens are not configured on this server")
		}
		caller, until, err := c.jwt.Resolve(ctx, token)
		return caller, until, "jwt", err
	case token != "":
		if c.static == nil {
			return access.Caller{}, time.Time{}, "static-tokens", reject("unknown token")
		}
		caller, err := c.static.Resolve(token)
		return caller, time.Time{}, "static-tokens", err
	case c.certs != nil:
		caller, until, ok, err := c.certs.Resolve(tlsState(ctx))
		if ok {
			return caller, until, "client-certificate", err
		}
	}
	return access.Caller{}, time.Time{}, "", ErrNoCredentials
}

// ClientCAs returns the CAs client certificates must chain to, or nil when
// client-certificate authentication is off. The pool changes on reload:
// read it for every handshake.
func (c *Chain) ClientCAs() *x509.CertPool {
	if c.certs == nil {
		return nil
	}
	return c.certs.Pool()
}

// Reload re-reads the tokens file and the client CA file; on error the
// previous content stays in use.
func (c *Chain) Reload() error {
	var errs []error
	if c.static != nil {
		errs = append(errs, c.static.Reload())
	}
	if c.certs != nil {
		errs = append(errs, c.certs.Reload())
	}
	return errors.Join(errs...)
}

// Close stops the file watchers.
func (c *Chain) Close() {
	if c.static != nil {
		c.static.Close()
	}
	if c.certs != nil {
		c.certs.Close()
	}
}
