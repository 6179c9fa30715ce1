package loadgen

import (
	"context"
	"fmt"
	"slices"
	"time"

	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// LongSessionConfig grows one Decision session with serial Evaluations
// from one agent and measures the server's CPU per message as the log
// grows.
type LongSessionConfig struct {
	Target Target
	Server Meter
	// Checkpoints are log lengths: at each, Window messages are measured,
	// the first of them being message number Checkpoint of the session
	// (SessionStart is message 1). Ascending, each at least 3.
	Checkpoints []int
	// Window is the number of messages measured at each checkpoint.
	Window int
}

// Checkpoint is the cost of the messages of one window.
type Checkpoint struct {
	// At is the number of the window's first message in the session log.
	At       int `json:"at"`
	Messages int `json:"messages"`
	// ServerCPUPerMessage is the server process's CPU time over the window
	// divided by its messages, in microseconds (absent without a process).
	ServerCPUPerMessage float64   `json:"server_cpu_per_message_us,omitempty"`
	Latency             Quantiles `json:"send_latency"`
}

// LongSessionResult is the cost of a session's messages at each checkpoint.
type LongSessionResult struct {
	SessionID   string       `json:"session_id"`
	Messages    int          `json:"messages"`
	Checkpoints []Checkpoint `json:"checkpoints"`
	// Growth is the CPU per message at the last checkpoint over that at
	// the first (1.0: flat).
	Growth float64 `json:"growth,omitempty"`
	// ServerRSSBytes is the server's resident memory at the end.
	ServerRSSBytes int64 `json:"server_rss_bytes,omitempty"`
}

// LongSession runs the configuration.
func LongSession(ctx context.Context, cfg LongSessionConfig) (*LongSessionResult, error) {
	if cfg.Window < 1 || len(cfg.Checkpoints) == 0 || !slices.IsSorted(cfg.Checkpoints) || cfg.Checkpoints[0] < 3 {
		return nil, fmt.Errorf("long-session needs ascending checkpoints of at least 3 and a window of at least 1")
	}
	for i := 1; i < len(cfg.Checkpoints); i++ {
		if cfg.Checkpoints[i] < cfg.Checkpoints[i-1]+cfg.Window {
			return nil, fmt.Errorf("checkpoint %d starts inside the window of checkpoint %d (window %d)", cfg.Checkpoints[i], cfg.Checkpoints[i-1], cfg.Window)
		}
	}
	c := dial(cfg.Target)
	defer c.close()
	me := cfg.Target.Name("long")
	res := &LongSessionResult{SessionID: newSessionID()}
	sid := res.SessionID
	logged := 0 // messages in the session's log
	send := func(env *macpv1.Envelope) (time.Duration, error) {
		took, err := c.send(ctx, me, env)
		if err == nil {
			logged++
		}
		return took, err
	}
	if _, err := send(envelope(ModeDecision, "SessionStart", "m0", sid, me, &macpv1.SessionStartPayload{
		Intent: "long session", Participants: []string{me}, ModeVersion: "1.0.0",
		ConfigurationVersion: "bench", TtlMs: 24 * 3600 * 1000,
	})); err != nil {
		return nil, err
	}
	if _, err := send(envelope(ModeDecision, "Proposal", "m1", sid, me, &decisionv1.ProposalPayload{ProposalId: "p1", Option: "x"})); err != nil {
		return nil, err
	}
	evaluation := func() (time.Duration, error) {
		return send(envelope(ModeDecision, "Evaluation", fmt.Sprintf("e%d", logged+1), sid, me,
			&decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "REVIEW", Confidence: 0.5, Reason: "growing the log"}))
	}
	for _, at := range cfg.Checkpoints {
		for logged < at-1 {
			if _, err := evaluation(); err != nil {
				return res, err
			}
		}
		before, err := cfg.Server.Sample()
		if err != nil {
			return res, err
		}
		var lat []time.Duration
		for range cfg.Window {
			took, err := evaluation()
			if err != nil {
				return res, err
			}
			lat = append(lat, took)
		}
		after, err := cfg.Server.Sample()
		if err != nil {
			return res, err
		}
		cp := Checkpoint{At: at, Messages: cfg.Window, Latency: Summarize(lat)}
		if u := cfg.Server.Between(before, after); u != nil {
			cp.ServerCPUPerMessage = u.CPUSeconds / float64(cfg.Window) * 1e6
			res.ServerRSSBytes = u.RSSBytes
		}
		res.Checkpoints = append(res.Checkpoints, cp)
	}
	res.Messages = logged
	if first, last := res.Checkpoints[0], res.Checkpoints[len(res.Checkpoints)-1]; first.ServerCPUPerMessage > 0 {
		res.Growth = last.ServerCPUPerMessage / first.ServerCPUPerMessage
	}
	return res, nil
}
