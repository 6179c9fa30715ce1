package kernel

import (
	"context"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/macperr"
	"github.com/concord-macp/concord/host/store"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Session returns the metadata of session id for identity, expiring the
// session first if its deadline passed. Only the initiator and declared
// participants may read it (FORBIDDEN otherwise); an unknown id is
// SESSION_NOT_FOUND.
func (k *Kernel) Session(ctx context.Context, identity, id string) (*macpv1.SessionMetadata, error) {
	rec, err := k.snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	if !mayObserve(rec.GetMetadata(), identity) {
		return nil, macperr.New(macperr.Forbidden, "%q may not observe session %q", identity, id)
	}
	return rec.GetMetadata(), nil
}

// Resolution returns the accepted Commitment of a resolved session (nil
// while it has none), with the same access rules as Session.
func (k *Kernel) Resolution(ctx context.Context, identity, id string) (*macpv1.CommitmentPayload, error) {
	rec, err := k.snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	if !mayObserve(rec.GetMetadata(), identity) {
		return nil, macperr.New(macperr.Forbidden, "%q may not observe session %q", identity, id)
	}
	return rec.GetResolution(), nil
}

// snapshot returns a copy of the session's current snapshot after lazy
// expiry.
func (k *Kernel) snapshot(ctx context.Context, id string) (*storev1.Session, error) {
	s, ok := k.lookup(id)
	if !ok {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	if _, err := k.expireIfDue(ctx, s); err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "could not record the session's expiry")
	}
	return proto.Clone(s.rec).(*storev1.Session), nil
}

// ObserveSession returns the metadata of session id to an observer, who may
// read every session.
func (k *Kernel) ObserveSession(ctx context.Context, id string) (*macpv1.SessionMetadata, error) {
	rec, err := k.snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	return rec.GetMetadata(), nil
}

// Log calls fn for every entry of session id's log with a sequence above
// after, in order. It reads the durable store, so it shows exactly what a
// restart or a replay would see.
func (k *Kernel) Log(ctx context.Context, id string, after uint64, fn func(*storev1.Entry) error) error {
	if _, ok := k.lookup(id); !ok {
		return macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	return k.store.Entries(ctx, id, after, fn)
}

// ModeState renders session id's mode state as JSON through its pinned
// module, with the same access rules as Session.
func (k *Kernel) ModeState(ctx context.Context, identity, id string) ([]byte, error) {
	s, ok := k.lookup(id)
	if !ok {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	s.mu.Lock()
	rec, mode, dead := s.rec, s.mode, s.dead
	s.mu.Unlock()
	if dead {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	if !mayObserve(rec.GetMetadata(), identity) {
		return nil, macperr.New(macperr.Forbidden, "%q may not observe session %q", identity, id)
	}
	if mode == nil {
		return nil, macperr.New(macperr.InternalError, "the module session %q is pinned to is not available", id)
	}
	v, err := mode.View(ctx, &abiv1.ViewRequest{State: rec.GetModeState(), Session: abiSession(rec)})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the mode module could not render its state")
	}
	return []byte(v.GetJson()), nil
}

// Inspection is everything the kernel knows about one session.
type Inspection struct {
	Session   *storev1.Session
	ModeState []byte
}

// Inspect returns session id's snapshot and mode state view for identity
// (observers may inspect any session).
func (k *Kernel) Inspect(ctx context.Context, identity string, observer bool, id string) (*Inspection, error) {
	rec, err := k.snapshot(ctx, id)
	if err != nil {
		return nil, err
	}
	if !MayObserve(rec.GetMetadata(), identity, observer) {
		return nil, macperr.New(macperr.Forbidden, "%q may not observe session %q", identity, id)
	}
	view, err := k.view(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &Inspection{Session: rec, ModeState: view}, nil
}

// view renders a snapshot's mode state through the module it is pinned to.
func (k *Kernel) view(ctx context.Context, rec *storev1.Session) ([]byte, error) {
	mode, ok := k.catalog.Pinned(rec.GetModuleDigest())
	if !ok {
		return nil, macperr.New(macperr.InternalError, "the module session %q is pinned to is not available", rec.GetMetadata().GetSessionId())
	}
	v, err := mode.View(ctx, &abiv1.ViewRequest{State: rec.GetModeState(), Session: abiSession(rec)})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "the mode module could not render its state")
	}
	return []byte(v.GetJson()), nil
}

// ViewOf renders the mode state of a snapshot produced elsewhere (e.g. by
// Replay) through its pinned module.
func (k *Kernel) ViewOf(ctx context.Context, rec *storev1.Session) ([]byte, error) {
	return k.view(ctx, rec)
}

// Governance returns every policy decision on session id's Commitments in
// the order they were made: denials from the audit trail, the allow from
// the log. Access rules are those of Inspect.
func (k *Kernel) Governance(ctx context.Context, identity string, observer bool, id string) ([]*storev1.Governance, error) {
	if _, err := k.Inspect(ctx, identity, observer, id); err != nil {
		return nil, err
	}
	var out []*storev1.Governance
	err := k.store.EachPrefix(ctx, store.Audit, id+"\x00", func(_ string, v []byte) error {
		g := &storev1.Governance{}
		if err := proto.Unmarshal(v, g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, macperr.Wrap(macperr.InternalError, err, "could not read the audit trail")
	}
	err = k.store.Entries(ctx, id, 0, func(e *storev1.Entry) error {
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
