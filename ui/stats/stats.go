// Package stats counts what the admin UI's overview charts: the outcome of
// every Send (accepted, commitments, rejections by code) and the sessions'
// lifecycle events, per minute over the last hour. It keeps its counters in
// memory only; a restart starts the hour afresh.
package stats

import (
	"sync"
	"time"

	"github.com/concord-macp/concord/host/kernel"
	"github.com/concord-macp/concord/macperr"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// Window is how many minutes the recorder keeps.
const Window = 60

// Minute is what happened in one minute.
type Minute struct {
	// Start is the minute's first instant.
	Start time.Time
	// Accepted counts accepted envelopes (duplicates excluded).
	Accepted int
	// Commitments counts accepted Commitments.
	Commitments int
	// Rejected counts rejected envelopes.
	Rejected int
	// Duplicates counts retries answered as duplicates.
	Duplicates int
	// Created, Resolved, Expired and Cancelled count lifecycle events.
	Created, Resolved, Expired, Cancelled int
	rejections                            map[macperr.Code]int
}

// Snapshot is the recorder's window, oldest minute first.
type Snapshot struct {
	Minutes []Minute
	// Rejections totals the window's rejections by code.
	Rejections map[macperr.Code]int
}

// Recorder counts outcomes and lifecycle events. Its methods are safe for
// concurrent use and never block for long: Observe is called on the path
// of every Send.
type Recorder struct {
	now func() time.Time

	mu      sync.Mutex
	minutes [Window]Minute // ring, indexed by unix minute mod Window
}

// New returns a Recorder on clock now (time.Now when nil).
func New(now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now}
}

// slot returns the counters of the current minute, clearing a slot that
// still holds an older minute. The caller holds mu.
func (r *Recorder) slot() *Minute {
	start := r.now().Truncate(time.Minute)
	m := &r.minutes[(start.Unix()/60)%Window]
	if !m.Start.Equal(start) {
		*m = Minute{Start: start}
	}
	return m
}

// Observe counts one Send outcome; it fits kernel.Options.Observe.
func (r *Recorder) Observe(o kernel.Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.slot()
	switch {
	case o.Duplicate:
		m.Duplicates++
	case o.Code != "":
		m.Rejected++
		if m.rejections == nil {
			m.rejections = map[macperr.Code]int{}
		}
		m.rejections[o.Code]++
	default:
		m.Accepted++
		if o.MessageType == "Commitment" {
			m.Commitments++
		}
	}
}

// Lifecycle counts one session lifecycle event.
func (r *Recorder) Lifecycle(ev *macpv1.SessionLifecycleEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.slot()
	switch ev.GetEventType() {
	case macpv1.SessionLifecycleEvent_EVENT_TYPE_CREATED:
		m.Created++
	case macpv1.SessionLifecycleEvent_EVENT_TYPE_RESOLVED:
		m.Resolved++
	case macpv1.SessionLifecycleEvent_EVENT_TYPE_EXPIRED:
		m.Expired++
	case macpv1.SessionLifecycleEvent_EVENT_TYPE_CANCELLED:
		m.Cancelled++
	}
}

// Snapshot returns the last Window minutes, oldest first, the current one
// last; minutes with nothing recorded are zero.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().Truncate(time.Minute)
	out := Snapshot{Minutes: make([]Minute, Window), Rejections: map[macperr.Code]int{}}
	for i := range Window {
		start := now.Add(time.Duration(i-Window+1) * time.Minute)
		m := r.minutes[(start.Unix()/60)%Window]
		if !m.Start.Equal(start) {
			m = Minute{Start: start}
		}
		for code, n := range m.rejections {
			out.Rejections[code] += n
		}
		m.rejections = nil
		out.Minutes[i] = m
	}
	return out
}
