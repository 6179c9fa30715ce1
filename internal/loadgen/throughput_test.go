package loadgen

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/internal/servertest"
)

// TestThroughputEveryMode runs every built-in mode's session script
// against a real server on disk and against the ceiling: every session
// must complete, so every Send counted was acknowledged.
func TestThroughputEveryMode(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	runs, err := Throughput(context.Background(), ThroughputConfig{
		Target: Target{URL: srv.URL}, Server: Meter{PID: os.Getpid()},
		Modes: BuiltinModes, Clients: 2, Duration: 50 * time.Millisecond, Runs: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != len(BuiltinModes) {
		t.Fatalf("%d runs, want one per mode (%d)", len(runs), len(BuiltinModes))
	}
	for _, r := range runs {
		s, _ := ScriptFor(r.Mode)
		for _, ph := range []Phase{r.Ceiling, r.Concord} {
			if ph.Errors != 0 || ph.Sessions < 1 || ph.Sends != ph.Sessions*int64(s.Sends()) {
				t.Errorf("%s %s: %d sessions, %d sends (want %d per session), %d errors: %s",
					r.Mode, ph.Target, ph.Sessions, ph.Sends, s.Sends(), ph.Errors, ph.FirstError)
			}
			if ph.Latency.Count != int(ph.Sends) {
				t.Errorf("%s %s: %d latencies for %d sends", r.Mode, ph.Target, ph.Latency.Count, ph.Sends)
			}
		}
		if r.Concord.Server == nil || r.Ceiling.Server != nil {
			t.Errorf("%s: server usage %v on concord, %v on the ceiling; want it only on concord", r.Mode, r.Concord.Server, r.Ceiling.Server)
		}
	}
}
