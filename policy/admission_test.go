package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-macp/concord/macperr"
)

// heavyRule is an uploaded policy whose shipped test builds a set of n/3
// numbers out of a range of n: seconds of evaluation and tens of MiB of
// live heap for n in the hundreds of thousands.
func heavyRule(n int) []byte {
	return fmt.Appendf(nil, `package concord.custom

mode := "macp.mode.decision.v1"

govern := {"allow": true, "reasons": []}

test_heavy if {
	xs := numbers.range(1, %d)
	s := {x | some x in xs; x %% 3 == 0}
	count(s) > 100
}
`, n)
}

func limitedEngine(t *testing.T, l UploadLimits) *Engine {
	t.Helper()
	reg, err := NewRegistry(context.Background(), RegistryOptions{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(context.Background(), EngineOptions{Registry: reg, Sources: NewMemorySourceStore(), Logger: quietLog, Uploads: l})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wantRefusal(t *testing.T, err error, code macperr.Code, text string) {
	t.Helper()
	if macperr.CodeOf(err) != code || !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want %s mentioning %q", err, code, text)
	}
}

func TestUploadOverSourceLimit(t *testing.T) {
	e := limitedEngine(t, UploadLimits{MaxSourceBytes: 1 << 10})
	src := append(heavyRule(10), []byte("\n# "+strings.Repeat("x", 2<<10)+"\n")...)
	_, err := e.RegisterCustom(context.Background(), customDesc("policy.big", ModeDecision, "{}"), src)
	wantRefusal(t, err, macperr.InvalidPolicyDefinition, "more than the limit of 1024")
}

func TestUploadOverTimeBudget(t *testing.T) {
	e := limitedEngine(t, UploadLimits{TestTimeout: 20 * time.Millisecond})
	_, err := e.RegisterCustom(context.Background(), customDesc("policy.slow", ModeDecision, "{}"), heavyRule(2_000_000))
	wantRefusal(t, err, macperr.InvalidPolicyDefinition, "ran longer than 20ms")
	if _, err := e.reg.Get("policy.slow"); err == nil {
		t.Fatal("a refused upload was registered")
	}
}

func TestUploadOverHeapBudget(t *testing.T) {
	e := limitedEngine(t, UploadLimits{MaxTestHeapBytes: 4 << 20, TestTimeout: time.Minute})
	_, err := e.RegisterCustom(context.Background(), customDesc("policy.fat", ModeDecision, "{}"), heavyRule(2_000_000))
	wantRefusal(t, err, macperr.InvalidPolicyDefinition, "more than 4 MiB of memory")
}

// TestUploadQueue: uploads are tested one at a time; one more may wait
// its turn, for a bounded time; beyond that they are refused RATE_LIMITED
// (RESOURCE_EXHAUSTED), and a refused upload can be pushed again later.
func TestUploadQueue(t *testing.T) {
	e := limitedEngine(t, UploadLimits{Concurrent: 1, MaxWaiting: 1, MaxWait: time.Minute, TestTimeout: time.Minute})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		_, errs[0] = e.RegisterCustom(ctx, customDesc("policy.first", ModeDecision, "{}"), heavyRule(300_000))
	})
	waitFor(t, func() bool { return len(e.uploads.turns) == 1 })
	wg.Go(func() {
		_, errs[1] = e.RegisterCustom(ctx, customDesc("policy.second", ModeDecision, "{}"), heavyRule(1_000))
	})
	waitFor(t, func() bool { return e.uploads.waiting.Load() == 1 })
	_, err := e.RegisterCustom(ctx, customDesc("policy.third", ModeDecision, "{}"), heavyRule(1_000))
	wantRefusal(t, err, macperr.RateLimited, "already waiting")
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("upload %d: %v", i+1, err)
		}
	}
	if _, err := e.RegisterCustom(ctx, customDesc("policy.third", ModeDecision, "{}"), heavyRule(1_000)); err != nil {
		t.Fatalf("the refused upload pushed again: %v", err)
	}

	// A wait that runs out is refused the same way.
	e = limitedEngine(t, UploadLimits{Concurrent: 1, MaxWait: time.Millisecond, TestTimeout: time.Minute})
	wg.Go(func() {
		_, errs[0] = e.RegisterCustom(ctx, customDesc("policy.first", ModeDecision, "{}"), heavyRule(300_000))
	})
	waitFor(t, func() bool { return len(e.uploads.turns) == 1 })
	_, err = e.RegisterCustom(ctx, customDesc("policy.second", ModeDecision, "{}"), heavyRule(1_000))
	wantRefusal(t, err, macperr.RateLimited, "kept the test runner busy")
	wg.Wait()
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
}

// waitFor polls cond until it holds (the test then proceeds; it fails
// only if cond never holds within a minute).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}
