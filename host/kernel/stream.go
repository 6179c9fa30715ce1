package kernel

import (
	"context"
	"errors"

	"github.com/concord-macp/concord/host/bus"
	"github.com/concord-macp/concord/host/storage"
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

// Subscribe opens a subscription to session id's log after sequence after
// (0 = from the start). A resume point at or past the end of the log
// replays nothing and follows the session live from now on: the cursor is
// clamped to the log's end (RATIONALE "Resuming past the end of a log").
func (v View) Subscribe(ctx context.Context, id string, after uint64) (*Subscription, error) {
	s, err := v.open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	// Subscribing under the publication lock fixes the hand-over point:
	// every entry up to catch is durable in the store, every later one is
	// published live after this subscription exists. Entries applied but
	// not yet durable are above catch and arrive live.
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	return &Subscription{
		k: v.k, id: id, cursor: min(after, s.published), catch: s.published,
		live: v.k.feed.Subscribe(id, bus.DefaultBuffer),
	}, nil
}

// Next returns the next entry of the session's log, waiting for one if the
// subscription has caught up. It fails with ctx's error when ctx ends and
// with ErrLagging when the reader fell behind.
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
			return nil, subscriptionEnd(sub.live.Err())
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
			return storage.ErrStop
		}
		sub.page = append(sub.page, e)
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrStop) {
		return macperr.Wrap(macperr.InternalError, err, "could not read the session's log")
	}
	return nil
}

// Close releases the subscription.
func (sub *Subscription) Close() { sub.live.Close() }
