package server

import (
	"context"
	"fmt"

	"github.com/concord-macp/concord/policy"
	"github.com/concord-macp/concord/ui"
	"github.com/concord-macp/concord/ui/login"
	"github.com/concord-macp/concord/ui/stats"
)

// UIConfig configures the admin console's login. With Config.Dev the
// console is open to the local operator; otherwise it needs an OIDC issuer.
type UIConfig struct {
	// OIDCIssuer, OIDCClientID, OIDCClientSecret and OIDCRedirectURL
	// configure the OIDC login (authorization code with PKCE).
	OIDCIssuer, OIDCClientID, OIDCClientSecret, OIDCRedirectURL string
	// CookieKey signs console session cookies (at least 32 bytes); empty
	// picks a random key at every start.
	CookieKey []byte
}

// newConsole builds the admin console on the server's parts.
func (s *Server) newConsole(ctx context.Context, rec *stats.Recorder, policies *policy.Registry) (*ui.Handler, error) {
	cfg := s.cfg
	opts := ui.Options{
		Kernel: s.kernel, Modes: s.modes, Policies: policies, PolicyEngine: s.policy, Stats: rec,
		StoreSize: func() (int64, int64) {
			lsm, vlog, err := s.storeSize()
			if err != nil {
				s.log.Warn("admin console: store size", "err", err)
			}
			return lsm, vlog
		},
		StoredEntries:  func() uint64 { return s.StoreStats().Entries },
		Dev:            cfg.Dev && isLoopback(cfg.Addr),
		MaxModuleBytes: cfg.MaxModuleBytes,
		Logger:         cfg.Logger,
		Now:            cfg.Now,
	}
	if cfg.UI.OIDCIssuer != "" {
		l, err := login.New(ctx, login.Config{
			Issuer: cfg.UI.OIDCIssuer, ClientID: cfg.UI.OIDCClientID, ClientSecret: cfg.UI.OIDCClientSecret,
			RedirectURL: cfg.UI.OIDCRedirectURL, CookieKey: cfg.UI.CookieKey, Logger: cfg.Logger, Now: cfg.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("OIDC login: %w", err)
		}
		opts.Login = l
		opts.Dev = false
	}
	if s.trail != nil {
		opts.Trail = s.trail
		opts.Audit = ui.TrailAudit{Trail: s.trail, Registry: ui.RegistryAudit{Kernel: s.kernel, Modes: s.modes, Policies: policies}}
	}
	return ui.New(opts)
}
