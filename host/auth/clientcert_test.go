package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/internal/certtest"
)

// viaTLSState runs a request carrying state through WithTLSState and
// authenticates it with c.
func viaTLSState(c auth.Authenticator, state *tls.ConnectionState, h http.Header) (got access.Caller, err error) {
	handler := auth.WithTLSState(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got, err = c.Authenticate(r.Context(), h)
	}))
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.TLS = state
	handler.ServeHTTP(httptest.NewRecorder(), r)
	return got, err
}

func peer(certs ...*x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{PeerCertificates: certs}
}

func TestClientCertificateSender(t *testing.T) {
	ca := certtest.NewCA(t, "agents")
	caFile := certtest.Write(t, t.TempDir(), "ca.pem", ca.PEM)
	c := newChain(t, auth.Config{ClientCAFile: caFile, TokensJSON: "[" + entry(aliceToken, "alice") + "]"})

	cases := []struct {
		names certtest.Names
		want  string
	}{
		{certtest.Names{CommonName: "cn-agent", DNS: []string{"agent.example"}, URIs: []string{"spiffe://example.org/agent/a"}}, "spiffe://example.org/agent/a"},
		{certtest.Names{CommonName: "cn-agent", DNS: []string{"agent.example"}}, "agent.example"},
		{certtest.Names{CommonName: "cn-agent"}, "cn-agent"},
	}
	for _, tc := range cases {
		leaf := ca.Client(tc.names)
		got, err := viaTLSState(c, peer(leaf.Cert), http.Header{})
		if err != nil || got.ID != tc.want {
			t.Fatalf("%+v: %+v %v, want %s", tc.names, got, err, tc.want)
		}
		if want := (access.Caller{ID: tc.want, CanStartSessions: true}); !auth.SameCaller(got, want) {
			t.Fatalf("capabilities %+v, want %+v", got, want)
		}
	}

	// A bearer token decides even on a connection with a certificate.
	leaf := ca.Client(certtest.Names{CommonName: "cn-agent"})
	if got, err := viaTLSState(c, peer(leaf.Cert), bearer(aliceToken)); err != nil || got.ID != "alice" {
		t.Fatalf("token beside a certificate: %+v %v", got, err)
	}

	// Certificates that must not authenticate.
	stranger := certtest.NewCA(t, "strangers").Client(certtest.Names{CommonName: "mallory"})
	expired := ca.Client(certtest.Names{CommonName: "old", NotAfter: time.Now().Add(-time.Minute)})
	server := ca.Server() // no client-auth usage
	nameless := ca.Client(certtest.Names{})
	for name, cert := range map[string]*x509.Certificate{"other CA": stranger.Cert, "expired": expired.Cert, "server usage": server.Cert, "no name": nameless.Cert} {
		if _, err := viaTLSState(c, peer(cert), http.Header{}); !errors.Is(err, auth.ErrRejected) {
			t.Fatalf("%s: %v, want rejected", name, err)
		}
	}
	long := ca.Client(certtest.Names{CommonName: strings.Repeat("n", 300)})
	if _, err := viaTLSState(c, peer(long.Cert), http.Header{}); !errors.Is(err, auth.ErrRejected) {
		t.Fatalf("300-byte name: %v", err)
	}
	// No certificate, no token.
	if _, err := viaTLSState(c, &tls.ConnectionState{}, http.Header{}); !errors.Is(err, auth.ErrNoCredentials) {
		t.Fatalf("no certificate: %v", err)
	}
	if _, err := c.Authenticate(context.Background(), http.Header{}); !errors.Is(err, auth.ErrNoCredentials) {
		t.Fatalf("no TLS: %v", err)
	}
}

func TestClientCAReloadStopsOldCertificates(t *testing.T) {
	oldCA, newCA := certtest.NewCA(t, "old"), certtest.NewCA(t, "new")
	dir := t.TempDir()
	caFile := certtest.Write(t, dir, "ca.pem", oldCA.PEM)
	c := newChain(t, auth.Config{ClientCAFile: caFile, PollInterval: -1})
	oldLeaf, newLeaf := oldCA.Client(certtest.Names{CommonName: "a"}), newCA.Client(certtest.Names{CommonName: "b"})
	if _, err := viaTLSState(c, peer(oldLeaf.Cert), http.Header{}); err != nil {
		t.Fatal(err)
	}
	certtest.Write(t, dir, "ca.pem", newCA.PEM)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := viaTLSState(c, peer(oldLeaf.Cert), http.Header{}); err == nil {
		t.Fatal("a certificate of the removed CA still authenticates")
	}
	if got, err := viaTLSState(c, peer(newLeaf.Cert), http.Header{}); err != nil || got.ID != "b" {
		t.Fatalf("new CA: %+v %v", got, err)
	}
	if c.ClientCAs() == nil {
		t.Fatal("no CA pool")
	}
}
