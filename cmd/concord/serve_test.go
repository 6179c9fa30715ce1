package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
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

// startServe runs `concord serve args…` on a free port (in memory) and
// waits until it answers; the returned function stops it and returns the
// exit code, and the test's end stops it too.
func startServe(t *testing.T, args ...string) (url string, stop func() int, logs *syncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	done := make(chan int, 1)
	cache := filepath.Join(os.TempDir(), "concord-test-wasm-cache")
	go func() {
		done <- run(ctx, append([]string{"serve", "--addr", addr, "--memory", "--wasm-cache-dir", cache}, args...), logs, logs)
	}()
	client := macpv1connect.NewMACPRuntimeServiceClient(servertest.H2CClient(), "http://"+addr, connect.WithGRPC())
	var err error
	for range 600 {
		if _, err = client.Initialize(context.Background(), connect.NewRequest(&macpv1.InitializeRequest{SupportedProtocolVersions: []string{"1.0"}})); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("server never answered: %v\n%s", err, logs.String())
	}
	stop = func() int { cancel(); return <-done }
	t.Cleanup(func() { cancel() })
	return "http://" + addr, stop, logs
}

func TestServeBrowserFlags(t *testing.T) {
	t.Setenv("CONCORD_ALLOWED_ORIGINS", " http://app.test:8080 , https://*.example.com,")
	example := t.TempDir()
	if err := os.WriteFile(filepath.Join(example, "index.html"), []byte("<title>example page</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	url, stop, logs := startServe(t, "--dev", "--allowed-headers", "x-tenant", "--serve-example", example)
	pre := func(origin, headers string) http.Header {
		req, _ := http.NewRequest(http.MethodOptions, url+"/macp.v1.MACPRuntimeService/Send", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", headers)
		res, err := servertest.H2CClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header
	}
	for _, origin := range []string{"http://app.test:8080", "https://ui.example.com"} {
		if got := pre(origin, "authorization,content-type,x-tenant").Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("%s from CONCORD_ALLOWED_ORIGINS: Access-Control-Allow-Origin = %q", origin, got)
		}
	}
	if got := pre("http://app.test:8081", "content-type").Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("unlisted origin answered %q", got)
	}
	if got := pre("http://app.test:8080", "content-type,x-other").Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("a header not in --allowed-headers passed: %q", got)
	}
	res, err := http.Get(url + "/examples/web/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "example page") {
		t.Fatalf("--serve-example: %d %s", res.StatusCode, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, logs.String())
	}
}

func TestServeRefusesBadBrowserFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--allowed-origins", "app.example.com"},
		{"--allowed-headers", "x tenant"},
		{"--serve-example", t.TempDir()}, // nothing built there
	} {
		var logs syncBuffer
		code := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--memory", "--dev"}, args...), &logs, &logs)
		if code != 1 || !strings.Contains(logs.String(), "cannot start") {
			t.Errorf("%v: exit %d, log:\n%s", args, code, logs.String())
		}
	}
}
