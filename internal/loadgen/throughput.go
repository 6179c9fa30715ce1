package loadgen

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ThroughputConfig drives complete sessions of some modes from many
// concurrent agents, against the server and against the ceiling.
type ThroughputConfig struct {
	Target Target
	// Server samples the server's process (PID 0: not readable).
	Server Meter
	// Modes are the built-in modes to run, one after the other.
	Modes []string
	// Clients is the number of concurrent agents, each with its own
	// connection, running sessions back to back.
	Clients int
	// Duration is how long each phase starts new sessions.
	Duration time.Duration
	// Runs is how many times each mode is measured, ceiling and server
	// side by side each time (their order alternating between runs).
	Runs int
}

// Phase is one measured window of one target.
type Phase struct {
	// Target is "concord" or "ceiling".
	Target         string    `json:"target"`
	Sessions       int64     `json:"sessions"`
	Sends          int64     `json:"sends"`
	Errors         int64     `json:"errors"`
	FirstError     string    `json:"first_error,omitempty"`
	Seconds        float64   `json:"seconds"`
	SendsPerSec    float64   `json:"sends_per_sec"`
	SessionsPerSec float64   `json:"sessions_per_sec"`
	Latency        Quantiles `json:"send_latency"`
	// Server is the Concord server's use of CPU and memory in the window
	// (absent for the ceiling, and for a server whose process is unknown).
	Server *ProcUsage `json:"server,omitempty"`
	// ServerCPUPerSend is the server's CPU time per Send, in microseconds.
	ServerCPUPerSend float64 `json:"server_cpu_per_send_us,omitempty"`
	// LoadGenerator is this process's use: the clients, and for the
	// ceiling phase the ceiling handler too.
	LoadGenerator ProcUsage `json:"load_generator"`
}

// ThroughputRun is one mode measured once against both targets.
type ThroughputRun struct {
	Mode    string `json:"mode"`
	Run     int    `json:"run"`
	Ceiling Phase  `json:"ceiling"`
	Concord Phase  `json:"concord"`
	// Ratio is Concord's Sends/s over the ceiling's.
	Ratio float64 `json:"ratio"`
}

// Throughput runs the configuration and returns one entry per mode and run.
func Throughput(ctx context.Context, cfg ThroughputConfig) ([]ThroughputRun, error) {
	scripts, err := Scripts(cfg.Modes, cfg.Target)
	if err != nil {
		return nil, err
	}
	if cfg.Clients < 1 || cfg.Runs < 1 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("throughput needs at least one client, one run and a positive duration")
	}
	ceiling, err := StartCeiling()
	if err != nil {
		return nil, err
	}
	defer ceiling.Close()
	ceilingTarget := cfg.Target
	ceilingTarget.URL = ceiling.URL
	var out []ThroughputRun
	for run := 1; run <= cfg.Runs; run++ {
		for _, s := range scripts {
			r := ThroughputRun{Mode: s.Mode, Run: run}
			phases := []struct {
				dst    *Phase
				target Target
				meter  Meter
				name   string
			}{
				{&r.Ceiling, ceilingTarget, Meter{}, "ceiling"},
				{&r.Concord, cfg.Target, cfg.Server, "concord"},
			}
			if run%2 == 0 { // alternate the order so drift favours neither
				phases[0], phases[1] = phases[1], phases[0]
			}
			for _, p := range phases {
				ph, err := runPhase(ctx, p.target, p.meter, s, cfg.Clients, cfg.Duration)
				if err != nil {
					return out, fmt.Errorf("%s on %s: %w", s.Mode, p.name, err)
				}
				ph.Target = p.name
				*p.dst = ph
			}
			if r.Ceiling.SendsPerSec > 0 {
				r.Ratio = r.Concord.SendsPerSec / r.Ceiling.SendsPerSec
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// runPhase has clients agents run script against target for d: first one
// session each, untimed (connections, warm instances), then sessions back
// to back until d has passed; a session under way at the end is finished.
func runPhase(ctx context.Context, target Target, server Meter, script Script, clients int, d time.Duration) (Phase, error) {
	conns := make([]*conn, clients)
	for i := range conns {
		conns[i] = dial(target)
		defer conns[i].close()
	}
	var warm errorCounter
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			if _, err := runSession(ctx, c, script, strconv.Itoa(i), nil); err != nil {
				mu.Lock()
				warm.add(err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if warm.n > 0 {
		return Phase{}, fmt.Errorf("warm-up: %d of %d sessions failed, first: %w", warm.n, clients, warm.first)
	}
	self := Meter{PID: os.Getpid()}
	var ph Phase
	var errs errorCounter
	var lat Latencies
	var sessions, sends atomic.Int64
	serverBefore, err := server.Sample()
	if err != nil {
		return ph, err
	}
	selfBefore, err := self.Sample()
	if err != nil {
		return ph, err
	}
	began := time.Now()
	deadline := began.Add(d)
	for i, c := range conns {
		wg.Go(func() {
			var mine Latencies
			defer lat.Merge(&mine)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				n, err := runSession(ctx, c, script, strconv.Itoa(i), &mine)
				sends.Add(int64(n))
				if err != nil {
					mu.Lock()
					errs.add(err)
					mu.Unlock()
					return // a failing agent stops: its figures would mislead
				}
				sessions.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	serverAfter, err := server.Sample()
	if err != nil {
		return ph, err
	}
	selfAfter, err := self.Sample()
	if err != nil {
		return ph, err
	}
	ph = Phase{
		Sessions: sessions.Load(), Sends: sends.Load(), Errors: errs.n, FirstError: firstErrorText(errs.first),
		Seconds: elapsed.Seconds(), Latency: lat.Summary(),
		Server: server.Between(serverBefore, serverAfter), LoadGenerator: *self.Between(selfBefore, selfAfter),
	}
	ph.SendsPerSec = float64(ph.Sends) / ph.Seconds
	ph.SessionsPerSec = float64(ph.Sessions) / ph.Seconds
	if ph.Server != nil && ph.Sends > 0 {
		ph.ServerCPUPerSend = ph.Server.CPUSeconds / float64(ph.Sends) * 1e6
	}
	if ctx.Err() != nil {
		return ph, errStopped
	}
	return ph, nil
}

// runSession runs one complete session of script as agent role, recording
// each Send's duration in lat (when not nil). It returns the number of
// Sends answered with a positive Ack.
func runSession(ctx context.Context, c *conn, script Script, role string, lat *Latencies) (int, error) {
	self, other := c.target.Name(role), c.target.Name(role+".peer")
	names, envs := script.envelopes(newSessionID(), self, other)
	for i, env := range envs {
		took, err := c.send(ctx, names[i], env)
		if err != nil {
			return i, err
		}
		if lat != nil {
			lat.Add(took)
		}
	}
	return len(envs), nil
}
