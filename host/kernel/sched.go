package kernel

import (
	"container/heap"
	"context"
	"sync"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The sweeper works from two schedules instead of scanning every session:
// when each open or suspended session is next due (its expiry, its
// suspension cap, its earliest timer), and when each session in memory may
// next be idle enough to evict. A session has at most one current due
// entry (dues remembers which); entries made stale by a later change are
// skipped when they come up.

type item struct {
	at int64 // Unix milliseconds
	id string
}

// timeline is a min-heap of items by time.
type timeline []item

func (t timeline) Len() int           { return len(t) }
func (t timeline) Less(i, j int) bool { return t[i].at < t[j].at }
func (t timeline) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *timeline) Push(x any)        { *t = append(*t, x.(item)) }
func (t *timeline) Pop() any {
	old := *t
	it := old[len(old)-1]
	*t = old[:len(old)-1]
	return it
}

// schedules holds the sweeper's two timelines.
type schedules struct {
	mu   sync.Mutex
	due  timeline
	dues map[string]int64 // session id -> its current due time
	idle timeline
}

func newSchedules() *schedules { return &schedules{dues: map[string]int64{}} }

// setDue records when session id is next due; 0 clears it.
func (sc *schedules) setDue(id string, at int64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if at == 0 {
		delete(sc.dues, id)
		return
	}
	if sc.dues[id] == at {
		return
	}
	sc.dues[id] = at
	heap.Push(&sc.due, item{at, id})
}

// popDue returns the next session due by now, if any.
func (sc *schedules) popDue(now int64) (string, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for len(sc.due) > 0 && sc.due[0].at <= now {
		it := heap.Pop(&sc.due).(item)
		if sc.dues[it.id] == it.at { // not made stale by a later change
			delete(sc.dues, it.id)
			return it.id, true
		}
	}
	return "", false
}

// watchIdle asks to look at session id for eviction at at.
func (sc *schedules) watchIdle(id string, at int64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	heap.Push(&sc.idle, item{at, id})
}

// popIdle returns the next session to look at for eviction by now.
func (sc *schedules) popIdle(now int64) (string, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if len(sc.idle) == 0 || sc.idle[0].at > now {
		return "", false
	}
	return heap.Pop(&sc.idle).(item).id, true
}

// nextDue is when session rec next needs the sweeper: the earliest of its
// expiry and its first timer while open, its suspension cap while
// suspended; 0 once it has ended.
func nextDue(rec *storev1.Session) int64 {
	switch rec.GetMetadata().GetState() {
	case macpv1.SessionState_SESSION_STATE_OPEN:
		at := rec.GetDeadlineUnixMs() + 1 // expired once now > deadline
		if ts := rec.GetTimers(); len(ts) > 0 {
			at = min(at, rec.GetAnchorUnixMs()+rec.GetSuspendedTotalMs()+ts[0].GetDueSessionClockMs())
		}
		return at
	case macpv1.SessionState_SESSION_STATE_SUSPENDED:
		return rec.GetSuspendedAtUnixMs() + rec.GetMaxSuspendMs() - rec.GetSuspendedTotalMs() + 1
	}
	return 0
}

// schedule records when session s is next due, and watches it for
// eviction once it is idle. Call it when s enters memory. The caller holds
// s.mu.
func (k *Kernel) schedule(s *session) {
	s.due = nextDue(s.rec)
	k.sched.setDue(s.sid, s.due)
	if k.opts.IdleEviction > 0 {
		k.sched.watchIdle(s.sid, k.now().UnixMilli()+k.opts.IdleEviction.Milliseconds())
	}
}

// reschedule tells the sweeper when s is next due, if that changed. The
// caller holds s.mu.
func (k *Kernel) reschedule(s *session) {
	if at := nextDue(s.rec); at != s.due {
		s.due = at
		k.sched.setDue(s.sid, at)
	}
}

// sweep expires sessions and fires mode timers that came due, so that both
// happen even when nobody touches the session, and evicts idle sessions.
func (k *Kernel) sweepDue(ctx context.Context) {
	now := k.now().UnixMilli()
	for ctx.Err() == nil {
		id, ok := k.sched.popDue(now)
		if !ok {
			break
		}
		if !k.owns(id) {
			continue // the owner node sweeps it (cluster.go)
		}
		s, err := k.locked(ctx, id)
		if err != nil {
			k.log.Error("sweep: load a due session", "session_id", id, "err", err)
			continue
		}
		// The entry just taken is gone: whatever is due next is scheduled
		// again, whether or not catching up changed anything.
		s.due = 0
		if _, err := k.catchUp(ctx, s); err != nil {
			k.log.Error("sweep: catch up with session", "session_id", id, "err", err)
		}
		k.reschedule(s)
		s.mu.Unlock()
	}
	if k.opts.IdleEviction <= 0 {
		return
	}
	for ctx.Err() == nil {
		id, ok := k.sched.popIdle(now)
		if !ok {
			break
		}
		if again := k.evictIdle(id, now); again > 0 {
			k.sched.watchIdle(id, again)
		}
	}
}
