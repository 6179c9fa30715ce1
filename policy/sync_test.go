package policy_test

import (
	"context"
	"testing"

	"github.com/concord-macp/concord/policy"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// TestSync: two registries over one store (two nodes of a cluster) serve
// the same descriptors once each syncs, registrations and removals alike,
// and a sync never undoes a registration of its own.
func TestSync(t *testing.T) {
	ctx := context.Background()
	shared := policy.NewMemoryPersister()
	a, err := policy.NewRegistry(ctx, policy.RegistryOptions{Persister: shared})
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.NewRegistry(ctx, policy.RegistryOptions{Persister: shared})
	if err != nil {
		t.Fatal(err)
	}
	var events []policy.Event
	b.Subscribe(func(ev policy.Event) { events = append(events, ev) })
	d := &macpv1.PolicyDescriptor{PolicyId: "policy.team.majority", Mode: "macp.mode.decision.v1", Description: "majority",
		SchemaVersion: 3, Rules: `{"voting":{"algorithm":"majority","threshold":0.5}}`}
	if _, err := a.Register(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(d.PolicyId); err == nil {
		t.Fatal("b serves the policy before it synced")
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(d.PolicyId); err != nil {
		t.Fatalf("b after sync: %v", err)
	}
	if len(events) != 1 || events[0].Type != policy.EventRegistered || events[0].PolicyID != d.PolicyId {
		t.Fatalf("b's subscribers saw %v", events)
	}
	// Syncing again changes nothing; b's own registration survives a sync.
	own := &macpv1.PolicyDescriptor{PolicyId: "policy.team.own", Mode: "*", Description: "own", SchemaVersion: 1, Rules: `{}`}
	if _, err := b.Register(ctx, own); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(own.PolicyId); err != nil {
		t.Fatalf("a sync undid b's registration: %v", err)
	}
	if err := a.Unregister(ctx, d.PolicyId); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(d.PolicyId); err == nil {
		t.Fatal("b still serves a policy a removed")
	}
	if last := events[len(events)-1]; last.Type != policy.EventUnregistered || last.PolicyID != d.PolicyId {
		t.Fatalf("b's last event %v", last)
	}
	if _, err := b.Get(policy.DefaultID); err != nil {
		t.Fatalf("a sync removed a built-in: %v", err)
	}
}
