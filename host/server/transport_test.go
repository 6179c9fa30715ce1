package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "concord-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSServesGRPCAndConnect(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	srv := servertest.Start(t, server.Config{Memory: true, TLSCert: certFile, TLSKey: keyFile})
	httpClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	for _, opt := range []connect.ClientOption{connect.WithGRPC(), connect.WithGRPCWeb(), connect.WithProtoJSON()} {
		c := macpv1connect.NewMACPRuntimeServiceClient(httpClient, srv.URL, opt)
		res, err := c.ListModes(context.Background(), connect.NewRequest(&macpv1.ListModesRequest{}))
		if err != nil {
			t.Fatalf("ListModes over TLS: %v", err)
		}
		if len(res.Msg.GetModes()) == 0 {
			t.Fatal("no modes over TLS")
		}
	}
	// Plaintext h2c is not served on a TLS port.
	if _, err := srv.Client(servertest.GRPC, "").ListModes(context.Background(), connect.NewRequest(&macpv1.ListModesRequest{})); err == nil {
		t.Fatal("h2c request to the TLS port succeeded")
	}
}

func TestHealthReflectionAndCORS(t *testing.T) {
	srv := servertest.Start(t, server.Config{Memory: true})
	// Health over the Connect protocol with a plain JSON POST.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/grpc.health.v1.Health/Check", stringsReader(`{"service":"macp.v1.MACPRuntimeService"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := servertest.H2CClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	if res.StatusCode != http.StatusOK || body != `{"status":"SERVING_STATUS_SERVING"}` {
		t.Fatalf("health: %d %s", res.StatusCode, body)
	}
	// Reflection lists the MACP service and Concord's admin service.
	rs := grpcreflect.NewClient(servertest.H2CClient(), srv.URL).NewStream(context.Background())
	names, err := rs.ListServices()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	_, _ = rs.Close()
	if !slices.Contains(names, "macp.v1.MACPRuntimeService") || !slices.Contains(names, "concord.admin.v1.AdminService") {
		t.Fatalf("reflection lists %v", names)
	}
	// A browser's CORS preflight for a Connect call is answered (browsers
	// send the requested headers lowercase and sorted).
	pre, _ := http.NewRequest(http.MethodOptions, srv.URL+"/macp.v1.MACPRuntimeService/ListModes", nil)
	pre.Header.Set("Origin", "https://ui.example")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
	res, err = servertest.H2CClient().Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Access-Control-Allow-Origin") == "" || res.StatusCode >= 300 {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	// And the call itself, in Connect's JSON form as a browser sends it.
	call, _ := http.NewRequest(http.MethodPost, srv.URL+"/macp.v1.MACPRuntimeService/ListModes", stringsReader(`{}`))
	call.Header.Set("Origin", "https://ui.example")
	call.Header.Set("Content-Type", "application/json")
	res, err = servertest.H2CClient().Do(call)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, res)
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") == "" || !contains(body, `"mode":"macp.mode.decision.v1"`) {
		t.Fatalf("browser call: %d %v %s", res.StatusCode, res.Header, body)
	}
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
