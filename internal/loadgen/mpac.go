package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// ModeMPAC is the example MPAC-style mode, examples/modes/mpac.
const ModeMPAC = "ext.mpac.intent.v1"

// MPACConfig runs the MPAC-style cycle: Agents agents share one session of
// the example mode ext.mpac.intent.v1 (uploaded, so sandboxed), each
// following it on its own StreamSession, and each repeats announce intent
// → commit operation (with the watermark it has seen) → withdraw on its
// own path. Every step is durable before its Ack and is fanned out to
// every agent.
type MPACConfig struct {
	Target Target
	Server Meter
	// Wasm is the mode's module, uploaded through AdminService/UploadMode.
	Wasm     []byte
	Agents   int
	Duration time.Duration
}

// MPACResult is the throughput of the cycle.
type MPACResult struct {
	SessionID    string  `json:"session_id"`
	Agents       int     `json:"agents"`
	Cycles       int64   `json:"cycles"`
	Steps        int64   `json:"steps"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	Seconds      float64 `json:"seconds"`
	CyclesPerSec float64 `json:"cycles_per_sec"`
	StepsPerSec  float64 `json:"durable_steps_per_sec"`
	// Delivered counts envelopes the agents received on their streams in
	// the window: each step reaches every agent.
	Delivered    int64      `json:"delivered"`
	StepLatency  Quantiles  `json:"step_latency"`
	CycleLatency Quantiles  `json:"cycle_latency"`
	Server       *ProcUsage `json:"server,omitempty"`
	// LoadGenerator is this process's use: the 32 agents.
	LoadGenerator ProcUsage `json:"load_generator"`
}

// MPAC runs the configuration.
func MPAC(ctx context.Context, cfg MPACConfig) (*MPACResult, error) {
	if cfg.Target.SharedIdentity() {
		return nil, errors.New("mpac needs a distinct identity per agent (its participants must differ): use dev authentication")
	}
	if cfg.Agents < 1 || cfg.Duration <= 0 || len(cfg.Wasm) == 0 {
		return nil, errors.New("mpac needs at least one agent, a positive duration and the module (--mpac-wasm)")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops := dial(cfg.Target)
	defer ops.close()
	if err := uploadMPAC(ctx, ops, cfg); err != nil {
		return nil, err
	}
	names := make([]string, cfg.Agents)
	for i := range names {
		names[i] = cfg.Target.Name("agent-" + strconv.Itoa(i))
	}
	res := &MPACResult{SessionID: newSessionID(), Agents: cfg.Agents}
	sid := res.SessionID
	coordinator := cfg.Target.Name("coordinator")
	if _, err := ops.send(ctx, coordinator, envelope(ModeMPAC, "SessionStart", "m0", sid, coordinator, &macpv1.SessionStartPayload{
		Intent: "mpac cycle", Participants: names, ModeVersion: "1.0.0", ConfigurationVersion: "bench", TtlMs: 24 * 3600 * 1000,
	})); err != nil {
		return nil, err
	}
	agents := make([]*mpacAgent, cfg.Agents)
	for i, name := range names {
		a, err := startMPACAgent(ctx, cfg.Target, sid, name)
		if err != nil {
			return nil, err
		}
		defer a.close()
		agents[i] = a
	}
	var (
		errs            errorCounter
		mu              sync.Mutex
		steps, cycles   atomic.Int64
		stepLat, cycLat Latencies
		wg              sync.WaitGroup
	)
	// One untimed cycle each: connections, the mode's warm instances.
	for _, a := range agents {
		wg.Go(func() {
			if _, err := a.cycle(ctx, 0, nil); err != nil {
				mu.Lock()
				errs.add(err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if errs.n > 0 {
		return nil, fmt.Errorf("warm-up: %w", errs.first)
	}
	delivered0 := int64(0)
	for _, a := range agents {
		delivered0 += a.delivered.Load()
	}
	self := Meter{PID: os.Getpid()}
	before, err := cfg.Server.Sample()
	if err != nil {
		return nil, err
	}
	selfBefore, err := self.Sample()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	deadline := began.Add(cfg.Duration)
	for _, a := range agents {
		wg.Go(func() {
			var mine Latencies
			defer stepLat.Merge(&mine)
			for n := 1; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				t0 := time.Now()
				done, err := a.cycle(ctx, n, &mine)
				steps.Add(int64(done))
				if err != nil {
					mu.Lock()
					errs.add(err)
					mu.Unlock()
					return
				}
				cycLat.Add(time.Since(t0))
				cycles.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	after, err := cfg.Server.Sample()
	if err != nil {
		return nil, err
	}
	selfAfter, err := self.Sample()
	if err != nil {
		return nil, err
	}
	res.LoadGenerator = *self.Between(selfBefore, selfAfter)
	res.Delivered = settled(ctx, func() (n int64) {
		for _, a := range agents {
			n += a.delivered.Load()
		}
		return n
	}) - delivered0
	res.Cycles, res.Steps, res.Errors, res.FirstError = cycles.Load(), steps.Load(), errs.n, firstErrorText(errs.first)
	res.Seconds = elapsed.Seconds()
	res.CyclesPerSec = float64(res.Cycles) / res.Seconds
	res.StepsPerSec = float64(res.Steps) / res.Seconds
	res.StepLatency, res.CycleLatency = stepLat.Summary(), cycLat.Summary()
	res.Server = cfg.Server.Between(before, after)
	return res, nil
}

// uploadMPAC uploads the mode unless the server already serves it (a
// module serves a mode once: an earlier run uploaded it).
func uploadMPAC(ctx context.Context, ops *conn, cfg MPACConfig) error {
	list := connect.NewRequest(&macpv1.ListExtModesRequest{})
	ops.authorize(list.Header(), cfg.Target.Name("operator"))
	modes, err := ops.rpc.ListExtModes(ctx, list)
	if err != nil {
		return fmt.Errorf("list extension modes: %w", err)
	}
	for _, m := range modes.Msg.GetModes() {
		if m.GetMode() == ModeMPAC {
			return nil
		}
	}
	up := connect.NewRequest(&adminv1.UploadModeRequest{Wasm: cfg.Wasm})
	ops.authorize(up.Header(), cfg.Target.Name("operator"))
	res, err := ops.admin().UploadMode(ctx, up)
	if err != nil {
		return fmt.Errorf("upload the mpac mode: %w", err)
	}
	if m := res.Msg.GetModule().GetMode(); m != ModeMPAC {
		return fmt.Errorf("the uploaded module is mode %q, not %s", m, ModeMPAC)
	}
	return nil
}

// mpacAgent is one participant of the shared session: a connection for
// its Sends and a StreamSession that follows the session.
type mpacAgent struct {
	name, sid string
	c         *conn
	stream    interface{ CloseRequest() error }
	// ops counts the CommitOperations seen on the stream: the watermark.
	ops       atomic.Uint64
	delivered atomic.Int64
	awaited   atomic.Value // message id of the agent's pending announce
	seen      chan struct{}
	ended     chan struct{}
}

func startMPACAgent(ctx context.Context, t Target, sid, name string) (*mpacAgent, error) {
	a := &mpacAgent{name: name, sid: sid, c: dial(t), seen: make(chan struct{}, 1), ended: make(chan struct{})}
	a.awaited.Store("")
	stream := a.c.rpc.StreamSession(ctx)
	a.c.authorize(stream.RequestHeader(), name)
	if err := stream.Send(&macpv1.StreamSessionRequest{SubscribeSessionId: sid}); err != nil {
		a.c.close()
		return nil, fmt.Errorf("%s: subscribe: %w", name, err)
	}
	a.stream = stream
	go func() {
		defer close(a.ended)
		for {
			res, err := stream.Receive()
			if err != nil {
				return
			}
			env := res.GetEnvelope()
			if env == nil {
				continue
			}
			a.delivered.Add(1)
			switch env.GetMessageType() {
			case "CommitOperation":
				a.ops.Add(1)
			case "AnnounceIntent":
				if env.GetMessageId() == a.awaited.Load().(string) {
					a.seen <- struct{}{}
				}
			}
		}
	}()
	return a, nil
}

func (a *mpacAgent) close() {
	_ = a.stream.CloseRequest()
	a.c.close()
}

// cycle runs announce → commit → withdraw for the agent's n-th intent and
// returns the number of steps acknowledged. Each agent works on one path
// of its own, so intents never conflict.
func (a *mpacAgent) cycle(ctx context.Context, n int, lat *Latencies) (int, error) {
	intent := fmt.Sprintf("%s-%d", a.name, n)
	step := func(typ, id, payload string) error {
		took, err := a.c.send(ctx, a.name, envelope(ModeMPAC, typ, id, a.sid, a.name, []byte(payload)))
		if err == nil && lat != nil {
			lat.Add(took)
		}
		return err
	}
	announce := "a:" + intent
	a.awaited.Store(announce)
	if err := step("AnnounceIntent", announce, fmt.Sprintf(`{"intent_id":%q,"scope":["%s/work"]}`, intent, a.name)); err != nil {
		return 0, err
	}
	// The watermark is what this agent has seen: wait for its own
	// announce to come back on the stream, after every earlier operation.
	select {
	case <-a.seen:
	case <-a.ended:
		return 1, fmt.Errorf("%s: the session stream ended", a.name)
	case <-time.After(30 * time.Second):
		return 1, fmt.Errorf("%s: announce %s not streamed back within 30 s", a.name, announce)
	case <-ctx.Done():
		return 1, errStopped
	}
	if err := step("CommitOperation", "c:"+intent, fmt.Sprintf(`{"intent_id":%q,"watermark":%d}`, intent, a.ops.Load())); err != nil {
		return 1, err
	}
	if err := step("Withdraw", "w:"+intent, fmt.Sprintf(`{"intent_id":%q}`, intent)); err != nil {
		return 2, err
	}
	return 3, nil
}

// settled returns count once it has stopped changing for 200 ms (at most
// 3 s after the call): the last steps' envelopes are still on their way to
// the other agents' streams when the window's last acknowledgement comes.
func settled(ctx context.Context, count func() int64) int64 {
	n, still := count(), time.Now()
	for limit := time.Now().Add(3 * time.Second); time.Now().Before(limit) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
		if m := count(); m != n {
			n, still = m, time.Now()
		} else if time.Since(still) >= 200*time.Millisecond {
			break
		}
	}
	return n
}
