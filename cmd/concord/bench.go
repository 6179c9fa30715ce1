package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"time"

	"github.com/concord-macp/concord/internal/loadgen"
)

const benchUsage = `Usage: concord bench --scenario NAME [flags]

Drives concurrent agents (gRPC clients) through real sessions against a
running server (--server) or one it starts (--spawn), measures the transport
ceiling (a bare connect-go handler answering a canned Ack, same clients) side
by side, and prints throughput, the ratio to the ceiling, p50/p99/p99.9
latency and the server's CPU and memory (from /proc: --server-pid, else the
process listening on a loopback server's port).

Scenarios:
  decision      --clients agents run complete Decision sessions, vs the ceiling
  per-mode      the same for every built-in mode (--modes to choose)
  long-session  one Decision session of serial Evaluations; server CPU per
                message over --window messages at each of --checkpoints
  mpac          --agents agents on one ext.mpac.intent.v1 session (uploaded
                from --mpac-wasm), each on its own StreamSession, cycling
                announce → commit → withdraw
  idle          --idle-sessions open idle sessions: RSS per session, idle CPU
  restart       fill a data dir with --fill messages through a real server,
                then time concord serve from process start to first Initialize
  all           every scenario in this order (per-mode covers decision)

A server under load needs no rate limits: concord serve --dev
--starts-per-minute 0 --messages-per-minute 0 --max-open-sessions 0
(--spawn and restart start theirs so).

Flags:
`

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("concord bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c clientFlags
	c.register(fs)
	var (
		o                  loadgen.Options
		modes, checkpoints string
		mpacWasm, cacheDir string
		asJSON, serverLog  bool
		serverPID          int
	)
	fs.StringVar(&o.Scenario, "scenario", "decision", "decision, per-mode, long-session, mpac, idle, restart or all")
	fs.IntVar(&serverPID, "server-pid", 0, "the server's process id, for its CPU and memory (default: the process listening on a loopback --server's port)")
	fs.BoolVar(&o.Spawn, "spawn", false, "start a fresh local server (this binary, dev auth, no rate limits, a temporary data dir) instead of --server")
	fs.IntVar(&o.Clients, "clients", 64, "concurrent agents, each with its own connection (decision, per-mode; idle and restart open sessions with as many)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each measured phase starts new sessions or cycles")
	fs.IntVar(&o.Runs, "runs", 3, "measurements per mode (decision, per-mode, mpac), ceiling and server side by side each time")
	fs.StringVar(&modes, "modes", "", "per-mode: comma-separated modes (default: every built-in mode)")
	fs.StringVar(&checkpoints, "checkpoints", "10,1000,5000,10000", "long-session: log lengths at which a window is measured")
	fs.IntVar(&o.Window, "window", 500, "long-session: messages measured at each checkpoint")
	fs.StringVar(&mpacWasm, "mpac-wasm", "", "mpac: the built examples/modes/mpac module (make bin/mpac.wasm)")
	fs.IntVar(&o.Agents, "agents", 32, "mpac: agents sharing the session")
	fs.IntVar(&o.IdleSessions, "idle-sessions", 10000, "idle: sessions opened")
	fs.DurationVar(&o.IdleWindow, "idle-window", 45*time.Second, "idle: how long the server is watched idle (the kernel evicts sessions idle for 30 s)")
	fs.IntVar(&o.Fill, "fill", 100000, "restart: messages to log before restarting (0: restart on --data-dir as it is)")
	fs.IntVar(&o.SessionMessages, "session-messages", 100, "restart: messages per filled session (resolved Decision sessions)")
	fs.IntVar(&o.Restarts, "restarts", 3, "restart: starts timed on the filled data")
	fs.StringVar(&o.DataDir, "data-dir", "", "restart: data directory to fill and restart on (default: a temporary one, removed)")
	fs.StringVar(&cacheDir, "wasm-cache-dir", filepath.Join(os.TempDir(), "concord-bench-wasm-cache"), "compilation cache of the servers bench starts")
	fs.BoolVar(&serverLog, "server-log", false, "copy the output of the servers bench starts to stderr")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "concord bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.Target = loadgen.Target{URL: c.server, Token: c.token, Identity: c.identity}
	if o.Target.Token != "" && o.Target.Identity == "" {
		fmt.Fprintln(stderr, "concord bench: with --token, --as must name the token's identity (it is the sessions' participant)")
		return 2
	}
	o.ServerPID = serverPID
	if modes != "" {
		o.Modes = splitList(modes)
	}
	for _, s := range splitList(checkpoints) {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintf(stderr, "concord bench: --checkpoints: %q is not a number\n", s)
			return 2
		}
		o.Checkpoints = append(o.Checkpoints, n)
	}
	if mpacWasm != "" {
		b, err := os.ReadFile(mpacWasm)
		if err != nil {
			fmt.Fprintln(stderr, "concord bench: --mpac-wasm:", err)
			return 2
		}
		o.MPACWasm = b
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "concord bench: cannot find this binary to start servers:", err)
		return 1
	}
	o.Launcher = loadgen.Launcher{Command: []string{exe}, WasmCacheDir: cacheDir}
	if serverLog {
		o.Launcher.Log = stderr
	}
	report, err := loadgen.Run(ctx, o)
	if report != nil {
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if werr := enc.Encode(report); werr != nil && err == nil {
				err = werr
			}
		} else if werr := report.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "concord bench:", err)
		return 1
	}
	return 0
}
