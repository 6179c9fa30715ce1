package bus

import (
	"errors"
	"sync"
	"testing"
)

func TestDeliversInOrderPerTopic(t *testing.T) {
	h := New[int]()
	a := h.Subscribe("a", 10)
	b := h.Subscribe("b", 10)
	for i := range 5 {
		h.Publish("a", i)
	}
	h.Publish("b", 42)
	for i := range 5 {
		if got := <-a.C; got != i {
			t.Fatalf("got %d, want %d", got, i)
		}
	}
	if got := <-b.C; got != 42 {
		t.Fatalf("topic b got %d", got)
	}
	select {
	case v := <-a.C:
		t.Fatalf("topic a got a stray value %d", v)
	default:
	}
}

func TestLaggingSubscriberIsDroppedOthersContinue(t *testing.T) {
	h := New[int]()
	slow := h.Subscribe("t", 2)
	fast := h.Subscribe("t", 100)
	for i := range 10 {
		h.Publish("t", i)
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != 2 || !errors.Is(slow.Err(), ErrLagging) {
		t.Fatalf("slow subscriber got %d values and err %v, want 2 and ErrLagging", n, slow.Err())
	}
	for i := range 10 {
		if got := <-fast.C; got != i {
			t.Fatalf("fast got %d, want %d", got, i)
		}
	}
}

func TestCloseEndsCleanly(t *testing.T) {
	h := New[string]()
	s := h.Subscribe("t", 1)
	s.Close()
	s.Close()
	if _, ok := <-s.C; ok {
		t.Fatal("C still open after Close")
	}
	if s.Err() != nil {
		t.Fatalf("Err after Close = %v", s.Err())
	}
	h.Publish("t", "after close") // must not panic
	if len(h.topics) != 0 {
		t.Fatalf("topic left behind: %v", h.topics)
	}
}

func TestConcurrentPublishAndSubscribe(t *testing.T) {
	h := New[int]()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			s := h.Subscribe("t", 1000)
			defer s.Close()
			for range 100 {
				h.Publish("t", 1)
			}
		})
	}
	wg.Wait()
}
