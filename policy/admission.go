package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/concord-macp/concord/macperr"
)

// UploadLimits bound what admitting one uploaded Rego policy may cost the
// server: parsing, compiling and running its shipped tests all happen in
// the server's process, and OPA has no memory limit of its own. Zero
// fields take the defaults below.
type UploadLimits struct {
	// MaxSourceBytes caps the Rego source (default 256 KiB); parsing and
	// compiling cost memory in proportion to it.
	MaxSourceBytes int
	// TestTimeout bounds the shipped tests of one upload (default 10 s).
	TestTimeout time.Duration
	// MaxTestHeapBytes bounds how much the live heap may grow while one
	// upload is compiled and tested (default 128 MiB); beyond it the tests
	// are cancelled.
	MaxTestHeapBytes uint64
	// Concurrent is how many uploads are compiled and tested at once
	// (default 1); the others wait their turn.
	Concurrent int
	// MaxWaiting is how many uploads may wait for their turn (default 8);
	// more are refused at once.
	MaxWaiting int
	// MaxWait is how long an upload waits for its turn before it is
	// refused (default 30 s).
	MaxWait time.Duration
}

// Defaults of UploadLimits.
const (
	DefaultMaxSourceBytes   = 256 << 10
	DefaultTestTimeout      = 10 * time.Second
	DefaultMaxTestHeapBytes = 128 << 20
	DefaultUploadConcurrent = 1
	DefaultMaxWaiting       = 8
	DefaultMaxWait          = 30 * time.Second
)

func (l UploadLimits) withDefaults() UploadLimits {
	if l.MaxSourceBytes <= 0 {
		l.MaxSourceBytes = DefaultMaxSourceBytes
	}
	if l.TestTimeout <= 0 {
		l.TestTimeout = DefaultTestTimeout
	}
	if l.MaxTestHeapBytes == 0 {
		l.MaxTestHeapBytes = DefaultMaxTestHeapBytes
	}
	if l.Concurrent <= 0 {
		l.Concurrent = DefaultUploadConcurrent
	}
	if l.MaxWaiting <= 0 {
		l.MaxWaiting = DefaultMaxWaiting
	}
	if l.MaxWait <= 0 {
		l.MaxWait = DefaultMaxWait
	}
	return l
}

// admission is the queue uploads pass through: a fixed number of turns,
// a bounded number of waiters, a bounded wait.
type admission struct {
	limits  UploadLimits
	turns   chan struct{}
	waiting atomic.Int32
}

func newAdmission(l UploadLimits) *admission {
	l = l.withDefaults()
	return &admission{limits: l, turns: make(chan struct{}, l.Concurrent)}
}

// busy answers an upload that cannot have a turn now. It is RATE_LIMITED,
// whose status is RESOURCE_EXHAUSTED: the server is out of capacity for
// the moment and the same upload can succeed later.
func (a *admission) busy(format string, args ...any) error {
	return macperr.New(macperr.RateLimited, "%s; retry in a moment", fmt.Sprintf(format, args...))
}

// acquire waits for a turn and returns the function that gives it back.
func (a *admission) acquire(ctx context.Context) (release func(), err error) {
	select {
	case a.turns <- struct{}{}:
		return func() { <-a.turns }, nil
	default:
	}
	if n := a.waiting.Add(1); n > int32(a.limits.MaxWaiting) {
		a.waiting.Add(-1)
		return nil, a.busy("%d policy uploads are already waiting to be tested", n-1)
	}
	defer a.waiting.Add(-1)
	timer := time.NewTimer(a.limits.MaxWait)
	defer timer.Stop()
	select {
	case a.turns <- struct{}{}:
		return func() { <-a.turns }, nil
	case <-timer.C:
		return nil, a.busy("other policy uploads kept the test runner busy for %v", a.limits.MaxWait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// errHeapBudget is the cause of a test run cancelled for its memory.
var errHeapBudget = errors.New("the heap budget of the upload is spent")

// liveHeapMetric is the heap the last garbage collection found live; it
// ignores garbage other requests leave behind, so it grows only with what
// is really kept, such as the values a policy's tests build.
const liveHeapMetric = "/gc/heap/live:bytes"

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// watchHeap returns a context that is cancelled (cause errHeapBudget) once
// the live heap has grown by more than budget, and a stop function that
// reports whether that happened.
func watchHeap(parent context.Context, budget uint64) (context.Context, func() (exceeded bool)) {
	ctx, cancel := context.WithCancelCause(parent)
	base := liveHeap()
	done := make(chan struct{})
	var over atomic.Bool
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if liveHeap() > base+budget {
					over.Store(true)
					cancel(errHeapBudget)
					return
				}
			}
		}
	}()
	return ctx, func() bool {
		close(done)
		cancel(nil)
		return over.Load()
	}
}
