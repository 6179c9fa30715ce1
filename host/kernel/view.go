package kernel

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/access"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// View is the kernel as one caller may see it. Every read of a session —
// its metadata, log, mode state, governance decisions, replays, streams and
// watches — goes through a View, and every View method checks the caller's
// access first, so a read that skips the check cannot be written. Observers
// see every session; other callers the sessions they started or take part
// in (access.Caller.MayObserve). A session the caller may not see is
// FORBIDDEN, an unknown one SESSION_NOT_FOUND.
//
// A View is a small value; make one per call with Kernel.As.
type View struct {
	k      *Kernel
	caller access.Caller
}

// As returns the kernel as caller sees it.
func (k *Kernel) As(caller access.Caller) View { return View{k: k, caller: caller} }

// Caller returns the caller the view belongs to.
func (v View) Caller() access.Caller { return v.caller }

// open returns session id locked, if the caller may see it, brought up to
// date first (due timers, expiry). The caller unlocks.
func (v View) open(ctx context.Context, id string) (*session, error) {
	s, err := v.k.locked(ctx, id)
	if err != nil {
		return nil, err
	}
	if !v.caller.MayObserve(s.rec.GetMetadata()) {
		s.mu.Unlock()
		return nil, macperr.New(macperr.Forbidden, "%.64q may not observe session %.128q", v.caller.ID, id)
	}
	if _, err := v.k.catchUp(ctx, s); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return s, nil
}

// snapshot returns session id's current snapshot (see open). A snapshot is
// replaced, never changed, once published, so the live one is returned:
// callers must not modify it.
func (v View) snapshot(ctx context.Context, id string) (*storev1.Session, error) {
	s, err := v.open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.rec, nil
}

// Session returns the metadata of session id. The result must not be
// modified.
func (v View) Session(ctx context.Context, id string) (*macpv1.SessionMetadata, error) {
	rec, err := v.snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	return rec.GetMetadata(), nil
}

// Inspection is everything the kernel knows about one session at one
// point of its history.
type Inspection struct {
	// Session is the snapshot; it must not be modified.
	Session *storev1.Session
	// ModeState is the mode's state view (JSON) rendered by the session's
	// pinned module.
	ModeState []byte
}

// Inspect returns session id's snapshot and mode state view.
func (v View) Inspect(ctx context.Context, id string) (*Inspection, error) {
	rec, err := v.snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	view, err := v.k.render(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &Inspection{Session: rec, ModeState: view}, nil
}

// render renders a snapshot's mode state through the module it is pinned to.
func (k *Kernel) render(ctx context.Context, rec *storev1.Session) ([]byte, error) {
	m, ok := k.catalog.Pinned(rec.GetModuleDigest())
	if !ok {
		return nil, macperr.New(macperr.InternalError, "the module session %q is pinned to is not available", rec.GetMetadata().GetSessionId())
	}
	out, err := m.View(ctx, &abiv1.ViewRequest{State: rec.GetModeState(), Session: abiSession(rec)})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the mode module could not render its state")
	}
	return []byte(out.GetJson()), nil
}

// Log calls fn for every entry of session id's log with a sequence above
// after, in order. It reads the durable store, so it shows exactly what a
// restart or a replay would see, and at least every entry the session's
// metadata counted when Log was called.
func (v View) Log(ctx context.Context, id string, after uint64, fn func(*storev1.Entry) error) error {
	rec, err := v.snapshot(ctx, id)
	if err != nil {
		return err
	}
	// Show at least what the snapshot shows: wait for its last write.
	if s, err := v.k.lookup(ctx, id); err == nil {
		if err := s.waitDurable(ctx, rec.GetLastSequence()); err != nil {
			return macperr.Wrap(macperr.InternalError, err, "the session's last write is not durable yet")
		}
	}
	if err := v.k.store.Entries(ctx, id, after, fn); err != nil {
		return macperr.Wrap(macperr.InternalError, err, "could not read the session's log")
	}
	return nil
}

// Export returns session id's snapshot and its whole durable log, cut at
// the snapshot's last sequence: what `concord replay --file` replays.
func (v View) Export(ctx context.Context, id string) (*storev1.Session, []*storev1.Entry, error) {
	rec, err := v.snapshot(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	entries, err := v.k.entries(ctx, id, rec.GetLastSequence())
	if err != nil {
		return nil, nil, err
	}
	return rec, entries, nil
}

// entries reads session id's durable log up to sequence last, waiting for
// the write of last if it is still in flight. Entries past last (a commit
// racing this read) are left out.
func (k *Kernel) entries(ctx context.Context, id string, last uint64) ([]*storev1.Entry, error) {
	if s, err := k.lookup(ctx, id); err == nil {
		if err := s.waitDurable(ctx, last); err != nil {
			return nil, macperr.Wrap(macperr.InternalError, err, "the session's last write is not durable yet")
		}
	}
	var out []*storev1.Entry
	err := k.store.Entries(ctx, id, 0, func(e *storev1.Entry) error {
		if e.GetSequence() > last {
			return storage.ErrStop
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "could not read the session's log")
	}
	return out, nil
}

// Governance returns every policy decision on session id's Commitments in
// the order they were made: denials from the audit trail, the allow from
// the log.
func (v View) Governance(ctx context.Context, id string) ([]*storev1.Governance, error) {
	if _, err := v.snapshot(ctx, id); err != nil {
		return nil, err
	}
	var out []*storev1.Governance
	err := v.k.store.EachPrefix(ctx, storage.Audit, id+"\x00", func(_ string, b []byte) error {
		g := &storev1.Governance{}
		if err := proto.Unmarshal(b, g); err != nil {
			return fmt.Errorf("decode a governance record: %w", err)
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "could not read the audit trail")
	}
	err = v.k.store.Entries(ctx, id, 0, func(e *storev1.Entry) error {
		if g := e.GetGovernance(); g != nil {
			out = append(out, g)
		}
		return nil
	})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "could not read the log")
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetDecidedAtUnixMs() < out[j].GetDecidedAtUnixMs() })
	return out, nil
}

// Replay replays session id's log through its pinned module and bound
// policy and compares the outcome with the recording (see Replay).
func (v View) Replay(ctx context.Context, id string) (*ReplayResult, error) {
	rec, entries, err := v.Export(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := Replay(ctx, rec, entries, v.k.catalog, v.k.governor)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the replay could not run")
	}
	if res.Session != nil {
		if res.ModeState, err = v.k.render(ctx, res.Session); err != nil {
			res.Divergences = append(res.Divergences, "the replayed state does not render: "+macperr.As(err).Message)
		}
	}
	return res, nil
}

// StateAt recomputes session id as it was right after the entry with
// sequence seq, by replaying its log up to there through the pinned module
// and bound policy (not by reading stored views): the snapshot and the mode
// state view at that point of its history.
func (v View) StateAt(ctx context.Context, id string, seq uint64) (*Inspection, error) {
	rec, entries, err := v.Export(ctx, id)
	if err != nil {
		return nil, err
	}
	if seq == 0 || seq > uint64(len(entries)) {
		return nil, macperr.New(macperr.InvalidEnvelope, "session %.128q has no entry %d (its log has %d)", id, seq, len(entries))
	}
	at, err := replayThrough(ctx, rec, entries[:seq], v.k.catalog, v.k.governor)
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "could not replay the session")
	}
	view, err := v.k.render(ctx, at)
	if err != nil {
		return nil, err
	}
	return &Inspection{Session: at, ModeState: view}, nil
}
