package kernel

import (
	"context"
	"encoding/base64"
	"errors"

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

// ListSessions returns one page of the sessions identity may see (every
// session for an observer), active and terminal, in ascending session id
// order. pageToken is "" for the first page; an empty next token means the
// last page.
func (k *Kernel) ListSessions(ctx context.Context, identity string, observer bool, pageSize int32, pageToken string) ([]*macpv1.SessionMetadata, string, error) {
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
		ids := k.index.after(cursor, int(pageSize)+1)
		if len(ids) == 0 {
			return page, "", nil
		}
		for _, id := range ids {
			md, err := k.Session(ctx, identity, observer, id)
			if err != nil {
				continue // gone, dead, or not the caller's
			}
			if len(page) == int(pageSize) {
				return page, base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].GetSessionId())), nil
			}
			page = append(page, md)
		}
		cursor = ids[len(ids)-1]
	}
}

// WatchSessions returns the sessions identity may see now, as CREATED
// events, and a subscription to every later lifecycle event. The caller
// filters live events with MayObserve.
func (k *Kernel) WatchSessions(ctx context.Context, identity string, observer bool) ([]*macpv1.SessionLifecycleEvent, *bus.Subscription[*macpv1.SessionLifecycleEvent]) {
	sub := k.lifecycle.Subscribe("", bus.DefaultBuffer)
	ids := k.index.all()
	var initial []*macpv1.SessionLifecycleEvent
	for _, id := range ids {
		md, err := k.Session(ctx, identity, observer, id)
		if err != nil {
			continue
		}
		initial = append(initial, &macpv1.SessionLifecycleEvent{
			EventType:        macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED,
			Session:          proto.Clone(md).(*macpv1.SessionMetadata),
			ObservedAtUnixMs: md.GetStartedAtUnixMs(),
		})
	}
	return initial, sub
}

// MayObserve reports whether identity may see a session with metadata md.
func MayObserve(md *macpv1.SessionMetadata, identity string, observer bool) bool {
	return observer || mayObserve(md, identity)
}

// WatchSignals subscribes to every accepted Signal and Progress envelope.
func (k *Kernel) WatchSignals() *bus.Subscription[*macpv1.Envelope] {
	return k.signals.Subscribe("", bus.DefaultBuffer)
}
