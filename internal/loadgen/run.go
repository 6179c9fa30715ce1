package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"
)

// Scenarios lists the scenarios Run knows, in the order "all" runs them
// ("all" leaves out decision, which per-mode includes).
var Scenarios = []string{"decision", "per-mode", "long-session", "mpac", "idle", "restart"}

// Options selects a scenario and its sizes.
type Options struct {
	// Scenario is one of Scenarios, or "all".
	Scenario string
	Target   Target
	// ServerPID is the server's process; 0: find it (see Run).
	ServerPID int
	// Spawn starts a fresh local server for the run with Launcher (which
	// restart always uses) and stops it at the end; Target.URL is ignored.
	Spawn    bool
	Launcher Launcher

	Clients  int
	Duration time.Duration
	Runs     int
	// Modes are per-mode's modes (default: every built-in mode).
	Modes []string

	Checkpoints []int
	Window      int

	MPACWasm []byte
	Agents   int

	IdleSessions int
	IdleWindow   time.Duration

	Fill, SessionMessages, Restarts int
	DataDir                         string
}

// Run runs the scenario. The server's process, for its CPU and memory, is
// ServerPID when set, the spawned server with Spawn, and otherwise, for a
// server URL on a loopback address, the process listening on its port
// (FindListener); for any other server it is unknown and CPU and memory
// are not reported.
func Run(ctx context.Context, o Options) (*Report, error) {
	scenarios := []string{o.Scenario}
	if o.Scenario == "all" { // per-mode runs decision too
		scenarios = slices.DeleteFunc(slices.Clone(Scenarios), func(s string) bool { return s == "decision" })
	} else if !slices.Contains(Scenarios, o.Scenario) {
		return nil, fmt.Errorf("unknown scenario %q (one of %v or all)", o.Scenario, Scenarios)
	}
	if slices.Contains(scenarios, "mpac") && len(o.MPACWasm) == 0 {
		return nil, fmt.Errorf("mpac uploads examples/modes/mpac: build it (make bin/mpac.wasm) and give --mpac-wasm")
	}
	r := &Report{Scenario: o.Scenario, Date: time.Now().UTC(), Machine: ThisMachine(), LoadAvgStart: LoadAverage()}
	defer func() { r.LoadAvgEnd = LoadAverage() }()
	needsServer := slices.ContainsFunc(scenarios, func(s string) bool { return s != "restart" })
	if needsServer {
		stop, err := r.locateServer(&o)
		if err != nil {
			return r, err
		}
		defer stop()
	}
	server := Meter{PID: o.ServerPID}
	for _, s := range scenarios {
		var err error
		switch s {
		case "decision", "per-mode":
			modes := []string{ModeDecision}
			if s == "per-mode" {
				modes = o.Modes
				if len(modes) == 0 {
					modes = BuiltinModes
					if o.Target.SharedIdentity() {
						modes = ModesWithoutPeer(modes)
					}
				}
			}
			var runs []ThroughputRun
			runs, err = Throughput(ctx, ThroughputConfig{Target: o.Target, Server: server, Modes: modes, Clients: o.Clients, Duration: o.Duration, Runs: o.Runs})
			r.Throughput = append(r.Throughput, runs...)
			r.Summarise()
		case "long-session":
			r.LongSession, err = LongSession(ctx, LongSessionConfig{Target: o.Target, Server: server, Checkpoints: o.Checkpoints, Window: o.Window})
		case "mpac":
			for range max(o.Runs, 1) {
				var m *MPACResult
				m, err = MPAC(ctx, MPACConfig{Target: o.Target, Server: server, Wasm: o.MPACWasm, Agents: o.Agents, Duration: o.Duration})
				if err != nil {
					break
				}
				r.MPAC = append(r.MPAC, *m)
			}
		case "idle":
			r.Idle, err = Idle(ctx, IdleConfig{Target: o.Target, Server: server, Sessions: o.IdleSessions, Clients: o.Clients, Window: o.IdleWindow})
		case "restart":
			r.Restart, err = Restart(ctx, RestartConfig{Launcher: o.Launcher, DataDir: o.DataDir, Fill: o.Fill,
				SessionMessages: o.SessionMessages, Clients: o.Clients, Restarts: o.Restarts})
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", s, err)
		}
	}
	return r, nil
}

// locateServer starts the server when o.Spawn is set, and finds its
// process; the returned function stops a spawned server.
func (r *Report) locateServer(o *Options) (stop func(), err error) {
	stop = func() {}
	switch {
	case o.Spawn:
		dir, err := os.MkdirTemp("", "concord-bench-data-")
		if err != nil {
			return stop, err
		}
		addr, err := FreeAddr()
		if err != nil {
			return stop, err
		}
		p, err := o.Launcher.Start(dir, addr)
		if err != nil {
			os.RemoveAll(dir)
			return stop, err
		}
		stop = func() {
			_ = p.Stop()
			os.RemoveAll(dir)
		}
		if _, err := p.WaitReady(context.Background(), 10*time.Minute); err != nil {
			stop()
			return func() {}, err
		}
		o.Target.URL, o.ServerPID = p.URL, p.PID
		r.ServerPIDFrom = "started by concord bench, data in " + dir
	case o.ServerPID != 0:
		r.ServerPIDFrom = "given by --server-pid"
	default:
		if port, ok := loopbackPort(o.Target.URL); ok {
			if pid, err := FindListener(port); err == nil {
				o.ServerPID = pid
				r.ServerPIDFrom = fmt.Sprintf("the process listening on port %d (/proc/net/tcp, /proc/<pid>/fd)", port)
			}
		}
	}
	r.Server, r.ServerPID = o.Target.URL, o.ServerPID
	return stop, nil
}

// loopbackPort returns the port of a URL whose host is a loopback address
// or localhost.
func loopbackPort(raw string) (int, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return 0, false
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0, false
	}
	n, err := strconv.Atoi(port)
	return n, err == nil
}
