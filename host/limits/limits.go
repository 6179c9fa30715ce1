// Package limits keeps one identity from monopolising a Concord server: it
// rate-limits the envelopes each authenticated identity sends and caps the
// sessions each identity may have open at once. Both limits answer with the
// MACP code RATE_LIMITED (the kernel decides where to ask).
//
// Rates are token buckets per identity, refilled continuously: a limit of N
// per minute admits a burst of N and then one envelope every 60/N seconds.
// Buckets of identities that have been idle long enough to be full again
// are forgotten, so memory stays proportional to recently active
// identities, however many names a client invents.
package limits

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Options set the limits. A zero field means no limit of that kind.
type Options struct {
	// StartsPerMinute caps the SessionStart envelopes of one identity.
	StartsPerMinute int
	// MessagesPerMinute caps every other envelope of one identity.
	MessagesPerMinute int
	// MaxOpenSessions caps the sessions one identity has started that are
	// still open or suspended.
	MaxOpenSessions int
}

// Kind says which rate an envelope counts against.
type Kind int

// The rates.
const (
	Start   Kind = iota // a SessionStart
	Message             // anything else
)

// Limiter enforces Options. It is safe for concurrent use. A nil *Limiter
// allows everything.
type Limiter struct {
	opts Options

	mu        sync.Mutex
	buckets   [2]map[string]*rate.Limiter // by Kind, then identity
	open      map[string]int              // open sessions by initiator
	lastSweep time.Time
}

// sweepEvery is how often idle buckets are looked for.
const sweepEvery = time.Minute

// New returns a Limiter enforcing opts.
func New(opts Options) *Limiter {
	return &Limiter{
		opts:    opts,
		buckets: [2]map[string]*rate.Limiter{{}, {}},
		open:    map[string]int{},
	}
}

func (l *Limiter) perMinute(k Kind) int {
	if k == Start {
		return l.opts.StartsPerMinute
	}
	return l.opts.MessagesPerMinute
}

// Allow reports whether identity may send one more envelope of kind k at
// now, and counts it if so.
func (l *Limiter) Allow(identity string, k Kind, now time.Time) bool {
	if l == nil || l.perMinute(k) <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[k][identity]
	if b == nil {
		n := l.perMinute(k)
		b = rate.NewLimiter(rate.Limit(float64(n)/60), n)
		l.buckets[k][identity] = b
	}
	return b.AllowN(now, 1)
}

// sweep forgets buckets that are full again: recreating them later gives
// the same answers. The caller holds l.mu.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for _, m := range l.buckets {
		for id, b := range m {
			if b.TokensAt(now) >= float64(b.Burst()) {
				delete(m, id)
			}
		}
	}
}

// Open takes one open-session slot for identity; it reports false, and
// takes nothing, when identity already holds its cap: capOverride when it
// is positive (a per-identity grant), else Options.MaxOpenSessions; with
// neither there is no cap, but the slot is still counted. Each slot taken
// must be given back with Close once the session ends (or fails to start).
func (l *Limiter) Open(identity string, capOverride int) bool {
	if l == nil {
		return true
	}
	limit := l.opts.MaxOpenSessions
	if capOverride > 0 {
		limit = capOverride
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit > 0 && l.open[identity] >= limit {
		return false
	}
	l.open[identity]++
	return true
}

// Restore counts a session that is already open, found at startup, even
// beyond the cap.
func (l *Limiter) Restore(identity string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[identity]++
}

// Close gives back a slot taken by Open or Restore.
func (l *Limiter) Close(identity string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[identity] <= 1 {
		delete(l.open, identity)
		return
	}
	l.open[identity]--
}

// OpenSessions returns how many slots identity holds.
func (l *Limiter) OpenSessions(identity string) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[identity]
}
