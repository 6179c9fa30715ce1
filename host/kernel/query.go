package kernel

import (
	"context"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/macperr"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// observe returns session id's current snapshot for identity, expiring the
// session first if its time ran out. Observers may read every session,
// others only those they started or take part in (FORBIDDEN otherwise); an
// unknown id is SESSION_NOT_FOUND. A snapshot is replaced, never changed,
// once published, so the live one is returned: callers must not modify it.
func (k *Kernel) observe(ctx context.Context, identity string, observer bool, id string) (*storev1.Session, error) {
	s, ok := k.lookup(id)
	if !ok {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	if !MayObserve(s.rec.GetMetadata(), identity, observer) {
		return nil, macperr.New(macperr.Forbidden, "%q may not observe session %q", identity, id)
	}
	if _, err := k.catchUp(ctx, s); err != nil {
		return nil, err
	}
	return s.rec, nil
}

// Session returns the metadata of session id to identity (see observe for
// who may read it). The result must not be modified.
func (k *Kernel) Session(ctx context.Context, identity string, observer bool, id string) (*macpv1.SessionMetadata, error) {
	rec, err := k.observe(ctx, identity, observer, id)
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

// Inspection is everything the kernel knows about one session.
type Inspection struct {
	Session   *storev1.Session
	ModeState []byte
}

// Inspect returns session id's snapshot and mode state view for identity
// (see observe for who may read it). The snapshot must not be modified.
func (k *Kernel) Inspect(ctx context.Context, identity string, observer bool, id string) (*Inspection, error) {
	rec, err := k.observe(ctx, identity, observer, id)
	if err != nil {
		return nil, err
	}
	view, err := k.ViewOf(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &Inspection{Session: rec, ModeState: view}, nil
}

// ViewOf renders a snapshot's mode state (this kernel's, or one produced by
// Replay) through the module it is pinned to.
func (k *Kernel) ViewOf(ctx context.Context, rec *storev1.Session) ([]byte, error) {
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

// Governance returns every policy decision on session id's Commitments in
// the order they were made: denials from the audit trail, the allow from
// the log. Access rules are those of observe.
func (k *Kernel) Governance(ctx context.Context, identity string, observer bool, id string) ([]*storev1.Governance, error) {
	if _, err := k.observe(ctx, identity, observer, id); err != nil {
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
