// Package servertest starts real Concord servers on random loopback ports
// for tests, in the spirit of net/http/httptest: the full server (Badger
// store, wazero modes, kernel, Connect handler) behind a real listener, and
// clients for each protocol it speaks.
package servertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// Server is a Concord server running for one test.
type Server struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:41234".
	URL string
	// Config is the configuration the server was built with.
	Config server.Config

	srv  *server.Server
	done chan error
	t    testing.TB
}

// Start builds a server from cfg (loopback, a random port unless cfg.Addr
// names one; dev auth unless cfg.Auth configures real authentication) and
// serves it until the test ends. An empty DataDir
// with Memory unset gets a fresh temporary folder.
func Start(t testing.TB, cfg server.Config) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" && !cfg.Memory {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Dev = !cfg.Auth.Configured()
	if cfg.WasmCacheDir == "" {
		// One compilation cache for every test server of the machine: the
		// built-in modules compile once, not once per server.
		cfg.WasmCacheDir = filepath.Join(os.TempDir(), "concord-test-wasm-cache")
	}
	s := &Server{Config: cfg, t: t}
	s.start()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Server) start() {
	s.t.Helper()
	ctx := context.Background()
	srv, err := server.New(ctx, s.Config)
	if err != nil {
		s.t.Fatalf("servertest: start server: %v", err)
	}
	ln, err := net.Listen("tcp", s.Config.Addr)
	if err != nil {
		s.t.Fatalf("servertest: listen: %v", err)
	}
	// Keep the port across restarts.
	s.Config.Addr = ln.Addr().String()
	scheme := "http"
	if s.Config.TLSCert != "" {
		scheme = "https"
	}
	s.URL = fmt.Sprintf("%s://%s", scheme, ln.Addr())
	s.srv = srv
	s.done = make(chan error, 1)
	go func() { s.done <- srv.Serve(ln) }()
}

// Stop shuts the server down gracefully (drain, flush, close the store). It
// is safe to call more than once.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.t.Errorf("servertest: shutdown: %v", err)
	}
	if err := <-s.done; err != nil {
		s.t.Errorf("servertest: serve: %v", err)
	}
	s.srv = nil
}

// Crash stops the server the way a crash would (Server.Halt): nothing is
// drained and a cluster node keeps its leases until they run out.
func (s *Server) Crash() {
	if s.srv == nil {
		return
	}
	s.srv.Halt()
	<-s.done
	s.srv = nil
}

// Restart stops the server and starts a new one on the same address and
// data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Server returns the running server.
func (s *Server) Server() *server.Server { return s.srv }

// Protocol names a wire protocol a client can speak.
type Protocol string

// The protocols Concord serves on one port.
const (
	GRPC    Protocol = "grpc"
	GRPCWeb Protocol = "grpc-web"
	Connect Protocol = "connect"
)

// Protocols lists every protocol.
var Protocols = []Protocol{GRPC, GRPCWeb, Connect}

// Client returns a MACP client speaking p over HTTP/2 without TLS, that
// presents identity as its bearer token ("" sends no credentials): with
// dev auth the identity itself, otherwise a token.
func (s *Server) Client(p Protocol, identity string) macpv1connect.MACPRuntimeServiceClient {
	var opts []connect.ClientOption
	switch p {
	case GRPC:
		opts = append(opts, connect.WithGRPC())
	case GRPCWeb:
		opts = append(opts, connect.WithGRPCWeb())
	}
	if identity != "" {
		opts = append(opts, connect.WithInterceptors(auth.Bearer(identity)))
	}
	return macpv1connect.NewMACPRuntimeServiceClient(H2CClient(), s.URL, opts...)
}

// Admin returns a client of Concord's admin API speaking gRPC as identity.
func (s *Server) Admin(identity string) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(H2CClient(), s.URL, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
}

// H2CClient is an HTTP client that speaks HTTP/2 over plaintext.
func H2CClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 30 * time.Second}
}

// Send sends env as identity over gRPC and returns the Ack, failing the
// test on a transport error.
func (s *Server) Send(t testing.TB, identity string, env *macpv1.Envelope) *macpv1.Ack {
	t.Helper()
	res, err := s.Client(GRPC, identity).Send(context.Background(), connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
	if err != nil {
		t.Fatalf("Send %s %s: %v", env.GetMessageType(), env.GetMessageId(), err)
	}
	return res.Msg.GetAck()
}

// Envelope builds a MACP 1.0 envelope carrying payload (nil for none).
func Envelope(mode, messageType, messageID, sessionID string, payload proto.Message) *macpv1.Envelope {
	env := &macpv1.Envelope{
		MacpVersion:     "1.0",
		Mode:            mode,
		MessageType:     messageType,
		MessageId:       messageID,
		SessionId:       sessionID,
		TimestampUnixMs: time.Now().UnixMilli(),
	}
	if payload != nil {
		b, err := proto.Marshal(payload)
		if err != nil {
			panic(fmt.Sprintf("servertest: marshal %T: %v", payload, err))
		}
		env.Payload = b
	}
	return env
}

// NewSessionID returns a fresh lowercase UUID v4.
func NewSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
