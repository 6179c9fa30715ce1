package kernel

import (
	"context"
	"errors"

	"github.com/concord-macp/concord/host/bus"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/macperr"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// backfillPage is how many log entries a subscription reads from the store
// at a time while it catches up.
const backfillPage = 256

// Subscription yields a session's log from a chosen point on: first the
// entries already durable, read from the store, then the live ones, with no
// gap and no duplicate between the two.
type Subscription struct {
	k      *Kernel
	id     string
	cursor uint64 // sequence of the last entry handed out
	catch  uint64 // live entries start after this sequence
	page   []*storev1.Entry
	live   *bus.Subscription[*storev1.Entry]
}

// ErrStreamLagging ends a subscription whose reader fell too far behind the
// live session.
var ErrStreamLagging = errors.New("kernel: subscriber fell too far behind the session")

// Subscribe opens a subscription to session id's log after sequence after
// (0 = from the start) for identity; observers may follow any session, others
// only those they started or take part in.
func (k *Kernel) Subscribe(ctx context.Context, identity string, observer bool, id string, after uint64) (*Subscription, error) {
	s, ok := k.lookup(id)
	if !ok {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, macperr.New(macperr.SessionNotFound, "session %q does not exist", id)
	}
	if !observer && !mayObserve(s.rec.GetMetadata(), identity) {
		return nil, macperr.New(macperr.Forbidden, "%q may not observe session %q", identity, id)
	}
	if _, err := k.catchUp(ctx, s); err != nil {
		return nil, err
	}
	// Subscribing under the publication lock fixes the hand-over point:
	// every entry up to catch is durable in the store, every later one is
	// published live after this subscription exists.
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	return &Subscription{
		k: k, id: id, cursor: after, catch: s.published,
		live: k.feed.Subscribe(id, bus.DefaultBuffer),
	}, nil
}

// Next returns the next entry of the session's log, waiting for one if the
// subscription has caught up. It fails with ctx's error when ctx ends and
// with ErrStreamLagging when the reader fell behind.
func (sub *Subscription) Next(ctx context.Context) (*storev1.Entry, error) {
	return sub.next(ctx, true)
}

// TryNext is Next without the wait: it returns nil and no error when no
// entry is ready yet.
func (sub *Subscription) TryNext(ctx context.Context) (*storev1.Entry, error) {
	return sub.next(ctx, false)
}

func (sub *Subscription) next(ctx context.Context, wait bool) (*storev1.Entry, error) {
	if sub.cursor < sub.catch && len(sub.page) == 0 {
		if err := sub.fill(ctx); err != nil {
			return nil, err
		}
		if len(sub.page) == 0 {
			sub.cursor = sub.catch // nothing more stored; go live
		}
	}
	if len(sub.page) > 0 {
		e := sub.page[0]
		sub.page = sub.page[1:]
		sub.cursor = e.GetSequence()
		return e, nil
	}
	for {
		var (
			e  *storev1.Entry
			ok bool
		)
		if wait {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case e, ok = <-sub.live.C:
			}
		} else {
			select {
			case e, ok = <-sub.live.C:
			default:
				return nil, nil
			}
		}
		if !ok {
			if errors.Is(sub.live.Err(), bus.ErrLagging) {
				return nil, ErrStreamLagging
			}
			return nil, context.Canceled
		}
		if e.GetSequence() <= sub.cursor {
			continue
		}
		sub.cursor = e.GetSequence()
		return e, nil
	}
}

// fill reads the next page of stored entries up to the hand-over point.
func (sub *Subscription) fill(ctx context.Context) error {
	err := sub.k.store.Entries(ctx, sub.id, sub.cursor, func(e *storev1.Entry) error {
		if e.GetSequence() > sub.catch || len(sub.page) == backfillPage {
			return store.ErrStop
		}
		sub.page = append(sub.page, e)
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrStop) {
		return macperr.Wrap(macperr.InternalError, err, "could not read the session's log")
	}
	return nil
}

// Close releases the subscription.
func (sub *Subscription) Close() { sub.live.Close() }
