package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/internal/filewatch"
)

type tlsKey struct{}

// WithTLSState returns a handler that makes each request's TLS connection
// state available to the resolvers (client certificates).
func WithTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r = r.WithContext(context.WithValue(r.Context(), tlsKey{}, r.TLS))
		}
		next.ServeHTTP(w, r)
	})
}

func tlsState(ctx context.Context) *tls.ConnectionState {
	s, _ := ctx.Value(tlsKey{}).(*tls.ConnectionState)
	return s
}

// ClientCerts resolves TLS client certificates issued by a set of CAs to
// callers: the sender is the certificate's first URI SAN (a SPIFFE id, for
// instance), else its first DNS SAN, else its subject common name. Such a
// caller may send and start sessions; it holds no registry, policy,
// observer or admin right.
type ClientCerts struct {
	file    string
	log     *slog.Logger
	pool    atomic.Pointer[x509.CertPool]
	watcher *filewatch.Watcher
	now     func() time.Time
}

// NewClientCerts loads the CA bundle in file (PEM) and watches it.
func NewClientCerts(file string, poll time.Duration, log *slog.Logger) (*ClientCerts, error) {
	if log == nil {
		log = slog.Default()
	}
	if poll == 0 {
		poll = DefaultPollInterval
	}
	c := &ClientCerts{file: file, log: log, now: time.Now}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.watcher = filewatch.Watch(poll, []string{file}, c.load, log)
	return c, nil
}

func (c *ClientCerts) load() error {
	data, err := readBounded(c.file, 8<<20)
	if err != nil {
		return fmt.Errorf("auth: client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("auth: %s holds no PEM certificate", c.file)
	}
	if c.pool.Swap(pool) != nil {
		c.log.Info("client CA file reloaded", "file", c.file)
	}
	return nil
}

// Pool returns the CAs client certificates must chain to.
func (c *ClientCerts) Pool() *x509.CertPool { return c.pool.Load() }

// Reload re-reads the CA file; on error the CAs in use stay.
func (c *ClientCerts) Reload() error { return c.watcher.Reload() }

// Close stops watching the file.
func (c *ClientCerts) Close() { c.watcher.Close() }

// Resolve returns the caller of the connection's client certificate; ok is
// false when the connection presented none. The certificate is verified
// again against the current CAs, so a CA removed from the file stops its
// certificates on open streams too; until is the end of its validity.
func (c *ClientCerts) Resolve(state *tls.ConnectionState) (caller access.Caller, until time.Time, ok bool, err error) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return access.Caller{}, time.Time{}, false, nil
	}
	leaf := state.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, ca := range state.PeerCertificates[1:] {
		inter.AddCert(ca)
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		Roots: c.Pool(), Intermediates: inter, CurrentTime: c.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if verr != nil {
		return access.Caller{}, time.Time{}, true, reject("the client certificate is not issued by a trusted CA, or not valid now")
	}
	sender, serr := CertificateSender(leaf)
	if serr != nil {
		return access.Caller{}, time.Time{}, true, reject(serr.Error())
	}
	until = leaf.NotAfter
	for _, cert := range chains[0] {
		if cert.NotAfter.Before(until) {
			until = cert.NotAfter
		}
	}
	return access.Caller{ID: sender, CanStartSessions: true}, until, true, nil
}

// CertificateSender returns the sender a client certificate stands for:
// its first URI SAN, else its first DNS SAN, else its subject common name.
func CertificateSender(cert *x509.Certificate) (string, error) {
	var id string
	switch {
	case len(cert.URIs) > 0:
		id = cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		id = cert.DNSNames[0]
	default:
		id = cert.Subject.CommonName
	}
	if id == "" {
		return "", errors.New("the client certificate names no identity (URI SAN, DNS SAN or common name)")
	}
	if checkSender(id) != nil {
		return "", errors.New("the client certificate's identity is not a valid sender (1 to 256 visible characters)")
	}
	return id, nil
}
