package kernel

import (
	"context"

	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// apply runs a session-scoped envelope (anything but SessionStart). The
// envelope joins the session's queue and is applied by the session's
// drainer (see drain); the wait for durability happens after that, so that
// the session's next messages can be applied meanwhile. The Ack goes out
// only once the entry is durable.
func (k *Kernel) apply(ctx context.Context, env *macpv1.Envelope) (*macpv1.Ack, error) {
	r := &request{ctx: ctx, env: env, done: make(chan struct{})}
	var (
		s     *session
		start bool
	)
	for {
		var err error
		if s, err = k.lookup(ctx, env.SessionId); err != nil {
			return nil, err
		}
		s.qmu.Lock()
		if s.evicted { // removed from memory meanwhile: look it up again
			s.qmu.Unlock()
			continue
		}
		s.queue = append(s.queue, r)
		start = !s.draining
		s.draining = true
		s.qmu.Unlock()
		break
	}
	if start {
		// Apply the batch that holds this envelope right here; a drainer
		// goroutine takes over only if more arrived meanwhile.
		if k.drainBatch(s) {
			go k.drain(s)
		}
	}
	<-r.done
	if r.err != nil {
		return nil, r.err
	}
	if r.dupSeq > 0 {
		// A retry of a message that may still be on its way to the disk:
		// answer once the original is durable.
		if err := s.waitDurable(ctx, r.dupSeq); err != nil {
			return nil, macperr.Wrap(macperr.InternalError, err, "the original message is not durable yet")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return k.duplicateAck(s, env), nil
	}
	if err := r.wait(ctx); err != nil {
		return nil, writeError(err, "the message could not be made durable")
	}
	return r.ack, nil
}

// request is one envelope waiting in a session's queue, and, once done is
// closed, its outcome.
type request struct {
	ctx  context.Context
	env  *macpv1.Envelope
	done chan struct{}

	ack    *macpv1.Ack
	wait   func(context.Context) error
	dupSeq uint64 // for a duplicate: the sequence of the original
	err    error
}

// drain applies the session's queued envelopes in arrival order until the
// queue is empty. One drainer runs per session at a time. It takes s.mu
// once per batch rather than once per message: when many agents write to
// one session, handing the lock from waiter to waiter would cost a
// goroutine switch (and, once the mutex turns to starvation mode, a trip
// through the run queue) for every message, and the session would spend
// most of its time waiting for the next lock holder to be scheduled.
func (k *Kernel) drain(s *session) {
	for k.drainBatch(s) {
	}
}

// drainBatch applies the envelopes queued so far and reports whether more
// arrived meanwhile; when none did, the drainer's turn is over.
func (k *Kernel) drainBatch(s *session) (more bool) {
	s.qmu.Lock()
	batch := s.queue
	s.queue = nil
	s.qmu.Unlock()
	s.mu.Lock()
	for _, r := range batch {
		k.applyRequest(s, r)
	}
	s.mu.Unlock()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) == 0 {
		s.draining = false
		return false
	}
	return true
}

// applyRequest applies r and hands its outcome over. A panic on the way is
// r's failure only: the session's lock and queue must not be left held.
// The caller holds s.mu.
func (k *Kernel) applyRequest(s *session, r *request) {
	defer close(r.done)
	defer func() {
		if p := recover(); p != nil {
			k.log.Error("panic while applying a message", "session_id", s.id(), "message_id", r.env.GetMessageId(), "panic", p)
			r.err = macperr.New(macperr.InternalError, "the message could not be applied")
		}
	}()
	r.ack, r.wait, r.dupSeq, r.err = k.applyHeld(r.ctx, s, r.env)
}
