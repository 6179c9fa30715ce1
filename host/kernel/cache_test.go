package kernel

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/limits"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// TestLoadStepsTheTailAgain: a session whose state is too large to save on
// every commit is rebuilt after a restart from its last state snapshot by
// stepping the mode over the entries since, to exactly the same state.
func TestLoadStepsTheTailAgain(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.start()
	ctx := context.Background()
	pad := strings.Repeat("p", 1000)
	for i := range 70 {
		f.mustSend(agent("bob"), env("bob", "Pad", fmt.Sprint("p", i), []byte(pad)))
	}
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	want, err := f.k.As(agent("bob")).Inspect(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	head, state, err := f.st.Load(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if state.GetSequence() >= head.GetLastSequence() || head.GetLastSequence() != 72 {
		t.Fatalf("state saved at %d of %d: nothing to step again", state.GetSequence(), head.GetLastSequence())
	}
	if head.GetLastSequence()-state.GetSequence() >= snapshotEvery {
		t.Fatalf("the state snapshot lags %d entries, more than %d", head.GetLastSequence()-state.GetSequence(), snapshotEvery)
	}

	restarted := newFixture(t, fixtureOptions{st: f.st, clock: f.clock})
	got, err := restarted.k.As(agent("bob")).Inspect(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.ModeState) != string(want.ModeState) {
		t.Fatalf("state after reload differs (%d bytes, want %d)", len(got.ModeState), len(want.ModeState))
	}
	// Dedup still holds for every message sent before the restart.
	if ack := restarted.mustSend(agent("bob"), env("bob", "Pad", "p3", []byte(pad))); !ack.GetDuplicate() {
		t.Fatal("a message from before the restart was not a duplicate")
	}
	restarted.mustSend(agent("bob"), env("bob", "Note", "n2", nil))
	res, err := restarted.k.As(agent("bob")).Replay(ctx, sid)
	if err != nil || len(res.Divergences) > 0 {
		t.Fatalf("replay: %v %v", err, res.Divergences)
	}
}

// TestIdleSessionsAreEvicted: an idle session leaves memory, is loaded
// again on its next use, and keeps its dedup memory and its schedule.
func TestIdleSessionsAreEvicted(t *testing.T) {
	f := newFixture(t, fixtureOptions{idle: 10 * time.Second})
	f.start()
	ctx := context.Background()
	f.mustSend(agent("bob"), env("bob", "Note", "n1", nil))
	inMemory := func() bool { _, ok := f.k.sessions.Load(sid); return ok }
	f.clock.Advance(5 * time.Second)
	f.k.sweepDue(ctx)
	if !inMemory() {
		t.Fatal("evicted before it was idle")
	}
	f.clock.Advance(6 * time.Second)
	f.k.sweepDue(ctx)
	if inMemory() {
		t.Fatal("an idle session stayed in memory")
	}
	if ack := f.mustSend(agent("bob"), env("bob", "Note", "n1", nil)); !ack.GetDuplicate() {
		t.Fatal("dedup forgot a message after eviction")
	}
	if !inMemory() {
		t.Fatal("a message did not load the session")
	}
	// Evicted again, it still expires on time: the sweeper knows when.
	f.clock.Advance(11 * time.Second)
	f.k.sweepDue(ctx)
	if inMemory() {
		t.Fatal("not evicted the second time")
	}
	f.clock.Advance(60 * time.Second)
	f.k.sweepDue(ctx)
	head, err := f.st.Head(ctx, sid)
	if err != nil || head.GetMetadata().GetState() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("an evicted session past its deadline is %v (%v)", head.GetMetadata().GetState(), err)
	}
}

// TestRestartReadsHeadsOnly: a restarted kernel knows every session from
// its head: the open-session quota, listings, and when each is due.
func TestRestartReadsHeadsOnly(t *testing.T) {
	f := newFixture(t, fixtureOptions{limits: limits.Options{MaxOpenSessions: 1}})
	f.start()
	ctx := context.Background()
	restarted := newFixture(t, fixtureOptions{st: f.st, clock: f.clock, limits: limits.Options{MaxOpenSessions: 1}})
	if n := restarted.k.limits.OpenSessions("alice"); n != 1 {
		t.Fatalf("alice holds %d open-session slots after the restart, want 1", n)
	}
	if _, ok := restarted.k.sessions.Load(sid); ok {
		t.Fatal("the restart loaded the session itself")
	}
	page, _, err := restarted.k.As(agent("alice")).ListSessions(ctx, SessionFilter{}, 0, "")
	if err != nil || len(page) != 1 {
		t.Fatalf("listing after the restart: %v %v", page, err)
	}
	e := env("alice", "SessionStart", "x", startPayload())
	e.SessionId = "r-0123456789abcdefghijkl"
	wantCode(t, restarted.send(agent("alice"), e), macperr.RateLimited)
	restarted.clock.Advance(61 * time.Second)
	restarted.k.sweepDue(ctx)
	head, _ := f.st.Head(ctx, sid)
	if head.GetMetadata().GetState() != macpv1.SessionState_SESSION_STATE_EXPIRED {
		t.Fatalf("the restarted sweeper did not expire the session: %v", head.GetMetadata().GetState())
	}
	if restarted.k.limits.OpenSessions("alice") != 0 {
		t.Fatal("the expired session kept its slot")
	}
}
