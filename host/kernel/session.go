package kernel

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/macperr"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// session is one session in memory. The fields above pubMu are guarded by
// mu; the snapshot rec is replaced, never mutated, once it has been queued.
//
// A session's messages are applied one at a time under mu, but the wait for
// durability happens after mu is released: the next message can be applied
// while the previous one is being written. Writes complete in the order they
// were queued; an accepted message is acknowledged, published to streams and
// announced only once it is durable, in sequence order (see publish).
type session struct {
	// sid is the session id; it never changes, so it is read without mu.
	sid string

	mu   sync.Mutex
	rec  *storev1.Session
	mode mode.Module
	// dead marks a session whose SessionStart (or load) failed after it was
	// published in the map; whoever finds it treats it as unknown, or
	// fails with the load's error.
	dead bool
	// loadErr, for a session marked dead because loading it failed, is
	// the error of that load: callers that waited for the load see it too
	// (a store that could not answer is not a session that does not exist).
	loadErr error
	// evicted marks a session removed from memory (set under mu and qmu);
	// whoever finds it looks the session up again.
	evicted bool
	// due is when the sweeper was last told the session is next due.
	due int64
	// touched is when the session was last used (Unix ms), for eviction.
	touched atomic.Int64

	qmu sync.Mutex
	// queue holds agents' envelopes waiting for the drainer, in arrival
	// order; draining is true while a drainer runs (see Kernel.drain).
	queue    []*request
	draining bool

	pubMu sync.Mutex
	// published is the highest sequence known durable and published.
	published uint64
	// inflight holds the message ids of agent entries queued for writing
	// and not yet published; the store's dedup index has the rest.
	inflight map[string]uint64
	// ready holds durable entries waiting for an earlier one to be.
	ready map[uint64]publication
	// advanced is closed (and replaced) whenever published moves.
	advanced chan struct{}
}

// publication is what goes out once an entry is durable.
type publication struct {
	entry *storev1.Entry
	event *macpv1.SessionLifecycleEvent // nil when the entry changes no state
}

func newSession(rec *storev1.Session, m mode.Module) *session {
	return &session{sid: rec.GetMetadata().GetSessionId(), rec: rec, mode: m,
		inflight: map[string]uint64{}, ready: map[uint64]publication{}, advanced: make(chan struct{})}
}

func (s *session) id() string { return s.sid }

// touch records a use of the session at now.
func (s *session) touch(now time.Time) { s.touched.Store(now.UnixMilli()) }

// seen returns the sequence of the session's agent entry with message id
// id, whether in flight or durable. The caller holds s.mu.
func (k *Kernel) seen(ctx context.Context, s *session, id string) (uint64, bool, error) {
	s.pubMu.Lock()
	seq, ok := s.inflight[id]
	s.pubMu.Unlock()
	if ok {
		return seq, true, nil
	}
	seq, ok, err := k.store.Seen(context.WithoutCancel(ctx), s.sid, id)
	if err != nil {
		return 0, false, macperr.Wrap(macperr.InternalError, err, "could not read the dedup index")
	}
	return seq, ok, nil
}

func (s *session) state() macpv1.SessionState { return s.rec.GetMetadata().GetState() }

// publish hands a durable entry to the session's streams and its lifecycle
// event to watchers, strictly in sequence order: an entry that became
// durable before an earlier one waits for it.
func (k *Kernel) publish(s *session, item publication) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.ready[item.entry.GetSequence()] = item
	moved := false
	for {
		next, ok := s.ready[s.published+1]
		if !ok {
			break
		}
		if next.entry.GetOrigin() == storev1.Origin_ORIGIN_AGENT {
			delete(s.inflight, next.entry.GetEnvelope().GetMessageId())
		}
		delete(s.ready, s.published+1)
		s.published++
		moved = true
		k.feed.Publish(s.id(), next.entry)
		if next.event != nil {
			k.lifecycle.Publish("", next.event)
		}
	}
	if moved {
		close(s.advanced)
		s.advanced = make(chan struct{})
	}
}

// waitDurable blocks until the entry with sequence seq is durable.
func (s *session) waitDurable(ctx context.Context, seq uint64) error {
	for {
		s.pubMu.Lock()
		done, ch := s.published >= seq, s.advanced
		s.pubMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
