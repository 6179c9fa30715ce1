package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/internal/filewatch"
)

// certificates serves the server's TLS certificate from its files and
// swaps in a new one when they change or on Reload. Connections already
// open keep the certificate they shook hands with; only new handshakes
// see the new one, so nothing is dropped.
type certificates struct {
	certFile, keyFile string
	log               *slog.Logger
	current           atomic.Pointer[tls.Certificate]
	watcher           *filewatch.Watcher
}

func loadCertificates(certFile, keyFile string, poll time.Duration, log *slog.Logger) (*certificates, error) {
	if poll == 0 {
		poll = auth.DefaultPollInterval
	}
	c := &certificates{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.watcher = filewatch.Watch(poll, []string{certFile, keyFile}, c.load, log)
	return c, nil
}

func (c *certificates) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("server: load TLS key pair: %w", err)
	}
	if c.current.Swap(&pair) != nil {
		c.log.Info("TLS certificate reloaded", "cert", c.certFile)
	}
	return nil
}

func (c *certificates) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

func (c *certificates) reload() error { return c.watcher.Reload() }

func (c *certificates) close() { c.watcher.Close() }

// tlsConfig is the listener's TLS configuration: the current certificate
// and, with client-certificate authentication, the current client CAs;
// a client certificate is optional (bearer tokens still work) but, when
// presented, must chain to those CAs.
func tlsConfig(certs *certificates, clientCAs func() *x509.CertPool) *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAs == nil {
		return base
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := clientCAs()
		if pool == nil {
			return nil, errors.New("no client CAs loaded")
		}
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		return cfg, nil
	}
	return base
}
