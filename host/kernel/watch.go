package kernel

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/bus"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// ListSessions paging bounds.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ErrBadPage reports an invalid page size or page token.
var ErrBadPage = errors.New("kernel: invalid page request")

// ErrLagging ends a stream or a watch whose reader fell too far behind the
// sessions it follows.
var ErrLagging = errors.New("kernel: the reader fell too far behind and was dropped")

// SessionFilter selects sessions; its zero value selects every session.
type SessionFilter struct {
	// States, when not empty, lists the states to select.
	States []macpv1.SessionState
	// Mode selects sessions of one mode.
	Mode string
	// Initiator selects sessions one identity started.
	Initiator string
	// Participant selects sessions an identity started or takes part in.
	Participant string
	// ContextID selects sessions with this context_id.
	ContextID string
	// StartedFromUnixMs and StartedUntilUnixMs, when not zero, bound the
	// sessions' start time (inclusive).
	StartedFromUnixMs, StartedUntilUnixMs int64
}

// Match reports whether a session with metadata md is selected.
func (f SessionFilter) Match(md *macpv1.SessionMetadata) bool {
	switch {
	case len(f.States) > 0 && !slices.Contains(f.States, md.GetState()),
		f.Mode != "" && md.GetMode() != f.Mode,
		f.Initiator != "" && md.GetInitiator() != f.Initiator,
		f.Participant != "" && md.GetInitiator() != f.Participant && !slices.Contains(md.GetParticipants(), f.Participant),
		f.ContextID != "" && md.GetContextId() != f.ContextID,
		f.StartedFromUnixMs != 0 && md.GetStartedAtUnixMs() < f.StartedFromUnixMs,
		f.StartedUntilUnixMs != 0 && md.GetStartedAtUnixMs() > f.StartedUntilUnixMs:
		return false
	}
	return true
}

// ListSessions returns one page of the sessions the caller may see that
// filter selects, active and terminal, in ascending session id order.
// pageToken is "" for the first page; an empty next token means the last
// page.
func (v View) ListSessions(ctx context.Context, filter SessionFilter, pageSize int32, pageToken string) ([]*macpv1.SessionMetadata, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", errors.Join(ErrBadPage, errors.New("page_size must not be negative"))
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	after := ""
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || len(b) == 0 {
			return nil, "", errors.Join(ErrBadPage, errors.New("page_token is not one this server issued"))
		}
		after = string(b)
	}
	var page []*macpv1.SessionMetadata
	// Read ids in chunks: the caller may see only some of them.
	for cursor := after; ; {
		ids := v.k.index.after(cursor, int(pageSize)+1)
		if len(ids) == 0 {
			return page, "", nil
		}
		for _, id := range ids {
			md, err := v.k.peek(ctx, id)
			if err != nil || !v.caller.MayObserve(md) || !filter.Match(md) {
				continue // gone, dead, not the caller's, or not selected
			}
			if len(page) == int(pageSize) {
				return page, base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].GetSessionId())), nil
			}
			page = append(page, md)
		}
		cursor = ids[len(ids)-1]
	}
}

// peek returns session id's metadata for a listing without loading the
// session: the snapshot's if the session is in memory, the stored head's
// otherwise. Listings leave expiry to the sweeper, which records it within
// one sweep interval. The result must not be modified.
func (k *Kernel) peek(ctx context.Context, id string) (*macpv1.SessionMetadata, error) {
	if v, ok := k.sessions.Load(id); ok {
		s := v.(*session)
		s.mu.Lock()
		md, dead, evicted := s.rec.GetMetadata(), s.dead, s.evicted
		s.mu.Unlock()
		switch {
		case dead:
			return nil, notFound(id)
		case !evicted:
			return md, nil
		}
	}
	head, err := k.store.Head(ctx, id)
	if err != nil {
		return nil, notFound(id)
	}
	return head.GetMetadata(), nil
}

// SessionWatch yields the lifecycle events of the sessions its caller may
// see that its filter selects: first one CREATED event for each session
// that existed when the watch began, then every later event as it happens,
// each session's CREATED exactly once.
type SessionWatch struct {
	view    View
	filter  SessionFilter
	initial []*macpv1.SessionLifecycleEvent
	// listed holds the sessions of the initial listing whose live CREATED
	// may still arrive (a session created while the listing was taken).
	listed map[string]bool
	sub    *bus.Subscription[*macpv1.SessionLifecycleEvent]
}

// WatchSessions starts a SessionWatch. Close it when done.
func (v View) WatchSessions(ctx context.Context, filter SessionFilter) *SessionWatch {
	w := &SessionWatch{view: v, filter: filter, listed: map[string]bool{},
		sub: v.k.lifecycle.Subscribe("", bus.DefaultBuffer)}
	for _, id := range v.k.index.all() {
		md, err := v.k.peek(ctx, id)
		if err != nil || !v.caller.MayObserve(md) || !filter.Match(md) {
			continue
		}
		w.listed[id] = true
		w.initial = append(w.initial, &macpv1.SessionLifecycleEvent{
			EventType:        macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED,
			Session:          proto.Clone(md).(*macpv1.SessionMetadata),
			ObservedAtUnixMs: md.GetStartedAtUnixMs(),
		})
	}
	return w
}

// Next returns the next event, waiting for one. It fails with ctx's error
// when ctx ends and with ErrLagging when the reader fell behind.
func (w *SessionWatch) Next(ctx context.Context) (*macpv1.SessionLifecycleEvent, error) {
	if len(w.initial) > 0 {
		ev := w.initial[0]
		w.initial = w.initial[1:]
		return ev, nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-w.sub.C:
			if !ok {
				return nil, subscriptionEnd(w.sub.Err())
			}
			md := ev.GetSession()
			if !w.view.caller.MayObserve(md) || !w.filter.Match(md) {
				continue
			}
			if ev.GetEventType() == macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED && w.listed[md.GetSessionId()] {
				delete(w.listed, md.GetSessionId()) // it was in the listing
				continue
			}
			return ev, nil
		}
	}
}

// Close ends the watch.
func (w *SessionWatch) Close() { w.sub.Close() }

// SignalWatch yields every accepted Signal and Progress envelope.
type SignalWatch struct {
	sub *bus.Subscription[*macpv1.Envelope]
}

// WatchSignals starts a SignalWatch. Signals are ambient: every caller,
// anonymous ones included, may watch them. Close it when done.
func (v View) WatchSignals() *SignalWatch {
	return &SignalWatch{sub: v.k.signals.Subscribe("", bus.DefaultBuffer)}
}

// Next returns the next signal, waiting for one (errors as SessionWatch's).
func (w *SignalWatch) Next(ctx context.Context) (*macpv1.Envelope, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case env, ok := <-w.sub.C:
		if !ok {
			return nil, subscriptionEnd(w.sub.Err())
		}
		return env, nil
	}
}

// Close ends the watch.
func (w *SignalWatch) Close() { w.sub.Close() }

// subscriptionEnd translates why a bus subscription ended.
func subscriptionEnd(err error) error {
	if errors.Is(err, bus.ErrLagging) {
		return ErrLagging
	}
	return context.Canceled
}
