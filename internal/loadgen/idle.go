package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// IdleConfig opens many Decision sessions that then stay idle, and
// measures the server's memory per open session and its CPU while idle.
type IdleConfig struct {
	Target Target
	// Server must name the server's process: the scenario measures it.
	Server Meter
	// Sessions is the number of sessions opened (SessionStart only; they
	// stay open for a day unless the server is stopped).
	Sessions int
	// Clients open them concurrently.
	Clients int
	// Window is how long the server is watched idle once they are open.
	Window time.Duration
}

// IdleResult is the server's memory and CPU with the idle sessions open.
type IdleResult struct {
	Sessions      int     `json:"sessions"`
	OpenSeconds   float64 `json:"open_seconds"`
	StartsPerSec  float64 `json:"starts_per_sec"`
	RSSBefore     int64   `json:"rss_before_bytes"`
	RSSAfterOpen  int64   `json:"rss_after_open_bytes"`
	RSSAfterIdle  int64   `json:"rss_after_idle_bytes"`
	PeakRSS       int64   `json:"peak_rss_bytes"`
	BytesPerOpen  float64 `json:"bytes_per_session_after_open"`
	BytesPerIdle  float64 `json:"bytes_per_session_after_idle"`
	WindowSeconds float64 `json:"idle_window_seconds"`
	// IdleCores is the server's CPU use over the idle window, in cores.
	IdleCores      float64 `json:"idle_cores"`
	IdleCPUSeconds float64 `json:"idle_cpu_seconds"`
}

// Idle runs the configuration.
func Idle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.Server.PID == 0 {
		return nil, errors.New("idle measures the server's process: give --server-pid, or run the server on this machine")
	}
	if cfg.Sessions < 1 || cfg.Clients < 1 || cfg.Window <= 0 {
		return nil, errors.New("idle needs at least one session and one client, and a positive window")
	}
	before, err := cfg.Server.Sample()
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	var mu sync.Mutex
	var errs errorCounter
	var wg sync.WaitGroup
	began := time.Now()
	for w := range cfg.Clients {
		wg.Go(func() {
			c := dial(cfg.Target)
			defer c.close()
			me := cfg.Target.Name("idle-" + strconv.Itoa(w))
			for next.Add(1) <= int64(cfg.Sessions) && ctx.Err() == nil {
				sid := newSessionID()
				if _, err := c.send(ctx, me, envelope(ModeDecision, "SessionStart", "m0", sid, me, &macpv1.SessionStartPayload{
					Intent: "idle", Participants: []string{me}, ModeVersion: "1.0.0", ConfigurationVersion: "bench", TtlMs: 24 * 3600 * 1000,
				})); err != nil {
					mu.Lock()
					errs.add(err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if errs.n > 0 {
		return nil, fmt.Errorf("opening sessions: %d failed, first: %w", errs.n, errs.first)
	}
	if ctx.Err() != nil {
		return nil, errStopped
	}
	opened := time.Since(began)
	open, err := cfg.Server.Sample()
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(cfg.Window):
	case <-ctx.Done():
		return nil, errStopped
	}
	idle, err := cfg.Server.Sample()
	if err != nil {
		return nil, err
	}
	u := Usage(cfg.Server.PID, open, idle)
	n := float64(cfg.Sessions)
	return &IdleResult{
		Sessions: cfg.Sessions, OpenSeconds: opened.Seconds(), StartsPerSec: n / opened.Seconds(),
		RSSBefore: before.RSS, RSSAfterOpen: open.RSS, RSSAfterIdle: idle.RSS, PeakRSS: idle.PeakRSS,
		BytesPerOpen: float64(open.RSS-before.RSS) / n, BytesPerIdle: float64(idle.RSS-before.RSS) / n,
		WindowSeconds: idle.At.Sub(open.At).Seconds(), IdleCores: u.Cores, IdleCPUSeconds: u.CPUSeconds,
	}, nil
}
