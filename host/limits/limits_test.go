package limits_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/concord-macp/concord/host/limits"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestRatePerIdentityAndKind(t *testing.T) {
	l := limits.New(limits.Options{StartsPerMinute: 2, MessagesPerMinute: 60})
	for i := range 2 {
		if !l.Allow("alice", limits.Start, t0) {
			t.Fatalf("start %d refused within the burst", i)
		}
	}
	if l.Allow("alice", limits.Start, t0) {
		t.Fatal("third start in the same instant allowed")
	}
	if !l.Allow("bob", limits.Start, t0) {
		t.Fatal("another identity was limited by alice's starts")
	}
	if !l.Allow("alice", limits.Message, t0) {
		t.Fatal("messages share the starts' bucket")
	}
	// 2 per minute refills one start every 30 s.
	if l.Allow("alice", limits.Start, t0.Add(29*time.Second)) {
		t.Fatal("a start refilled after 29 s")
	}
	if !l.Allow("alice", limits.Start, t0.Add(31*time.Second)) {
		t.Fatal("no start refilled after 31 s")
	}
	for i := range 59 {
		if !l.Allow("alice", limits.Message, t0) {
			t.Fatalf("message %d refused within the burst of 60", i+2)
		}
	}
	if l.Allow("alice", limits.Message, t0) {
		t.Fatal("61st message in the same instant allowed")
	}
}

func TestZeroMeansUnlimited(t *testing.T) {
	var nilLimiter *limits.Limiter
	l := limits.New(limits.Options{})
	for i := range 10_000 {
		if !l.Allow("a", limits.Message, t0) || !l.Open("a", 0) || !nilLimiter.Allow("a", limits.Start, t0) || !nilLimiter.Open("a", 0) {
			t.Fatalf("refused at %d without limits", i)
		}
	}
}

func TestOpenSessionQuota(t *testing.T) {
	l := limits.New(limits.Options{MaxOpenSessions: 2})
	l.Restore("alice") // found open at startup
	if !l.Open("alice", 0) {
		t.Fatal("second slot refused")
	}
	if l.Open("alice", 0) {
		t.Fatal("third slot granted over a cap of 2")
	}
	if !l.Open("bob", 0) {
		t.Fatal("bob refused because of alice")
	}
	l.Close("alice")
	if got := l.OpenSessions("alice"); got != 1 {
		t.Fatalf("alice holds %d slots, want 1", got)
	}
	if !l.Open("alice", 0) {
		t.Fatal("a slot given back was not reusable")
	}
	l.Close("alice")
	l.Close("alice")
	l.Close("alice") // more closes than opens never go negative
	if got := l.OpenSessions("alice"); got != 0 {
		t.Fatalf("alice holds %d slots, want 0", got)
	}
}

// TestPerIdentityCap: a per-identity grant replaces the server's cap, and
// applies even when the server sets none.
func TestPerIdentityCap(t *testing.T) {
	for _, serverCap := range []int{0, 5} {
		l := limits.New(limits.Options{MaxOpenSessions: serverCap})
		if !l.Open("alice", 1) {
			t.Fatalf("server cap %d: first slot refused", serverCap)
		}
		if l.Open("alice", 1) {
			t.Fatalf("server cap %d: second slot granted over a per-identity cap of 1", serverCap)
		}
		for range 2 {
			if !l.Open("bob", 0) {
				t.Fatalf("server cap %d: bob refused", serverCap)
			}
		}
	}
}

// TestIdleBucketsAreForgotten: a flood of invented identities does not stay
// in memory once their buckets are full again; the limit still holds for an
// identity that keeps sending.
func TestIdleBucketsAreForgotten(t *testing.T) {
	l := limits.New(limits.Options{MessagesPerMinute: 1})
	for i := range 1000 {
		l.Allow(fmt.Sprint("invented-", i), limits.Message, t0)
	}
	l.Allow("steady", limits.Message, t0.Add(2*time.Minute))
	if l.Allow("steady", limits.Message, t0.Add(2*time.Minute)) {
		t.Fatal("steady's second message in the same instant was allowed")
	}
	if n := l.BucketsForTest(); n != 1 {
		t.Fatalf("%d buckets kept after the sweep, want 1", n)
	}
}
