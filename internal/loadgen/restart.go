package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// RestartConfig fills a data directory through a real server, then times
// restarts of `concord serve` on it: from the start of the process to the
// first successful Initialize.
type RestartConfig struct {
	Launcher Launcher
	// DataDir is the data directory; empty: a temporary one, removed at
	// the end.
	DataDir string
	// Fill is the number of messages to log first, in resolved Decision
	// sessions of SessionMessages messages each (0: restart on DataDir as
	// it is).
	Fill, SessionMessages int
	// Clients fill concurrently.
	Clients int
	// Restarts is how many times the server is started on the data.
	Restarts int
	// ReadyTimeout bounds each start (default 10 minutes).
	ReadyTimeout time.Duration
}

// RestartTiming is one start of the server on the filled data.
type RestartTiming struct {
	// ReadySeconds is process start to first successful Initialize.
	ReadySeconds float64 `json:"ready_seconds"`
	// FirstAcceptSeconds is process start to the first accepted TCP
	// connection; until then the port refused connections.
	FirstAcceptSeconds float64 `json:"first_accept_seconds"`
	// AcceptedDuringRestore is set when the port accepted connections at
	// least 50 ms before the server answered Initialize, or an Initialize
	// failed after the port accepted: the server listened while restoring.
	AcceptedDuringRestore bool  `json:"accepted_during_restore"`
	FailedInitialize      int   `json:"failed_initialize_after_accept"`
	RSSBytes              int64 `json:"rss_after_ready_bytes"`
}

// RestartResult is the fill and every restart.
type RestartResult struct {
	DataDir           string          `json:"data_dir"`
	Filled            int             `json:"filled_messages"`
	FilledSessions    int             `json:"filled_sessions"`
	FillSeconds       float64         `json:"fill_seconds,omitempty"`
	FillPerSec        float64         `json:"fill_messages_per_sec,omitempty"`
	DataBytes         int64           `json:"data_dir_bytes"`
	Restarts          []RestartTiming `json:"restarts"`
	MedianReadySecond float64         `json:"median_ready_seconds"`
}

// Restart runs the configuration.
func Restart(ctx context.Context, cfg RestartConfig) (*RestartResult, error) {
	if cfg.Restarts < 1 || cfg.Fill < 0 || (cfg.Fill > 0 && (cfg.SessionMessages < 4 || cfg.Clients < 1)) {
		return nil, errors.New("restart needs at least one restart, and to fill: at least 4 messages per session and one client")
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Minute
	}
	res := &RestartResult{DataDir: cfg.DataDir}
	if res.DataDir == "" {
		dir, err := os.MkdirTemp("", "concord-bench-restart-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		res.DataDir = dir
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	var probe probe // a filled session, looked up after each restart
	if cfg.Fill > 0 {
		p, err := cfg.Launcher.Start(res.DataDir, addr)
		if err != nil {
			return nil, err
		}
		if _, err := p.WaitReady(ctx, cfg.ReadyTimeout); err != nil {
			_ = p.Stop()
			return nil, err
		}
		began := time.Now()
		probe, err = fill(ctx, Target{URL: p.URL}, cfg, res)
		res.FillSeconds = time.Since(began).Seconds()
		res.FillPerSec = float64(res.Filled) / res.FillSeconds
		if serr := p.Stop(); err == nil {
			err = serr
		}
		if err != nil {
			return res, err
		}
	}
	res.DataBytes = dirBytes(res.DataDir)
	var ready []float64
	for range cfg.Restarts {
		t, err := restartOnce(ctx, cfg, res.DataDir, addr, probe)
		if err != nil {
			return res, err
		}
		res.Restarts = append(res.Restarts, t)
		ready = append(ready, t.ReadySeconds)
	}
	res.MedianReadySecond = Median(ready)
	return res, nil
}

// restartOnce starts the server on dataDir, waits until it is ready,
// checks that the probe session came back resolved, and stops it.
func restartOnce(ctx context.Context, cfg RestartConfig, dataDir, addr string, probe probe) (t RestartTiming, err error) {
	p, err := cfg.Launcher.Start(dataDir, addr)
	if err != nil {
		return t, err
	}
	defer func() {
		if serr := p.Stop(); err == nil {
			err = serr
		}
	}()
	r, err := p.WaitReady(ctx, cfg.ReadyTimeout)
	if err != nil {
		return t, err
	}
	t = RestartTiming{
		ReadySeconds: r.Ready.Seconds(), FirstAcceptSeconds: r.FirstAccept.Seconds(), FailedInitialize: r.FailedAfterAccept,
		AcceptedDuringRestore: r.FailedAfterAccept > 0 || r.Ready-r.FirstAccept >= 50*time.Millisecond,
	}
	if s, err := ReadProc(p.PID); err == nil {
		t.RSSBytes = s.RSS
	}
	if probe.sid != "" {
		c := dial(Target{URL: p.URL})
		defer c.close()
		md, err := c.session(ctx, probe.owner, probe.sid)
		if err != nil {
			return t, fmt.Errorf("after the restart: %w", err)
		}
		if md.GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
			return t, fmt.Errorf("after the restart, filled session %s is %s, want RESOLVED", probe.sid, md.GetState())
		}
	}
	return t, nil
}

// probe names a filled session and its owner.
type probe struct{ sid, owner string }

// fill logs cfg.Fill messages (rounded up to whole sessions) and returns
// one of the sessions.
func fill(ctx context.Context, t Target, cfg RestartConfig, res *RestartResult) (probe, error) {
	k := cfg.SessionMessages
	sessions := (cfg.Fill + k - 1) / k
	var next atomic.Int64
	var mu sync.Mutex
	var errs errorCounter
	var last probe
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		wg.Go(func() {
			c := dial(t)
			defer c.close()
			me := t.Name("fill-" + strconv.Itoa(w))
			for next.Add(1) <= int64(sessions) && ctx.Err() == nil {
				sid := newSessionID()
				if err := fillSession(ctx, c, me, sid, k); err != nil {
					mu.Lock()
					errs.add(err)
					mu.Unlock()
					return
				}
				mu.Lock()
				last = probe{sid, me}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if errs.n > 0 {
		return probe{}, fmt.Errorf("filling: %d sessions failed, first: %w", errs.n, errs.first)
	}
	if ctx.Err() != nil {
		return probe{}, errStopped
	}
	res.FilledSessions, res.Filled = sessions, sessions*k
	return last, nil
}

// fillSession logs one resolved Decision session of k messages:
// SessionStart, Proposal, k-4 Evaluations, Vote, Commitment.
func fillSession(ctx context.Context, c *conn, me, sid string, k int) error {
	envs := []*macpv1.Envelope{
		envelope(ModeDecision, "SessionStart", "m0", sid, me, &macpv1.SessionStartPayload{
			Intent: "fill", Participants: []string{me}, ModeVersion: "1.0.0", ConfigurationVersion: "bench", TtlMs: 24 * 3600 * 1000}),
		envelope(ModeDecision, "Proposal", "m1", sid, me, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"}),
	}
	for i := range k - 4 {
		envs = append(envs, envelope(ModeDecision, "Evaluation", fmt.Sprintf("e%d", i), sid, me,
			&decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "REVIEW", Confidence: 0.5, Reason: "filling the log"}))
	}
	envs = append(envs,
		envelope(ModeDecision, "Vote", "v", sid, me, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"}),
		envelope(ModeDecision, "Commitment", "c", sid, me, &macpv1.CommitmentPayload{
			CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "bench", Reason: "filled",
			ModeVersion: "1.0.0", ConfigurationVersion: "bench", OutcomePositive: true}))
	for _, env := range envs {
		if _, err := c.send(ctx, me, env); err != nil {
			return err
		}
	}
	return nil
}

// dirBytes is the total size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
