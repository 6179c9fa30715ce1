package stats

import (
	"testing"
	"time"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestCountsPerMinuteOverTheHour(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC)}
	r := New(c.now)
	r.Observe(kernel.Outcome{MessageType: "Vote"})
	r.Observe(kernel.Outcome{MessageType: "Commitment"})
	r.Observe(kernel.Outcome{MessageType: "Vote", Code: macperr.Forbidden})
	r.Observe(kernel.Outcome{MessageType: "Vote", Duplicate: true})
	r.Lifecycle(&macpv1.SessionLifecycleEvent{EventType: macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED})
	c.t = c.t.Add(5 * time.Minute)
	r.Observe(kernel.Outcome{MessageType: "Vote", Code: macperr.PolicyDenied})
	r.Lifecycle(&macpv1.SessionLifecycleEvent{EventType: macpv1.SessionLifecycleEvent_EVENT_TYPE_EXPIRED})

	s := r.Snapshot()
	if len(s.Minutes) != Window {
		t.Fatalf("%d minutes, want %d", len(s.Minutes), Window)
	}
	last, first := s.Minutes[Window-1], s.Minutes[Window-6]
	if !last.Start.Equal(time.Date(2026, 1, 1, 10, 5, 0, 0, time.UTC)) || last.Rejected != 1 || last.Expired != 1 {
		t.Fatalf("current minute: %+v", last)
	}
	if first.Accepted != 2 || first.Commitments != 1 || first.Rejected != 1 || first.Duplicates != 1 || first.Created != 1 {
		t.Fatalf("first minute: %+v", first)
	}
	if s.Rejections[macperr.Forbidden] != 1 || s.Rejections[macperr.PolicyDenied] != 1 || len(s.Rejections) != 2 {
		t.Fatalf("rejections: %v", s.Rejections)
	}

	// An hour later the first minute has left the window, and its slot is
	// reused without its old counts.
	c.t = c.t.Add(56 * time.Minute)
	r.Observe(kernel.Outcome{MessageType: "Vote"})
	s = r.Snapshot()
	total := 0
	for _, m := range s.Minutes {
		total += m.Accepted
	}
	if total != 1 || s.Rejections[macperr.Forbidden] != 0 || s.Rejections[macperr.PolicyDenied] != 1 {
		t.Fatalf("after an hour: accepted %d, rejections %v", total, s.Rejections)
	}
}
