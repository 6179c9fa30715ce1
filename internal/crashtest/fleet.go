package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/internal/proctest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

// runtimeMark prefixes the expected log item of a record the runtime
// writes for a lifecycle RPC (its message id is the runtime's).
const runtimeMark = "~"

// session is one script being played and what the server acknowledged.
type session struct {
	script *script
	mu     sync.Mutex
	// expected is the log the session must have: one item per
	// acknowledged step, a message id or runtimeMark + a message type.
	expected []string
	// envs are the acknowledged envelopes, for deliberate resends.
	envs        []*ackedEnvelope
	done        bool
	interrupted bool // a kill happened while it was under way
}

type ackedEnvelope struct {
	who string
	env *macpv1.Envelope
}

func (s *session) ack(item string, sent *ackedEnvelope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expected = append(s.expected, item)
	if sent != nil {
		s.envs = append(s.envs, sent)
	}
}

// counters are the run's figures.
type counters struct {
	acked       atomic.Int64 // steps acknowledged (agent messages and lifecycle calls)
	retries     atomic.Int64 // sends repeated after a transport error or a transient refusal
	dupOnRetry  atomic.Int64 // retries answered as duplicates: the original was durable
	probes      atomic.Int64 // deliberate resends of acknowledged messages, all answered as duplicates
	controlSeen atomic.Int64 // lifecycle retries that found the change already made
}

// fleet is the agents: each worker plays one session after another as its
// coordinator, alice and bob, over gRPC connections of its own.
type fleet struct {
	url string
	rng *rand.Rand
	rmu sync.Mutex

	cmu     sync.Mutex
	clients map[string]macpv1connect.MACPRuntimeServiceClient

	smu      sync.Mutex
	sessions []*session

	uploaded atomic.Value // mode name of the uploaded module, string
	policy   atomic.Value // id of the latest pushed policy, string

	n counters

	emu  sync.Mutex
	errs []error
}

func newFleet(url string, seed uint64) *fleet {
	f := &fleet{url: url, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clients: map[string]macpv1connect.MACPRuntimeServiceClient{}}
	f.uploaded.Store("")
	f.policy.Store("")
	return f
}

func (f *fleet) intn(n int) int {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return f.rng.IntN(n)
}

func (f *fleet) fail(err error) {
	f.emu.Lock()
	defer f.emu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *fleet) failures() []error {
	f.emu.Lock()
	defer f.emu.Unlock()
	return append([]error(nil), f.errs...)
}

func (f *fleet) client(identity string) macpv1connect.MACPRuntimeServiceClient {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	c, ok := f.clients[identity]
	if !ok {
		c = macpv1connect.NewMACPRuntimeServiceClient(proctest.H2C(), f.url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
		f.clients[identity] = c
	}
	return c
}

func (f *fleet) admin(identity string) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(proctest.H2C(), f.url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
}

// run plays sessions as worker w until stop is closed; the session under
// way when stop closes is played to its end.
func (f *fleet) run(ctx context.Context, w int, stop <-chan struct{}) {
	seed := uint64(f.intn(1 << 30))
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		s := &session{script: nextScript(rng, w, n, f.uploaded.Load().(string), f.policy.Load().(string))}
		f.smu.Lock()
		f.sessions = append(f.sessions, s)
		f.smu.Unlock()
		for _, st := range s.script.steps {
			if err := f.play(ctx, s, st); err != nil {
				f.fail(fmt.Errorf("worker %d, %s session %s: %w", w, s.script.kind, s.script.sid, err))
				return
			}
		}
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
	}
}

// retryable reports whether an RPC error is the server being down or
// going down, rather than an answer.
func retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeInvalidArgument,
		connect.CodeFailedPrecondition, connect.CodeUnauthenticated, connect.CodeAlreadyExists:
		return false
	}
	return true
}

// play does one step, repeating it with the same message id until the
// server answers it.
func (f *fleet) play(ctx context.Context, s *session, st step) error {
	c := f.client(st.who)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			f.n.retries.Add(1)
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: still unanswered when the test ran out of time", stepName(st))
			case <-time.After(time.Duration(10+f.intn(40)) * time.Millisecond):
			}
		}
		if st.act != sendEnvelope {
			done, err := f.control(ctx, s, st, attempt)
			if err != nil {
				return err
			}
			if done {
				return nil
			}
			continue
		}
		res, err := c.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: st.env}))
		if err != nil {
			if !retryable(err) {
				return fmt.Errorf("%s: %w", stepName(st), err)
			}
			continue
		}
		ack := res.Msg.GetAck()
		if !ack.GetOk() {
			if ack.GetError().GetCode() == "INTERNAL_ERROR" {
				continue // e.g. the request ended while the server shut down
			}
			return fmt.Errorf("%s refused: %s %s", stepName(st), ack.GetError().GetCode(), ack.GetError().GetMessage())
		}
		if ack.GetDuplicate() {
			if attempt == 0 {
				return fmt.Errorf("%s: the first send was answered as a duplicate", stepName(st))
			}
			f.n.dupOnRetry.Add(1)
		}
		s.ack(st.env.MessageId, &ackedEnvelope{who: st.who, env: st.env})
		f.n.acked.Add(1)
		if f.intn(20) == 0 {
			f.probe(ctx, st.who, st.env)
		}
		return nil
	}
}

// control does a lifecycle step once; done reports whether it is settled.
// A retry refused SESSION_NOT_OPEN finds the session already in the state
// the call leads to when an earlier attempt landed before its answer was
// lost.
func (f *fleet) control(ctx context.Context, s *session, st step, attempt int) (bool, error) {
	c := f.client(st.who)
	var (
		ack *macpv1.Ack
		err error
	)
	sid := s.script.sid
	switch st.act {
	case suspend:
		var res *connect.Response[macpv1.SuspendSessionResponse]
		if res, err = c.SuspendSession(ctx, connect.NewRequest(&macpv1.SuspendSessionRequest{SessionId: sid, Reason: "crash test"})); err == nil {
			ack = res.Msg.GetAck()
		}
	case resume:
		var res *connect.Response[macpv1.ResumeSessionResponse]
		if res, err = c.ResumeSession(ctx, connect.NewRequest(&macpv1.ResumeSessionRequest{SessionId: sid, Reason: "crash test"})); err == nil {
			ack = res.Msg.GetAck()
		}
	case cancel:
		var res *connect.Response[macpv1.CancelSessionResponse]
		if res, err = c.CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid, Reason: "crash test"})); err == nil {
			ack = res.Msg.GetAck()
		}
	}
	if err != nil {
		if !retryable(err) {
			return false, fmt.Errorf("%s: %w", stepName(st), err)
		}
		return false, nil
	}
	if !ack.GetOk() {
		code := ack.GetError().GetCode()
		switch {
		case code == "INTERNAL_ERROR":
			return false, nil
		case code == "SESSION_NOT_OPEN" && attempt > 0:
			md, err := c.GetSession(ctx, connect.NewRequest(&macpv1.GetSessionRequest{SessionId: sid}))
			if err != nil {
				return false, nil // ask again on the next attempt
			}
			if md.Msg.GetMetadata().GetState() != stateAfter(st.act) {
				return false, fmt.Errorf("%s refused SESSION_NOT_OPEN with the session %v", stepName(st), md.Msg.GetMetadata().GetState())
			}
			f.n.controlSeen.Add(1)
		default:
			return false, fmt.Errorf("%s refused: %s %s", stepName(st), code, ack.GetError().GetMessage())
		}
	}
	s.ack(runtimeMark+st.act.runtimeType(), nil)
	f.n.acked.Add(1)
	return true, nil
}

func stateAfter(a action) macpv1.SessionState {
	switch a {
	case suspend:
		return macpv1.SessionState_SESSION_STATE_SUSPENDED
	case cancel:
		return macpv1.SessionState_SESSION_STATE_CANCELLED
	}
	return macpv1.SessionState_SESSION_STATE_OPEN
}

func stepName(st step) string {
	if st.act == sendEnvelope {
		return fmt.Sprintf("%s %s from %s", st.env.MessageType, st.env.MessageId, st.who)
	}
	return fmt.Sprintf("%s by %s", st.act.runtimeType(), st.who)
}

// probe resends an acknowledged envelope; the answer must be a duplicate.
// A transport error (the server is going down) skips the probe.
func (f *fleet) probe(ctx context.Context, who string, env *macpv1.Envelope) {
	res, err := f.client(who).Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
	if err != nil {
		return
	}
	ack := res.Msg.GetAck()
	if !ack.GetOk() && ack.GetError().GetCode() == "INTERNAL_ERROR" {
		return // shutting down
	}
	if !ack.GetOk() || !ack.GetDuplicate() {
		f.fail(fmt.Errorf("resend of acknowledged %s %s in %s: ok=%t duplicate=%t %v", env.MessageType, env.MessageId,
			env.SessionId, ack.GetOk(), ack.GetDuplicate(), ack.GetError()))
		return
	}
	f.n.probes.Add(1)
}

// probeSample resends n acknowledged envelopes picked at random across all
// sessions (typically right after a restart: dedup must survive it).
func (f *fleet) probeSample(ctx context.Context, n int) {
	f.smu.Lock()
	all := append([]*session(nil), f.sessions...)
	f.smu.Unlock()
	if len(all) == 0 {
		return
	}
	for range n {
		s := all[f.intn(len(all))]
		s.mu.Lock()
		var pick *ackedEnvelope
		if len(s.envs) > 0 {
			pick = s.envs[f.intn(len(s.envs))]
		}
		s.mu.Unlock()
		if pick != nil {
			f.probe(ctx, pick.who, pick.env)
		}
	}
}

// markInterrupted flags every session under way (a kill just happened).
func (f *fleet) markInterrupted() {
	f.smu.Lock()
	defer f.smu.Unlock()
	for _, s := range f.sessions {
		s.mu.Lock()
		if !s.done && len(s.expected) > 0 {
			s.interrupted = true
		}
		s.mu.Unlock()
	}
}

// verification is what verify found.
type verification struct {
	sessions, finished, interrupted, entries int
}

// verify reads every session back through the server: InspectSession's
// log length and final state, and the log itself through a StreamSession
// backfill, which must be exactly the acknowledged steps in order.
func (f *fleet) verify(ctx context.Context) (verification, []error) {
	f.smu.Lock()
	all := append([]*session(nil), f.sessions...)
	f.smu.Unlock()
	var (
		v    verification
		errs []error
	)
	for _, s := range all {
		s.mu.Lock()
		expected, done, interrupted := append([]string(nil), s.expected...), s.done, s.interrupted
		s.mu.Unlock()
		if len(expected) == 0 {
			continue // its SessionStart was never acknowledged
		}
		v.sessions++
		sid := s.script.sid
		in, err := f.admin(s.script.initiator).InspectSession(ctx, connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
		if err != nil {
			errs = append(errs, fmt.Errorf("inspect %s session %s: %w", s.script.kind, sid, err))
			continue
		}
		if got := in.Msg.GetLogLength(); got != uint64(len(expected)) {
			errs = append(errs, fmt.Errorf("%s session %s: log of %d entries, %d steps acknowledged (%s)",
				s.script.kind, sid, got, len(expected), strings.Join(expected, " ")))
			continue
		}
		if done {
			v.finished++
			if interrupted {
				v.interrupted++
			}
			if st := in.Msg.GetMetadata().GetState(); st != s.script.final {
				errs = append(errs, fmt.Errorf("%s session %s ended %v, want %v", s.script.kind, sid, st, s.script.final))
			}
		}
		envs, err := proctest.StreamLog(ctx, f.client(s.script.initiator), sid, len(expected))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i, e := range envs {
			want := expected[i]
			var ok bool
			if typ, runtime := strings.CutPrefix(want, runtimeMark); runtime {
				ok = e.GetSender() == "concord" && e.GetMessageType() == typ
			} else {
				ok = e.GetMessageId() == want && e.GetSender() != "concord"
			}
			if !ok {
				errs = append(errs, fmt.Errorf("%s session %s: entry %d is %s %s from %s, want %s",
					s.script.kind, sid, i+1, e.GetMessageType(), e.GetMessageId(), e.GetSender(), want))
				break
			}
			v.entries++
		}
	}
	return v, errs
}

// sample picks up to per finished sessions of every kind.
func (f *fleet) sample(per int) []*session {
	f.smu.Lock()
	defer f.smu.Unlock()
	taken := map[string]int{}
	var out []*session
	for _, s := range f.sessions {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		if done && taken[s.script.kind] < per {
			taken[s.script.kind]++
			out = append(out, s)
		}
	}
	return out
}
