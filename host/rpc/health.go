package rpc

import (
	"context"
	"sync"

	"connectrpc.com/grpchealth"
)

// Readiness tells whether the server can make writes durable now. The
// store implements it.
type Readiness interface {
	// Writable returns why writes are refused (nil when they are not) and
	// a channel closed at the next change (nil when none can come).
	Writable() (changed <-chan struct{}, err error)
}

// healthChecker answers grpc.health.v1 for the services it knows, and
// reports NOT_SERVING for all of them while writes are refused (a full
// disk), so that load balancers stop sending traffic the server would
// refuse. Reads keep working meanwhile.
type healthChecker struct {
	services *grpchealth.StaticChecker
	ready    Readiness // nil: always ready
}

func newHealthChecker(ready Readiness, services ...string) *healthChecker {
	return &healthChecker{services: grpchealth.NewStaticChecker(services...), ready: ready}
}

// Check implements grpchealth.Checker.
func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	res, err := h.services.Check(ctx, req)
	if err != nil || h.ready == nil {
		return res, err
	}
	if _, notReady := h.ready.Writable(); notReady != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return res, nil
}

// Watch implements grpchealth.Watcher: onChange runs when the service's
// static status or the server's readiness changes.
func (h *healthChecker) Watch(ctx context.Context, req *grpchealth.CheckRequest, onChange func()) (func(), error) {
	stopServices, err := h.services.Watch(ctx, req, onChange)
	if err != nil {
		return nil, err
	}
	if h.ready == nil {
		return stopServices, nil
	}
	done := make(chan struct{})
	go func() {
		for {
			changed, _ := h.ready.Writable()
			if changed == nil {
				return
			}
			select {
			case <-changed:
				onChange()
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stopServices()
			close(done)
		})
	}, nil
}
