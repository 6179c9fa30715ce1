package kernel

import (
	"context"
	"errors"
	"fmt"

	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// Sessions live in the store; memory holds the ones in use. A session is
// loaded on its first access (its head, its latest state snapshot, and the
// mode stepped again over the entries after that snapshot) and evicted
// once it has been idle for Options.IdleEviction with nothing in flight.
// What the kernel keeps of every session is its id in the sorted index and,
// for open and suspended sessions, one entry in the schedule of when it is
// next due (expiry, suspension cap, timers), so memory and the sweeper's
// work follow the sessions in use, not all the sessions there are.

// lookup returns session id, loading it from the store if it is not in
// memory. Its lock is not held. An unknown session is SESSION_NOT_FOUND.
func (k *Kernel) lookup(ctx context.Context, id string) (*session, error) {
	if v, ok := k.sessions.Load(id); ok {
		return v.(*session), nil
	}
	if !k.index.has(id) {
		found, err := k.discover(ctx, id)
		if err != nil {
			return nil, macperr.Wrap(macperr.InternalError, err, "could not look session "+quote(id)+" up in the store; retry")
		}
		if !found {
			return nil, notFound(id)
		}
	}
	s := &session{sid: id, advanced: make(chan struct{})}
	s.mu.Lock()
	if v, loaded := k.sessions.LoadOrStore(id, s); loaded {
		s.mu.Unlock()
		return v.(*session), nil
	}
	defer s.mu.Unlock()
	if err := k.load(ctx, s); err != nil {
		s.dead = true
		k.sessions.CompareAndDelete(id, s)
		s.loadErr = k.loadError(id, err)
		return nil, s.loadErr
	}
	return s, nil
}

// loadError is what a caller sees when session id could not be loaded.
func (k *Kernel) loadError(id string, err error) error {
	if errors.Is(err, storage.ErrNotFound) && k.opts.Cluster == nil {
		return notFound(id)
	}
	// In a cluster an indexed session that the shared store does not
	// find is one the store cannot read yet (a stream leader elected a
	// moment ago): the session exists, so the client retries.
	return macperr.Wrap(macperr.InternalError, err, "the session could not be loaded; retry")
}

// deadError is the error of a call on s, marked dead: its load failed,
// or its SessionStart did. The caller holds s.mu.
func (s *session) deadError() error {
	if s.loadErr != nil {
		return s.loadErr
	}
	return notFound(s.sid)
}

// locked returns session id with its lock held; an unknown session, or one
// whose SessionStart failed, is SESSION_NOT_FOUND. The caller unlocks.
func (k *Kernel) locked(ctx context.Context, id string) (*session, error) {
	for {
		s, err := k.lookup(ctx, id)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		switch {
		case s.evicted:
			s.mu.Unlock()
			continue
		case s.dead:
			err := s.deadError()
			s.mu.Unlock()
			return nil, err
		}
		s.touch(k.now())
		return s, nil
	}
}

// load fills s from the store. The caller holds s.mu.
func (k *Kernel) load(ctx context.Context, s *session) error {
	head, state, err := k.store.Load(context.WithoutCancel(ctx), s.sid)
	if err != nil {
		return err
	}
	m, ok := k.catalog.Pinned(head.GetModuleDigest())
	if !ok {
		k.log.Warn("session's pinned module is not available; its messages will be refused",
			"session_id", s.sid, "digest", head.GetModuleDigest())
	}
	rec := head
	rec.ModeState = state.GetModeState()
	if state.GetSequence() < head.GetLastSequence() {
		if !ok {
			return fmt.Errorf("session %s: its state after entry %d needs its module %s", s.sid, state.GetSequence(), head.GetModuleDigest())
		}
		if rec.ModeState, err = k.restep(ctx, rec, state.GetSequence()); err != nil {
			return fmt.Errorf("session %s: %w", s.sid, err)
		}
	}
	s.rec, s.mode, s.published = rec, m, head.GetLastSequence()
	s.inflight = map[string]uint64{}
	s.ready = map[uint64]publication{}
	s.touch(k.now())
	k.schedule(s)
	return nil
}

// restep recovers a session's mode state at its last sequence from the
// state after entry from: it steps the mode again over every later entry
// the mode stepped, with the envelope, time and session clock recorded in
// the entry. Modes are deterministic, so each step is accepted again and
// gives the same state.
func (k *Kernel) restep(ctx context.Context, rec *storev1.Session, from uint64) ([]byte, error) {
	m, _ := k.catalog.Pinned(rec.GetModuleDigest())
	state, sess := rec.GetModeState(), abiSession(rec)
	err := k.store.Entries(ctx, rec.GetMetadata().GetSessionId(), from, func(e *storev1.Entry) error {
		if e.GetSequence() > rec.GetLastSequence() {
			return storage.ErrStop
		}
		if !modeStepped(e) {
			return nil
		}
		res, err := m.Step(ctx, &abiv1.StepRequest{
			State:          state,
			Envelope:       e.GetEnvelope(),
			Session:        sess,
			NowUnixMs:      e.GetAcceptedAtUnixMs(),
			RuntimeWritten: e.GetOrigin() == storev1.Origin_ORIGIN_RUNTIME,
			SessionClockMs: e.GetSessionClockMs(),
		})
		if err != nil {
			return fmt.Errorf("step entry %d again: %w", e.GetSequence(), err)
		}
		if res.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
			return fmt.Errorf("entry %d was accepted when recorded; stepped again the mode answers %s %s", e.GetSequence(), res.GetErrorCode(), res.GetErrorMessage())
		}
		state = res.GetState()
		return nil
	})
	return state, err
}

// modeStepped reports whether the mode stepped e when it was accepted: every
// agent entry, and the runtime's records of mode timers.
func modeStepped(e *storev1.Entry) bool {
	if e.GetEnvelope() == nil {
		return false
	}
	return e.GetOrigin() == storev1.Origin_ORIGIN_AGENT || isTimerRecord(e)
}

// evictIdle evicts session id if it has been idle for IdleEviction and has
// nothing in flight; otherwise it reports when to look again (0: never,
// the session is gone).
func (k *Kernel) evictIdle(id string, now int64) (again int64) {
	v, ok := k.sessions.Load(id)
	if !ok {
		return 0
	}
	s := v.(*session)
	idle := k.opts.IdleEviction.Milliseconds()
	if !s.mu.TryLock() {
		return now + idle // busy: it is not idle
	}
	defer s.mu.Unlock()
	if s.dead || s.evicted {
		return 0
	}
	if last := s.touched.Load(); now-last < idle {
		return last + idle
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if len(s.queue) > 0 || s.draining || s.published != s.rec.GetLastSequence() || len(s.inflight) > 0 {
		return now + idle
	}
	s.evicted = true
	k.sessions.CompareAndDelete(id, s)
	return 0
}
