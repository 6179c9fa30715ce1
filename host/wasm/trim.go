package wasm

import (
	"context"
	"time"
)

// A pool grows to as many instances as calls run at once (up to
// MaxInstances), and each instance holds at least 16 MiB of linear memory
// that never shrinks. An instance idle for IdleTimeout is closed, down to
// one warm instance per module, so that a burst of load does not keep its
// memory for the life of the process.

// DefaultIdleTimeout is how long an idle instance is kept when Options
// leaves it at zero.
const DefaultIdleTimeout = 30 * time.Second

// trimEvery is how often idle instances are looked at.
const trimEvery = 5 * time.Second

// trimIdle runs until ctx ends, closing instances idle for longer than
// timeout in every module.
func (e *Engine) trimIdle(ctx context.Context, timeout time.Duration) {
	defer close(e.trimDone)
	t := time.NewTicker(min(trimEvery, timeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, m := range e.loaded() {
				m.trim(now, timeout)
			}
		}
	}
}

// loaded returns the modules loaded so far.
func (e *Engine) loaded() []*Module {
	e.mu.Lock()
	defer e.mu.Unlock()
	var mods []*Module
	for _, l := range e.modules {
		select {
		case <-l.done:
			if l.mod != nil {
				mods = append(mods, l.mod)
			}
		default:
		}
	}
	return mods
}

// trim closes the idle instances of m that have waited longer than timeout,
// keeping the most recently used one warm.
func (m *Module) trim(now time.Time, timeout time.Duration) {
	if m.closed.Load() {
		return
	}
	var keep []*instance
	for {
		select {
		case in := <-m.idle:
			keep = append(keep, in)
			continue
		default:
		}
		break
	}
	// The channel hands instances back in release order, so the last one
	// taken is the most recently used.
	for i, in := range keep {
		if i < len(keep)-1 && now.Sub(in.idleSince) > timeout {
			in.close()
			<-m.slots
			m.trimmed.Add(1)
			continue
		}
		m.idle <- in
	}
}
