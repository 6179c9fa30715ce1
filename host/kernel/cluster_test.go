package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/host/storage"
	"github.com/concord-macp/concord/host/storage/memory"
	"github.com/concord-macp/concord/macperr"
	"github.com/concord-macp/concord/policy"
	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// The cluster hooks are tested with two kernels over one store and a
// small in-process Cluster that keeps the owner of each session in a map
// and forwards by calling the owner kernel's Serve. The real cluster, on
// NATS JetStream, is tested end to end in host/cluster.

type owners struct {
	mu      sync.Mutex
	owner   map[string]string
	kernels map[string]*Kernel
	st      storage.Store
	// everyone, when set, makes every node believe it owns every session
	// (a split brain: only the store's fence stands between them).
	everyone bool
}

type member struct {
	name string
	o    *owners
}

func (m member) Owns(id string) bool {
	m.o.mu.Lock()
	defer m.o.mu.Unlock()
	return m.o.everyone || m.o.owner[id] == m.name
}

func (m member) Place(ctx context.Context, id string, create bool) (bool, bool, error) {
	m.o.mu.Lock()
	defer m.o.mu.Unlock()
	switch cur := m.o.owner[id]; {
	case m.o.everyone || cur == m.name:
		return true, false, nil
	case cur != "":
		return false, false, nil
	}
	if !create {
		if _, err := m.o.st.Head(ctx, id); errors.Is(err, storage.ErrNotFound) {
			return true, false, nil
		}
	}
	m.o.owner[id] = m.name
	return true, true, nil
}

func (m member) Forward(ctx context.Context, call Call) (*macpv1.Ack, error) {
	m.o.mu.Lock()
	k := m.o.kernels[m.o.owner[call.sessionID()]]
	m.o.mu.Unlock()
	if k == nil {
		return nil, errors.New("no owner")
	}
	return k.Serve(ctx, call), nil
}

func (c Call) sessionID() string {
	if c.Envelope != nil {
		return c.Envelope.GetSessionId()
	}
	return c.SessionID
}

func (o *owners) move(id, to string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owner[id] = to
}

// twoNodes returns kernels a and b over one memory store.
func twoNodes(t *testing.T) (a, b *Kernel, o *owners, clk *clock) {
	t.Helper()
	return twoNodesOver(t, memory.New())
}

// twoNodesOver returns kernels a and b over store st.
func twoNodesOver(t *testing.T, st storage.Store) (a, b *Kernel, o *owners, clk *clock) {
	t.Helper()
	clk = &clock{t: time.UnixMilli(1_700_000_000_000)}
	o = &owners{owner: map[string]string{}, kernels: map[string]*Kernel{}, st: st}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &counter{digest: "counter-digest"}
	for _, name := range []string{"a", "b"} {
		k, err := New(context.Background(), Options{
			Store: st, Catalog: catalog{m: m}, Governor: policy.Default{}, Logger: quiet,
			Now: clk.Now, SweepInterval: -1, IdleEviction: -1, Limits: limits.New(limits.Options{}),
			Cluster: member{name: name, o: o},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		o.kernels[name] = k
	}
	return o.kernels["a"], o.kernels["b"], o, clk
}

func mustOK(t *testing.T, ack *macpv1.Ack) *macpv1.Ack {
	t.Helper()
	if !ack.GetOk() {
		t.Fatalf("refused: %v", ack.GetError())
	}
	return ack
}

func logOf(t *testing.T, st storage.Store) []string {
	t.Helper()
	var ids []string
	if err := st.Entries(context.Background(), sid, 0, func(e *storev1.Entry) error {
		ids = append(ids, e.GetEnvelope().GetMessageId())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestForwardToTheOwner: a session started on a takes its messages and
// lifecycle calls through b, which forwards them; duplicates sent to
// either node are answered as duplicates.
func TestForwardToTheOwner(t *testing.T) {
	a, b, o, _ := twoNodes(t)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	if got := o.owner[sid]; got != "a" {
		t.Fatalf("owner after the start on a: %q", got)
	}
	mustOK(t, b.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
	if ack := mustOK(t, b.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil))); !ack.GetDuplicate() {
		t.Error("a retry through b was not a duplicate")
	}
	if ack := mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil))); !ack.GetDuplicate() {
		t.Error("a retry through a was not a duplicate")
	}
	// A SessionStart retried through b reaches the owner and is a duplicate.
	if ack := mustOK(t, b.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob")))); !ack.GetDuplicate() {
		t.Error("a SessionStart retried through b was not a duplicate")
	}
	// The owner's refusals come back with their codes.
	wantCode(t, b.Send(ctx, agent("carol"), env("carol", "Note", "n2", nil)), macperr.Forbidden)
	if _, err := b.Control(ctx, agent("bob"), Suspend, sid, "no"); macperr.CodeOf(err) != macperr.Forbidden {
		t.Errorf("suspend by a participant through b: %v, want FORBIDDEN", err)
	}
	mustOK(t, must(b.Control(ctx, agent("alice"), Suspend, sid, "pause")))
	if got, want := logOf(t, o.st), []string{"m0", "n1", "runtime:suspend:3"}; !equal(got, want) {
		t.Errorf("log %v, want %v", got, want)
	}
}

func must(ack *macpv1.Ack, err error) *macpv1.Ack {
	if err != nil {
		return &macpv1.Ack{Error: &macpv1.MACPError{Code: string(macperr.CodeOf(err)), Message: err.Error()}}
	}
	return ack
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNonOwnerNeverWrites: a node that reads a session it does not own
// neither expires it nor fires its timers; the owner does.
func TestNonOwnerNeverWrites(t *testing.T) {
	a, b, o, clk := twoNodes(t)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	clk.Advance(2 * time.Minute) // past the 60 s TTL
	md, err := b.As(agent("alice")).Session(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if md.GetState() != macpv1.SessionState_SESSION_STATE_OPEN || len(logOf(t, o.st)) != 1 {
		t.Fatalf("a read on b changed the session: %v, log %v", md.GetState(), logOf(t, o.st))
	}
	b.sweepDue(ctx)
	if n := len(logOf(t, o.st)); n != 1 {
		t.Fatalf("b's sweeper wrote: log of %d", n)
	}
	a.sweepDue(ctx)
	if md, err = a.As(agent("alice")).Session(ctx, sid); err != nil || md.GetState() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("a's sweeper did not expire the session: %v %v", md.GetState(), err)
	}
	// A write on a session the node does not own is refused.
	o.move(sid, "a")
	s, err := b.locked(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.record(ctx, s, transition{origin: storev1.Origin_ORIGIN_RUNTIME, at: 1, lifecycle: macpv1.SessionState_SESSION_STATE_CANCELLED})
	s.mu.Unlock()
	if !errors.Is(err, ErrNotOwner) {
		t.Fatalf("record on a non-owner: %v, want ErrNotOwner", err)
	}
}

// TestTakeover: the owner is lost; the other node adopts the session,
// rebuilds it from the store and continues it, dedup included.
func TestTakeover(t *testing.T) {
	a, b, o, _ := twoNodes(t)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
	a.Forget(sid)
	o.move(sid, "b")
	if err := b.Adopt(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if ack := mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil))); !ack.GetDuplicate() {
		t.Error("after the takeover a retry was not a duplicate")
	}
	mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n2", nil)))
	view, err := b.As(agent("alice")).Inspect(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if string(view.ModeState) != `{"n":2}` {
		t.Errorf("state after the takeover %s, want n=2", view.ModeState)
	}
	if got, want := logOf(t, o.st), []string{"m0", "n1", "n2"}; !equal(got, want) {
		t.Errorf("log %v, want %v", got, want)
	}
}

// TestFencedWriteReloads: two nodes that both believe they own a session
// never fork its log; the one fenced drops its copy and, on its next call,
// continues from the log.
func TestFencedWriteReloads(t *testing.T) {
	a, b, o, _ := twoNodes(t)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	o.mu.Lock()
	o.everyone = true
	o.mu.Unlock()
	// Both load the session; b writes first; a's write is fenced.
	if _, err := a.As(agent("alice")).Session(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if _, err := b.As(agent("alice")).Session(ctx, sid); err != nil {
		t.Fatal(err)
	}
	mustOK(t, b.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
	wantCode(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n2", nil)), macperr.InternalError)
	// a reloaded: the retry lands after b's entry, and b's is a duplicate.
	mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n2", nil)))
	if ack := mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil))); !ack.GetDuplicate() {
		t.Error("b's message was not a duplicate on a")
	}
	if got, want := logOf(t, o.st), []string{"m0", "n1", "n2"}; !equal(got, want) {
		t.Errorf("log %v, want %v", got, want)
	}
}

// TestReplicated: entries another node wrote reach this node's
// subscribers once each and in order, and its watchers as lifecycle
// events.
func TestReplicated(t *testing.T) {
	a, b, o, _ := twoNodes(t)
	ctx := context.Background()
	watch := b.As(operator()).WatchSessions(ctx, SessionFilter{})
	defer watch.Close()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	replicate := func(after uint64) {
		t.Helper()
		var es []*storev1.Entry
		before := macpv1.SessionState_SESSION_STATE_UNSPECIFIED
		if err := o.st.Entries(ctx, sid, 0, func(e *storev1.Entry) error {
			if e.GetSequence() <= after {
				before = e.GetStateAfter()
			} else {
				es = append(es, e)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		head, err := o.st.Head(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		b.Replicated(Replica{Head: head, Entries: es, Before: before})
	}
	replicate(0)
	if ids := b.Sessions(); !equal(ids, []string{sid}) {
		t.Fatalf("b's index %v", ids)
	}
	sub, err := b.As(agent("alice")).Subscribe(ctx, sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mustOK(t, a.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "Done", "d1", nil)))
	replicate(1)
	replicate(1) // delivered twice by the cluster: still once each
	var got []string
	for len(got) < 3 {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		e, err := sub.Next(c)
		cancel()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, e.GetEnvelope().GetMessageId())
	}
	if !equal(got, []string{"m0", "n1", "d1"}) {
		t.Errorf("subscription on b: %v", got)
	}
	if e, _ := sub.TryNext(ctx); e != nil {
		t.Errorf("an entry delivered twice: %v", e.GetEnvelope().GetMessageId())
	}
	var events []macpv1.SessionLifecycleEvent_EventType
	for len(events) < 2 {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		ev, err := watch.Next(c)
		cancel()
		if err != nil {
			t.Fatalf("after %v: %v", events, err)
		}
		events = append(events, ev.GetEventType())
	}
	if events[0] != macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED || events[1] != macpv1.SessionLifecycleEvent_EVENT_TYPE_RESOLVED {
		t.Errorf("events on b: %v", events)
	}
	md, err := b.As(agent("alice")).Session(ctx, sid)
	if err != nil || md.GetState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
		t.Errorf("b reads %v %v after the replica, want RESOLVED", md.GetState(), err)
	}
}

// failingHeads is a store whose Head fails, while fail is set, with an
// error that is not storage.ErrNotFound: a shared store that cannot
// answer for a moment (JetStream electing a stream leader).
type failingHeads struct {
	storage.Store
	fail atomic.Bool
	// lagging makes Load answer storage.ErrNotFound: a stream leader
	// elected a moment ago that has not applied the log yet.
	lagging atomic.Bool
}

func (f *failingHeads) Load(ctx context.Context, id string) (*storev1.Session, *storev1.StateSnapshot, error) {
	if f.lagging.Load() {
		return nil, nil, fmt.Errorf("load: %w", storage.ErrNotFound)
	}
	return f.Store.Load(ctx, id)
}

var errUnavailable = errors.New("store temporarily unavailable")

func (f *failingHeads) Head(ctx context.Context, id string) (*storev1.Session, error) {
	if f.fail.Load() {
		return nil, fmt.Errorf("read the head: %w", errUnavailable)
	}
	return f.Store.Head(ctx, id)
}

// TestStoreErrorIsNotNotFound: a node that has not heard of a session yet
// looks it up in the store; when the store fails, the call fails with
// INTERNAL_ERROR (retry), not SESSION_NOT_FOUND, and so does a takeover,
// and both work once the store answers again.
func TestStoreErrorIsNotNotFound(t *testing.T) {
	st := &failingHeads{Store: memory.New()}
	a, b, o, _ := twoNodesOver(t, st)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	st.fail.Store(true)
	_, err := b.As(agent("alice")).Session(ctx, sid)
	if macperr.CodeOf(err) != macperr.InternalError || !errors.Is(err, errUnavailable) {
		t.Fatalf("a read on b while the store fails: %v, want INTERNAL_ERROR caused by the store", err)
	}
	a.Forget(sid)
	o.move(sid, "b")
	if err := b.Adopt(ctx, sid); !errors.Is(err, errUnavailable) {
		t.Fatalf("a takeover while the store fails: %v, want the store's error", err)
	}
	// A session that does not exist is still SESSION_NOT_FOUND.
	st.fail.Store(false)
	if _, err := b.As(agent("alice")).Session(ctx, "00000000-0000-4000-8000-000000000000"); macperr.CodeOf(err) != macperr.SessionNotFound {
		t.Fatalf("an unknown session: %v, want SESSION_NOT_FOUND", err)
	}
	if err := b.Adopt(ctx, sid); err != nil {
		t.Fatalf("the takeover once the store answers: %v", err)
	}
	mustOK(t, b.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
	if got, want := logOf(t, st), []string{"m0", "n1"}; !equal(got, want) {
		t.Errorf("log %v, want %v", got, want)
	}
}

// TestLaggingStoreIsNotNotFound: a session this node knows exists, that
// the shared store does not find for a moment, is INTERNAL_ERROR (retry),
// not SESSION_NOT_FOUND.
func TestLaggingStoreIsNotNotFound(t *testing.T) {
	st := &failingHeads{Store: memory.New()}
	a, b, _, _ := twoNodesOver(t, st)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	if _, err := b.As(agent("alice")).Session(ctx, sid); err != nil {
		t.Fatal(err)
	}
	b.Forget(sid)
	st.lagging.Store(true)
	if _, err := b.As(agent("alice")).Session(ctx, sid); macperr.CodeOf(err) != macperr.InternalError {
		t.Fatalf("a read on b while the store lags: %v, want INTERNAL_ERROR", err)
	}
	st.lagging.Store(false)
	if md, err := b.As(agent("alice")).Session(ctx, sid); err != nil || md.GetState() != macpv1.SessionState_SESSION_STATE_OPEN {
		t.Fatalf("a read on b once the store caught up: %v %v", md.GetState(), err)
	}
}

// failingLoads is a store whose Load, while failing is set, waits until
// release is closed and then fails with errUnavailable.
type failingLoads struct {
	storage.Store
	failing atomic.Bool
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (f *failingLoads) Load(ctx context.Context, id string) (*storev1.Session, *storev1.StateSnapshot, error) {
	if !f.failing.Load() {
		return f.Store.Load(ctx, id)
	}
	f.once.Do(func() { close(f.entered) })
	<-f.release
	return nil, nil, fmt.Errorf("load: %w", errUnavailable)
}

// TestFailedLoadIsNotNotFound: calls that found a session while another
// call was loading it, and the load failed, fail with the load's error
// (INTERNAL_ERROR), not SESSION_NOT_FOUND.
func TestFailedLoadIsNotNotFound(t *testing.T) {
	st := &failingLoads{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	a, b, o, _ := twoNodesOver(t, st)
	ctx := context.Background()
	mustOK(t, a.Send(ctx, agent("alice"), env("alice", "SessionStart", "m0", startPayload("alice", "bob"))))
	if _, err := b.As(agent("alice")).Session(ctx, sid); err != nil {
		t.Fatal(err)
	}
	b.Forget(sid)
	a.Forget(sid)
	o.move(sid, "b")
	st.failing.Store(true)
	errs := make(chan error, 3)
	go func() {
		_, err := b.As(agent("alice")).Session(ctx, sid)
		errs <- err
	}()
	<-st.entered // the first load runs; these find the session it loads
	go func() {
		_, err := b.As(agent("alice")).Session(ctx, sid)
		errs <- err
	}()
	go func() {
		errs <- ackErr(b.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
	}()
	time.Sleep(50 * time.Millisecond) // let them reach the session (they pass either way if not)
	close(st.release)
	for range 3 {
		if err := <-errs; macperr.CodeOf(err) != macperr.InternalError {
			t.Errorf("a call during a failed load: %v, want INTERNAL_ERROR", err)
		}
	}
	st.failing.Store(false)
	mustOK(t, b.Send(ctx, agent("bob"), env("bob", "Note", "n1", nil)))
}

// ackErr turns a refused Ack into an error that keeps its code.
func ackErr(ack *macpv1.Ack) error {
	if ack.GetOk() {
		return nil
	}
	return &macperr.Error{Code: macperr.Code(ack.GetError().GetCode()), Message: ack.GetError().GetMessage()}
}
