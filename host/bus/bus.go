// Package bus fans accepted events out to live subscribers: the envelopes of
// a session to its StreamSession calls, lifecycle events to WatchSessions,
// signals to WatchSignals. Publishing never blocks: each subscription has a
// bounded buffer, and a subscriber that falls that far behind is dropped and
// told so, rather than slowing the session down.
package bus

import (
	"errors"
	"sync"
)

// ErrLagging is the reason a subscription ended because its reader fell
// behind by more than its buffer.
var ErrLagging = errors.New("bus: subscriber fell too far behind and was dropped")

// DefaultBuffer is the buffer of a subscription when none is given.
const DefaultBuffer = 256

// Hub delivers values of type T published on a topic to every subscription
// of that topic. The zero value is not usable; call New.
type Hub[T any] struct {
	mu     sync.RWMutex
	topics map[string]map[*Subscription[T]]struct{}
}

// New returns an empty hub.
func New[T any]() *Hub[T] {
	return &Hub[T]{topics: map[string]map[*Subscription[T]]struct{}{}}
}

// Subscription receives the values published on one topic after it was
// made. Read them from C; when C is closed, Err says why.
type Subscription[T any] struct {
	// C yields the published values in publication order.
	C <-chan T

	c     chan T
	hub   *Hub[T]
	topic string
	once  sync.Once
	err   error
}

// Subscribe returns a subscription to topic with room for buffer values
// (DefaultBuffer if buffer <= 0).
func (h *Hub[T]) Subscribe(topic string, buffer int) *Subscription[T] {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	c := make(chan T, buffer)
	s := &Subscription[T]{C: c, c: c, hub: h, topic: topic}
	h.mu.Lock()
	subs := h.topics[topic]
	if subs == nil {
		subs = map[*Subscription[T]]struct{}{}
		h.topics[topic] = subs
	}
	subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Publish delivers v to every subscription of topic. A subscription whose
// buffer is full is closed with ErrLagging.
func (h *Hub[T]) Publish(topic string, v T) {
	var lagging []*Subscription[T]
	h.mu.RLock()
	for s := range h.topics[topic] {
		select {
		case s.c <- v:
		default:
			lagging = append(lagging, s)
		}
	}
	h.mu.RUnlock()
	for _, s := range lagging {
		s.end(ErrLagging)
	}
}

// Close ends the subscription; C is closed and Err returns nil.
func (s *Subscription[T]) Close() { s.end(nil) }

// Err returns why the subscription ended: nil after Close, ErrLagging after
// falling behind. It is meaningful once C is closed.
func (s *Subscription[T]) Err() error {
	s.hub.mu.RLock()
	defer s.hub.mu.RUnlock()
	return s.err
}

func (s *Subscription[T]) end(err error) {
	s.once.Do(func() {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		s.err = err
		if subs := s.hub.topics[s.topic]; subs != nil {
			delete(subs, s)
			if len(subs) == 0 {
				delete(s.hub.topics, s.topic)
			}
		}
		close(s.c)
	})
}
