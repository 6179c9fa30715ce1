package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/internal/servertest"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeStartsAndShutsDownGracefully runs `concord serve` as the binary
// would, serves a call, and stops it the way SIGTERM does.
func TestServeStartsAndShutsDownGracefully(t *testing.T) {
	addr := freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		// The shared test cache spares recompiling the built-in modes.
		cache := filepath.Join(os.TempDir(), "concord-test-wasm-cache")
		done <- run(ctx, []string{"serve", "--addr", addr, "--data-dir", t.TempDir(), "--dev", "--wasm-cache-dir", cache}, &logs, &logs)
	}()
	client := macpv1connect.NewMACPRuntimeServiceClient(servertest.H2CClient(), "http://"+addr, connect.WithGRPC())
	var err error
	for range 600 {
		_, err = client.Initialize(context.Background(), connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}}))
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("server never answered: %v\n%s", err, logs.String())
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not stop:\n%s", logs.String())
	}
	for _, want := range []string{"concord serving MACP", "shutting down", "stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestServeRefusesDevAuthBeyondLoopback(t *testing.T) {
	var logs syncBuffer
	code := run(context.Background(), []string{"serve", "--addr", "0.0.0.0:0", "--memory", "--dev"}, &logs, &logs)
	if code != 1 || !strings.Contains(logs.String(), "loopback") {
		t.Fatalf("exit %d, log:\n%s", code, logs.String())
	}
}
