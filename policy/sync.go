package policy

import (
	"context"
	"fmt"
	"strings"
)

// Sync makes the registry serve exactly the descriptors its Persister
// holds (besides the built-ins), for a registry whose store other
// processes change too (the nodes of a cluster). Each difference is
// announced to subscribers as the change that caused it.
func (r *Registry) Sync(ctx context.Context) error {
	// Read under changeMu: a registration of this process that finished
	// before is in what is read, and none runs meanwhile, so a stale read
	// never undoes one.
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	stored, err := r.persist.All(ctx)
	if err != nil {
		return fmt.Errorf("policy registry: sync: %w", err)
	}
	want := map[string]bool{}
	var events []Event
	r.mu.Lock()
	for _, d := range stored {
		id := d.GetPolicyId()
		if id == "" || r.builtin[id] {
			continue
		}
		want[id] = true
		if _, ok := r.byID[id]; !ok {
			r.byID[id] = d
			events = append(events, r.eventLocked(EventRegistered, d))
		}
	}
	for id, d := range r.byID {
		if !r.builtin[id] && !want[id] && !strings.HasPrefix(id, stdPrefix) {
			delete(r.byID, id)
			events = append(events, r.eventLocked(EventUnregistered, d))
		}
	}
	r.mu.Unlock()
	for _, ev := range events {
		r.log.Info("policy registry: "+string(ev.Type)+" by another node", "policy_id", ev.PolicyID)
		r.notify(ev)
	}
	return nil
}
