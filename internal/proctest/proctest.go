// Package proctest runs the real `concord` binary as a child process for
// tests that act as an operator would: start `concord serve` on a data
// directory, wait until it answers, kill it with SIGKILL or stop it with
// SIGTERM, run its client subcommands, and read what it logged.
package proctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// BinaryEnv names the environment variable that points tests at a built
// concord binary; without it Build compiles one.
const BinaryEnv = "CONCORD_BINARY"

// Build returns the path of a concord binary: $CONCORD_BINARY when set,
// otherwise one compiled from this repository into dir (the built-in modes
// must have been built with `make wasm`).
func Build(ctx context.Context, dir string) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("proctest: %s: %w", BinaryEnv, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("proctest: %s: %w", BinaryEnv, err)
		}
		return abs, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "concord")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/concord")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("proctest: go build ./cmd/concord: %w\n%s", err, b)
	}
	return out, nil
}

// moduleRoot finds the repository root from this source file's location.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("proctest: cannot locate the repository")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("proctest: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Server is one `concord serve` child process.
type Server struct {
	// URL is the server's base URL.
	URL string

	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
	err    error // the Wait result, once exited is closed
}

// Start runs `binary serve --dev --addr addr` with the extra args and
// returns at once; use Ready to wait until it answers.
func Start(binary, addr string, args ...string) (*Server, error) {
	full := append([]string{"serve", "--dev", "--addr", addr}, args...)
	cmd := exec.Command(binary, full...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proctest: start %s: %w", binary, err)
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, logs: logs, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// Ready waits until the server answers a health check with SERVING, or
// until ctx ends or the process exits.
func (s *Server) Ready(ctx context.Context) error {
	return s.waitHealth(ctx, func(st grpchealth.Status) bool { return st == grpchealth.StatusServing })
}

// Up waits until the server answers a health check with any status (a
// server on a full disk answers NOT_SERVING), or until ctx ends or the
// process exits.
func (s *Server) Up(ctx context.Context) error {
	return s.waitHealth(ctx, func(grpchealth.Status) bool { return true })
}

func (s *Server) waitHealth(ctx context.Context, done func(grpchealth.Status) bool) error {
	hc := grpchealth.NewClient(H2C(), s.URL, connect.WithGRPC())
	for {
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{})
		if err == nil && done(res.Status) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("proctest: server exited before it was up (%v):\n%s", s.err, s.Logs())
		case <-ctx.Done():
			return fmt.Errorf("proctest: server not up: %w (last: %v %v)", ctx.Err(), res, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Health returns the server's overall health status.
func (s *Server) Health(ctx context.Context) (grpchealth.Status, error) {
	res, err := grpchealth.NewClient(H2C(), s.URL, connect.WithGRPC()).Check(ctx, &grpchealth.CheckRequest{})
	if err != nil {
		return grpchealth.StatusUnknown, err
	}
	return res.Status, nil
}

// Kill ends the process with SIGKILL and waits for it to be gone.
func (s *Server) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Term sends SIGTERM (graceful shutdown) and returns at once.
func (s *Server) Term() error {
	return s.cmd.Process.Signal(syscall.SIGTERM)
}

// Wait waits for the process to exit, up to timeout, and returns its exit
// code; a process still running after timeout is killed and reported as an
// error.
func (s *Server) Wait(timeout time.Duration) (int, error) {
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.Kill()
		return -1, fmt.Errorf("proctest: server did not exit within %v; killed", timeout)
	}
	return s.ExitCode(), nil
}

// Exited is closed once the process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitCode is the exit status after the process exited (-1 for a signal).
func (s *Server) ExitCode() int { return s.cmd.ProcessState.ExitCode() }

// Signaled reports which signal ended the process, if one did.
func (s *Server) Signaled() (syscall.Signal, bool) {
	ws, ok := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// Logs returns what the process wrote to stdout and stderr so far.
func (s *Server) Logs() string { return s.logs.String() }

// Client returns a MACP client speaking gRPC as identity.
func (s *Server) Client(identity string) macpv1connect.MACPRuntimeServiceClient {
	return macpv1connect.NewMACPRuntimeServiceClient(H2C(), s.URL, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
}

// Admin returns a client of Concord's admin API speaking gRPC as identity.
func (s *Server) Admin(identity string) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(H2C(), s.URL, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
}

// Run runs binary with args to completion (a client subcommand such as
// `concord replay`) and returns its exit code and combined output.
func Run(ctx context.Context, binary string, args ...string) (int, string, error) {
	cmd := exec.CommandContext(ctx, binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String(), nil
	}
	if err != nil {
		return -1, out.String(), fmt.Errorf("proctest: run %s %s: %w", binary, strings.Join(args, " "), err)
	}
	return 0, out.String(), nil
}

// H2C is an HTTP client speaking HTTP/2 without TLS, as gRPC needs. Each
// call returns a new client with its own connections, so one per agent
// behaves like separate agent processes.
func H2C() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 30 * time.Second}
}

// syncBuffer is a bytes.Buffer safe for a writer and readers.
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

// StreamLog reads the first n envelopes of a session's log through
// StreamSession (a subscription from the start, as a client backfills)
// as identity, and returns them in log order.
func StreamLog(ctx context.Context, client macpv1connect.MACPRuntimeServiceClient, sessionID string, n int) ([]*macpv1.Envelope, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream := client.StreamSession(ctx)
	defer func() { _ = stream.CloseRequest(); _ = stream.CloseResponse() }()
	if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sessionID}); err != nil {
		return nil, fmt.Errorf("proctest: subscribe to %s: %w", sessionID, err)
	}
	var out []*macpv1.Envelope
	for len(out) < n {
		res, err := stream.Receive()
		if err != nil {
			return out, fmt.Errorf("proctest: stream %s after %d of %d envelopes: %w", sessionID, len(out), n, err)
		}
		if e := res.GetError(); e != nil {
			return out, fmt.Errorf("proctest: stream %s: %s %s", sessionID, e.GetCode(), e.GetMessage())
		}
		if env := res.GetEnvelope(); env != nil {
			out = append(out, env)
		}
	}
	return out, nil
}

// BuildWasm compiles the wasip1 main package pkg (a path relative to the
// repository root, e.g. "./examples/modes/broadcast/wasm") into dir and
// returns the module's bytes, as an operator builds a mode before
// `concord mode push`.
func BuildWasm(ctx context.Context, dir, pkg string) ([]byte, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, filepath.Base(filepath.Dir(pkg))+".wasm")
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("proctest: build %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// Serving reports whether the server answers a health check with SERVING
// right now (within 200 ms).
func (s *Server) Serving() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := s.Health(ctx)
	return err == nil && st == grpchealth.StatusServing
}
