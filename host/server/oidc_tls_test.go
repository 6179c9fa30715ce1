package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/certtest"
	"github.com/concord-macp/concord/internal/oidctest"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// TestOIDCEndToEnd: JWTs of an issuer found by discovery and static
// tokens side by side; an expired JWT is refused and a JWT that expires
// ends the stream it opened.
func TestOIDCEndToEnd(t *testing.T) {
	iss := oidctest.New(t)
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, path, tokensDoc("coordinator"))
	srv := servertest.Start(t, server.Config{Memory: true, Auth: auth.Config{
		TokensFile: path,
		OIDC:       auth.OIDCOptions{Issuer: iss.URL, Leeway: time.Millisecond},
		Recheck:    time.Hour, // the stream below must end at exp, not at a re-check
	}})
	sid := servertest.NewSessionID()
	wantAck(t, "static coordinator starts", sendAs(t, srv, "coordinator", decisionStart(sid, "agent://alice")), "")

	alice := iss.Token(iss.Claims("agent://alice", time.Hour))
	wantAck(t, "alice's JWT proposes", srv.Send(t, alice, proposal(sid, "m1")), "")
	md, err := srv.Client(servertest.Connect, alice).GetSession(context.Background(), connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
	if err != nil || md.Msg.GetMetadata().GetSessionId() != sid {
		t.Fatalf("GetSession with a JWT: %v %v", md, err)
	}
	expired := iss.Token(iss.Claims("agent://alice", -time.Minute))
	ack := srv.Send(t, expired, proposal(sid, "m2"))
	if ack.GetError().GetCode() != "UNAUTHENTICATED" || !strings.Contains(ack.GetError().GetMessage(), "expired") {
		t.Fatalf("expired JWT: %v", ack)
	}
	// Without macp_scopes a JWT holds no registry right.
	_, err = srv.Client(servertest.GRPC, alice).RegisterPolicy(context.Background(), connect.NewRequest(&macpv1.RegisterPolicyRequest{PolicyDescriptor: majority("policy.jwt")}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("scope-less JWT registers a policy: %v", err)
	}

	// A stream opened with a JWT valid for two more seconds ends then.
	short := iss.Token(iss.Claims("agent://alice", 2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := srv.Client(servertest.GRPC, short).StreamSession(ctx)
	if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Receive()
		if err == nil {
			continue
		}
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("the expiring JWT's stream ended with %v, want Unauthenticated", err)
		}
		break
	}
}

// tlsClient trusts pool and presents cert (when not nil).
func tlsClient(pool *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		// Present it whatever CAs the server asks for, as a hostile client
		// would (Go's client otherwise sends no certificate that does not
		// match the server's CA list).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 30 * time.Second}
}

// TestTLSCertificateReloadKeepsConnections: a new certificate written
// over the files is served to new connections while a stream opened
// before keeps working.
func TestTLSCertificateReloadKeepsConnections(t *testing.T) {
	caA, caB := certtest.NewCA(t, "A"), certtest.NewCA(t, "B")
	dir := t.TempDir()
	first := caA.Server()
	certFile := certtest.Write(t, dir, "cert.pem", first.CertPEM)
	keyFile := certtest.Write(t, dir, "key.pem", first.KeyPEM)
	srv := servertest.Start(t, server.Config{Memory: true, TLSCert: certFile, TLSKey: keyFile, Auth: auth.Config{PollInterval: 20 * time.Millisecond}})
	pool := x509.NewCertPool()
	pool.AddCert(caA.Cert)
	pool.AddCert(caB.Cert)
	old := macpv1connect.NewMACPRuntimeServiceClient(tlsClient(pool, nil), srv.URL, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer("coordinator")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sid := servertest.NewSessionID()
	stream := old.StreamSession(ctx)
	if err := stream.Send(&macpv1.StreamSessionRequest{Envelope: decisionStart(sid, "alice")}); err != nil {
		t.Fatal(err)
	}
	if res, err := stream.Receive(); err != nil || res.GetEnvelope().GetMessageId() != "m0" {
		t.Fatalf("stream before the reload: %v %v", res, err)
	}
	issuer := func() string {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Issuer.CommonName
	}
	if got := issuer(); got != "A" {
		t.Fatalf("served by %s, want A", got)
	}

	second := caB.Server()
	certtest.Write(t, dir, "key.pem", second.KeyPEM)
	certtest.Write(t, dir, "cert.pem", second.CertPEM)
	waitUntil(t, "the new certificate to be served", func() bool { return issuer() == "B" })

	// The stream opened under the old certificate still delivers, and
	// still takes envelopes.
	c := macpv1connect.NewMACPRuntimeServiceClient(tlsClient(pool, nil), srv.URL, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer("alice")))
	res, err := c.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: proposal(sid, "m1")}))
	if err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("proposal over the new certificate: %v %v", res, err)
	}
	if res, err := stream.Receive(); err != nil || res.GetEnvelope().GetMessageId() != "m1" {
		t.Fatalf("the stream opened before the reload: %v %v", res, err)
	}
	if err := stream.Send(&macpv1.StreamSessionRequest{Envelope: servertest.Envelope(decisionMode, "Commitment", "m2", sid, commitment(true))}); err != nil {
		t.Fatalf("send on the old stream: %v", err)
	}
	if res, err := stream.Receive(); err != nil || res.GetEnvelope().GetMessageId() != "m2" {
		t.Fatalf("the old stream's answer to a Commitment sent on it: %v %v", res, err)
	}
}

// TestClientCertificateAuthentication: mTLS certificates of the
// configured CA authenticate; a bearer token still wins; others are
// refused at the handshake or answer UNAUTHENTICATED.
func TestClientCertificateAuthentication(t *testing.T) {
	serverCA, agentsCA, strangers := certtest.NewCA(t, "server"), certtest.NewCA(t, "agents"), certtest.NewCA(t, "strangers")
	dir := t.TempDir()
	leaf := serverCA.Server()
	path := filepath.Join(dir, "tokens.json")
	writeTokens(t, path, tokensDoc("ops"))
	srv := servertest.Start(t, server.Config{Memory: true,
		TLSCert: certtest.Write(t, dir, "cert.pem", leaf.CertPEM), TLSKey: certtest.Write(t, dir, "key.pem", leaf.KeyPEM),
		Auth: auth.Config{ClientCAFile: certtest.Write(t, dir, "agents.pem", agentsCA.PEM), TokensFile: path},
	})
	client := func(cert *tls.Certificate, token string) macpv1connect.MACPRuntimeServiceClient {
		opts := []connect.ClientOption{connect.WithGRPC()}
		if token != "" {
			opts = append(opts, connect.WithInterceptors(auth.Bearer(token)))
		}
		return macpv1connect.NewMACPRuntimeServiceClient(tlsClient(serverCA.Pool(), cert), srv.URL, opts...)
	}
	ctx := context.Background()
	agent := agentsCA.Client(certtest.Names{CommonName: "agent-c", URIs: []string{"spiffe://example.org/agent/c"}})

	sid := servertest.NewSessionID()
	res, err := client(&agent.TLS, "").Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: decisionStart(sid, "alice")}))
	if err != nil || !res.Msg.GetAck().GetOk() {
		t.Fatalf("start with a client certificate: %v %v", res, err)
	}
	md, err := client(&agent.TLS, "").GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
	if err != nil || md.Msg.GetMetadata().GetInitiator() != "spiffe://example.org/agent/c" {
		t.Fatalf("initiator: %v %v, want the certificate's URI SAN", md, err)
	}
	// A token beside the certificate decides.
	up, err := adminClient(tlsClient(serverCA.Pool(), &agent.TLS), srv.URL, tok("ops")).ListAuditRecords(ctx, connect.NewRequest(&adminv1.ListAuditRecordsRequest{}))
	if err != nil || up == nil {
		t.Fatalf("ops token over a certificate connection: %v", err)
	}
	// No certificate, no token.
	res, err = client(nil, "").Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: proposal(sid, "m1")}))
	if err != nil || res.Msg.GetAck().GetError().GetCode() != "UNAUTHENTICATED" {
		t.Fatalf("no credentials over TLS: %v %v", res, err)
	}
	// A certificate of another CA fails the handshake.
	other := strangers.Client(certtest.Names{CommonName: "mallory"})
	if _, err := client(&other.TLS, "").ListModes(ctx, connect.NewRequest(&macpv1.ListModesRequest{})); err == nil {
		t.Fatal("a certificate of an untrusted CA was accepted")
	}
}

func adminClient(hc *http.Client, url, token string) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(hc, url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(token)))
}

func TestAuthConfigurationsRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	writeTokens(t, path, tokensDoc("ops"))
	ca := certtest.NewCA(t, "ca")
	for name, cfg := range map[string]server.Config{
		"dev beside tokens":            {Dev: true, Auth: auth.Config{TokensFile: path}},
		"client CA without TLS":        {Auth: auth.Config{ClientCAFile: certtest.Write(t, dir, "ca.pem", ca.PEM)}},
		"missing tokens file":          {Auth: auth.Config{TokensFile: filepath.Join(dir, "nope.json")}},
		"JWKS without issuer":          {Auth: auth.Config{OIDC: auth.OIDCOptions{JWKSURL: "http://127.0.0.1:1/jwks"}}},
		"plaintext tokens beyond loop": {Addr: "0.0.0.0:0", Auth: auth.Config{TokensFile: path}},
	} {
		cfg.Memory = true
		cfg.WasmCacheDir = filepath.Join(t.TempDir(), "cache")
		if cfg.Addr == "" {
			cfg.Addr = "127.0.0.1:0"
		}
		if srv, err := server.New(context.Background(), cfg); err == nil {
			_ = srv.Shutdown(context.Background())
			t.Errorf("%s: the server started", name)
		}
	}
}
