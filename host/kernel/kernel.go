// Package kernel is the heart of the Concord server: it checks envelopes in
// the order the MACP specification fixes, deduplicates them, applies them to
// sessions through their pinned mode module, asks the bound policy about
// commitments, and acknowledges only once the store made them durable.
//
// Messages of one session are applied one after another, in batches, by
// whichever caller finds the session's queue idle; different sessions proceed
// in parallel. There is no global lock on the path of a message.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/concord-macp/concord/host/bus"
	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/mode"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// ProtocolVersion is the MACP wire version Concord speaks.
const ProtocolVersion = "1.0"

// Options configure a Kernel.
type Options struct {
	Store    storage.Store
	Catalog  mode.Catalog
	Governor policy.Governor
	Logger   *slog.Logger
	// Now is the server clock; time.Now when nil.
	Now func() time.Time
	// MaxPayloadBytes caps Envelope.payload (default 1 MiB).
	MaxPayloadBytes int
	// SweepInterval is how often the sweeper looks for sessions that are
	// due (expiry, timers) or idle (default 1s; negative disables it).
	SweepInterval time.Duration
	// IdleEviction is how long a session stays in memory unused before it
	// is evicted and served from the store again when needed (default 30s;
	// negative keeps every session in memory).
	IdleEviction time.Duration
	// DefaultMaxSuspendMs is the suspension cap when SessionStart sends 0
	// (default 7 days).
	DefaultMaxSuspendMs int64
	// Limits rate-limits each identity's envelopes and caps its open
	// sessions; nil sets no server-wide limits (a caller's own
	// MaxOpenSessions still applies).
	Limits *limits.Limiter
	// Observe, when set, is told the outcome of every envelope Send
	// answers (metrics, the admin UI's overview). It runs on the sender's
	// goroutine and must be fast and must not block.
	Observe func(Outcome)
	// Cluster, when set, makes the kernel one node of a cluster sharing
	// Store: it writes only the sessions this node owns (see cluster.go).
	Cluster Cluster
}

// Outcome is what Send answered one envelope.
type Outcome struct {
	// Mode and MessageType are the envelope's (bounded: the kernel refuses
	// longer ones, and reports "" for them).
	Mode, MessageType string
	// Code is the rejection code; "" when the envelope was accepted.
	Code macperr.Code
	// Duplicate marks a retry answered as a duplicate.
	Duplicate bool
	// State is the session's state after the envelope (accepted ones).
	State macpv1.SessionState
}

// Kernel runs sessions.
type Kernel struct {
	store    storage.Store
	catalog  mode.Catalog
	governor policy.Governor
	log      *slog.Logger
	now      func() time.Time
	limits   *limits.Limiter
	opts     Options

	sessions sync.Map // session id -> *session, the sessions in memory
	index    sessionIndex
	sched    *schedules

	// feed carries each session's accepted entries to its subscriptions
	// (topic = session id); lifecycle carries lifecycle events and signals
	// carries ambient envelopes (one topic each, "").
	feed      *bus.Hub[*storev1.Entry]
	lifecycle *bus.Hub[*macpv1.SessionLifecycleEvent]
	signals   *bus.Hub[*macpv1.Envelope]

	stopSweep context.CancelFunc
	sweepDone chan struct{}
}

// DefaultMaxPayloadBytes is the payload cap when none is configured.
const DefaultMaxPayloadBytes = 1 << 20

// New builds a Kernel over the sessions the store holds, open ones
// included, so that a restarted server continues exactly where it stopped.
// It reads only the sessions' heads; each session is loaded when first used.
func New(ctx context.Context, opts Options) (*Kernel, error) {
	if opts.Store == nil || opts.Catalog == nil || opts.Governor == nil {
		return nil, errors.New("kernel: Store, Catalog and Governor are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPayloadBytes <= 0 {
		opts.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = time.Second
	}
	if opts.IdleEviction == 0 {
		opts.IdleEviction = 30 * time.Second
	}
	if opts.Limits == nil {
		opts.Limits = limits.New(limits.Options{})
	}
	if opts.DefaultMaxSuspendMs <= 0 {
		opts.DefaultMaxSuspendMs = 7 * 24 * time.Hour.Milliseconds()
	}
	k := &Kernel{
		store:    opts.Store,
		catalog:  opts.Catalog,
		governor: opts.Governor,
		log:      opts.Logger,
		now:      opts.Now,
		limits:   opts.Limits,
		opts:     opts,
		sched:    newSchedules(),

		feed:      bus.New[*storev1.Entry](),
		lifecycle: bus.New[*macpv1.SessionLifecycleEvent](),
		signals:   bus.New[*macpv1.Envelope](),
	}
	if err := k.restore(ctx); err != nil {
		return nil, err
	}
	if opts.SweepInterval > 0 {
		sweepCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		k.stopSweep = cancel
		k.sweepDone = make(chan struct{})
		go k.sweep(sweepCtx, opts.SweepInterval)
	}
	return k, nil
}

// Close stops the background sweeper. It does not close the store.
func (k *Kernel) Close() {
	if k.stopSweep != nil {
		k.stopSweep()
		<-k.sweepDone
	}
}

// restore learns every stored session from its head: its id for the
// index, its open-session slot, and when it is next due.
func (k *Kernel) restore(ctx context.Context) error {
	n := 0
	err := k.store.Heads(ctx, func(head *storev1.Session) error {
		id := head.GetMetadata().GetSessionId()
		k.index.add(id)
		if isLive(head.GetMetadata().GetState()) {
			k.limits.Restore(head.GetMetadata().GetInitiator())
			k.sched.setDue(id, nextDue(head))
		}
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("kernel: restore sessions: %w", err)
	}
	if n > 0 {
		k.log.Info("found the stored sessions", "sessions", n)
	}
	return nil
}

// sweep runs the sweeper every interval until ctx ends.
func (k *Kernel) sweep(ctx context.Context, every time.Duration) {
	defer close(k.sweepDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.sweepDue(ctx)
	}
}

func notFound(id string) error {
	return macperr.New(macperr.SessionNotFound, "session %.128q does not exist", id)
}
