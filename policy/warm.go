package policy

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// warmPool runs functions on long-lived goroutines. OPA's evaluator
// recurses deeply, so an evaluation on a fresh goroutine (a server decides
// each request on the request's own) spends much of its time growing and
// copying the goroutine's stack; a worker's stack stays grown from one
// evaluation to the next.
//
// A function goes to an idle worker, or to a new one while fewer than size
// run; otherwise it runs on the caller's goroutine, so nothing waits in a
// queue. Workers exit after being idle for idle, so an Engine needs no
// Close.
type warmPool struct {
	work    chan *warmJob
	size    int32
	running atomic.Int32
	idle    time.Duration
	jobs    sync.Pool // *warmJob
}

type warmJob struct {
	f    func()
	done chan any // the panic value, or nil
}

func newWarmPool(size int, idle time.Duration) *warmPool {
	p := &warmPool{work: make(chan *warmJob), size: int32(size), idle: idle}
	p.jobs.New = func() any { return &warmJob{done: make(chan any, 1)} }
	return p
}

// run calls f on a warm goroutine and returns when f has; a panic in f is
// raised again on the caller's goroutine.
func (p *warmPool) run(f func()) {
	j := p.jobs.Get().(*warmJob)
	j.f = f
	select {
	case p.work <- j:
	default:
		if p.running.Add(1) > p.size {
			p.running.Add(-1)
			j.f = nil
			p.jobs.Put(j)
			f()
			return
		}
		go p.worker(j)
	}
	r := <-j.done
	j.f = nil
	p.jobs.Put(j)
	if r != nil {
		panic(r)
	}
}

func (p *warmPool) worker(j *warmJob) {
	defer p.running.Add(-1)
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		j.done <- call(j.f)
		idle.Reset(p.idle)
		select {
		case j = <-p.work:
		case <-idle.C:
			return
		}
	}
}

// call runs f and returns what it panicked with, with the worker's stack.
func call(f func()) (panicked any) {
	defer func() {
		if r := recover(); r != nil {
			panicked = fmt.Errorf("policy evaluation panicked: %v\n%s", r, debug.Stack())
		}
	}()
	f()
	return nil
}
