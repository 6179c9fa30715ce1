package policy

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWarmPoolRunsAndReturns(t *testing.T) {
	p := newWarmPool(2, time.Minute)
	for i := range 100 {
		got := -1
		p.run(func() { got = i })
		if got != i {
			t.Fatalf("run returned before f: got %d, want %d", got, i)
		}
	}
}

func TestWarmPoolRaisesPanicsOnTheCaller(t *testing.T) {
	p := newWarmPool(1, time.Minute)
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("recovered %v", r)
		}
		// The worker survived and still runs functions.
		ran := false
		p.run(func() { ran = true })
		if !ran {
			t.Fatal("the pool stopped working after a panic")
		}
	}()
	p.run(func() { panic("boom") })
	t.Fatal("no panic")
}

// TestWarmPoolRunsInlineWhenBusy: with every worker busy, run does not
// wait for one.
func TestWarmPoolRunsInlineWhenBusy(t *testing.T) {
	p := newWarmPool(2, time.Minute)
	release := make(chan struct{})
	var busy, done sync.WaitGroup
	for range 2 {
		busy.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			p.run(func() { busy.Done(); <-release })
		}()
	}
	busy.Wait()
	ran := false
	p.run(func() { ran = true }) // would block forever if it queued
	if !ran {
		t.Fatal("f did not run")
	}
	close(release)
	done.Wait()
}

func TestWarmPoolWorkersLeaveWhenIdle(t *testing.T) {
	p := newWarmPool(3, time.Millisecond)
	p.run(func() {})
	deadline := time.Now().Add(30 * time.Second)
	for p.running.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still running", p.running.Load())
		}
		time.Sleep(time.Millisecond)
	}
}
