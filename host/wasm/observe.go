package wasm

import "context"

// StepHook is told about every Step an engine runs, so that a caller can
// time and trace steps without the engine depending on a metrics or
// tracing library. It is called as the Step begins, with the caller's
// context; the function it returns, when not nil, is called when the Step
// ends, with its error (nil when the mode answered, accepting or
// rejecting). It runs on the path of every message and must be fast.
type StepHook func(ctx context.Context, step StepInfo) (done func(err error))

// StepInfo names the module a Step runs in.
type StepInfo struct {
	// Digest is the module's content address; Mode the mode it describes.
	Digest, Mode string
	// Sandboxed is set for an engine that runs untrusted (uploaded)
	// modules under deadlines.
	Sandboxed bool
}

// Pool describes one loaded module's pool of instances.
type Pool struct {
	StepInfo
	Stats
}

// Pools describes the instance pool of every module the engine loaded.
func (e *Engine) Pools() []Pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Pool, 0, len(e.modules))
	for _, l := range e.modules {
		select {
		case <-l.done:
		default:
			continue // still loading
		}
		if l.mod == nil {
			continue
		}
		out = append(out, Pool{StepInfo: l.mod.info(), Stats: l.mod.Stats()})
	}
	return out
}

// info names m for hooks.
func (m *Module) info() StepInfo {
	return StepInfo{Digest: m.digest, Mode: m.descriptor.GetMode(), Sandboxed: m.engine.opts.Sandbox}
}
