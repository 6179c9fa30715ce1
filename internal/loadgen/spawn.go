package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Launcher starts `concord serve` processes on this machine for the
// scenarios that need a server of their own: --spawn, and restart.
type Launcher struct {
	// Command runs the concord binary; Start appends "serve" and flags.
	Command []string
	// Env is added to this process's environment.
	Env []string
	// WasmCacheDir, when set, is the servers' compilation cache, so that
	// each new data directory does not compile the built-in modes again.
	WasmCacheDir string
	// Log receives the servers' output (nil: discarded).
	Log io.Writer
}

// Process is a running `concord serve`.
type Process struct {
	PID  int
	Addr string
	URL  string
	// Started is when the process was started.
	Started time.Time
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error // of cmd.Wait, once exited is closed
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start starts a server on addr with data in dataDir, with dev
// authentication and no rate limits or quotas (a load generator is one
// client acting as many agents).
func (l Launcher) Start(dataDir, addr string) (*Process, error) {
	if len(l.Command) == 0 {
		return nil, errors.New("no concord command to start")
	}
	args := append(append([]string{}, l.Command[1:]...), "serve", "--addr", addr, "--data-dir", dataDir, "--dev",
		"--starts-per-minute", "0", "--messages-per-minute", "0", "--max-open-sessions", "0", "--log-level", "warn")
	if l.WasmCacheDir != "" {
		args = append(args, "--wasm-cache-dir", l.WasmCacheDir)
	}
	cmd := exec.Command(l.Command[0], args...)
	cmd.Env = append(os.Environ(), l.Env...)
	out := l.Log
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	p := &Process{Addr: addr, URL: "http://" + addr, cmd: cmd, exited: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", l.Command[0], err)
	}
	p.PID = cmd.Process.Pid
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Readiness is how a starting server became ready, timed from the start
// of its process.
type Readiness struct {
	// FirstAccept is when a TCP connection to its port first succeeded.
	FirstAccept time.Duration
	// Ready is when an Initialize call first succeeded.
	Ready time.Duration
	// FailedAfterAccept counts Initialize calls that failed after the
	// port had accepted a connection.
	FailedAfterAccept int
}

// WaitReady polls the server's port every 2 ms until an Initialize call
// succeeds, the process exits, or timeout passes.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) (Readiness, error) {
	var r Readiness
	c := dial(Target{URL: p.URL})
	defer c.close()
	limit := time.After(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			return r, fmt.Errorf("the server exited before it was ready: %v", p.err)
		case <-limit:
			return r, fmt.Errorf("the server was not ready within %s", timeout)
		case <-ctx.Done():
			return r, errStopped
		case <-tick.C:
		}
		nc, err := net.DialTimeout("tcp", p.Addr, 100*time.Millisecond)
		if err != nil {
			continue
		}
		_ = nc.Close()
		if r.FirstAccept == 0 {
			r.FirstAccept = time.Since(p.Started)
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = c.initialize(ictx)
		cancel()
		if err != nil {
			r.FailedAfterAccept++
			continue
		}
		r.Ready = time.Since(p.Started)
		return r, nil
	}
}

// Stop stops the server as SIGTERM does (drain, flush, close the store),
// killing it if it has not exited after 30 s.
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return p.exitErr()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop server %d: %w", p.PID, err)
	}
	select {
	case <-p.exited:
		return p.exitErr()
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("server %d did not stop within 30 s of SIGTERM and was killed", p.PID)
	}
}

func (p *Process) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("server %d: %w", p.PID, p.err)
	}
	return nil
}
