package wasm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// wasiModule is the only module a guest may import functions from.
const wasiModule = "wasi_snapshot_preview1"

// exportInitialize is the reactor's initialization function, run once per
// instance when exported.
const exportInitialize = "_initialize"

// exportMemory is the name under which a module exports its linear memory.
const exportMemory = "memory"

// stoppedClock is the time a guest reads from both its clocks, which never
// move: 2022-01-01T00:00:00Z, in nanoseconds since the Unix epoch.
//
// wazero's default clocks are deterministic fakes that advance 1 ms on every
// reading. Go's garbage collector measures its own CPU use with the
// monotonic clock; under such a clock its CPU limiter concludes that the
// collector uses most of the CPU and switches mark assists off. Nothing else
// schedules the collector's workers between calls into a reactor, so the
// cycle never ends and the heap grows until the instance runs out of memory
// (a guest allocating 1 MiB per call died after 344 calls under a 32 MiB
// cap). A stopped clock never trips the limiter, and it makes time.Now in a
// guest fully deterministic, independent of the instance's history.
const stoppedClock = 1_640_995_200_000_000_000

func stoppedWalltime() (sec int64, nsec int32) { return stoppedClock / 1e9, 0 }

func stoppedNanotime() int64 { return stoppedClock }

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// requiredExports are the ABI's functions with their types.
var requiredExports = []struct {
	name            string
	params, results []api.ValueType
}{
	{abi.ExportVersion, nil, []api.ValueType{i32}},
	{abi.ExportAlloc, []api.ValueType{i32}, []api.ValueType{i32}},
	{abi.ExportDescribe, nil, []api.ValueType{i64}},
	{abi.ExportStep, []api.ValueType{i32, i32}, []api.ValueType{i64}},
	{abi.ExportView, []api.ValueType{i32, i32}, []api.ValueType{i64}},
}

// Module is a loaded mode module with its pool of warm instances. It is safe
// for concurrent use; each call borrows one instance.
type Module struct {
	engine     *Engine
	digest     string
	compiled   wazero.CompiledModule
	config     wazero.ModuleConfig
	descriptor *macpv1.ModeDescriptor

	// idle holds warm instances; slots holds one token per live instance,
	// so its length is the number of instances and its capacity the cap.
	idle    chan *instance
	slots   chan struct{}
	closing chan struct{}
	closed  atomic.Bool

	created, discarded, trimmed atomic.Uint64
}

// Stats describe a module's instance pool.
type Stats struct {
	// Live is the number of instances alive, idle or busy.
	Live int
	// Idle is the number of warm instances waiting in the pool.
	Idle int
	// Created counts instances started since the module was loaded.
	Created uint64
	// Discarded counts instances closed after a trap, timeout or other
	// failure.
	Discarded uint64
	// Trimmed counts idle instances closed to give their memory back.
	Trimmed uint64
}

// load compiles and checks a module, starts its first instance and reads
// its descriptor.
func (e *Engine) load(ctx context.Context, digest string, wasm []byte) (*Module, error) {
	compiled, err := e.rt.CompileModule(ctx, wasm)
	if err != nil {
		if e.isClosed() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("%w %s: %v", ErrCompile, short(digest), err)
	}
	if err := checkABI(compiled); err != nil {
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("%w: module %s: %v", ErrABI, short(digest), err)
	}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithWalltime(stoppedWalltime, 1).
		WithNanotime(stoppedNanotime, 1)
	if _, ok := compiled.ExportedFunctions()[exportInitialize]; ok {
		cfg = cfg.WithStartFunctions(exportInitialize)
	}
	m := &Module{
		engine:   e,
		digest:   digest,
		compiled: compiled,
		config:   cfg,
		idle:     make(chan *instance, e.opts.MaxInstances),
		slots:    make(chan struct{}, e.opts.MaxInstances),
		closing:  make(chan struct{}),
	}
	in, err := m.acquire(ctx)
	if err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	if err := m.handshake(ctx, in); err != nil {
		m.discard(in, nil, nil) // the load fails with err; no need to log it
		_ = compiled.Close(ctx)
		return nil, err
	}
	m.release(in)
	return m, nil
}

// checkABI checks the module's imports and exports against the ABI.
func checkABI(c wazero.CompiledModule) error {
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != wasiModule {
			return fmt.Errorf("imports %s.%s; only %s may be imported", mod, name, wasiModule)
		}
	}
	if len(c.ImportedMemories()) > 0 {
		return errors.New("imports a memory; it must define and export its own")
	}
	if _, ok := c.ExportedMemories()[exportMemory]; !ok {
		return fmt.Errorf("does not export its memory as %q", exportMemory)
	}
	funcs := c.ExportedFunctions()
	for _, want := range requiredExports {
		def, ok := funcs[want.name]
		if !ok {
			return fmt.Errorf("does not export %s", want.name)
		}
		if !slices.Equal(def.ParamTypes(), want.params) || !slices.Equal(def.ResultTypes(), want.results) {
			return fmt.Errorf("export %s has type %s, want %s", want.name,
				typeString(def.ParamTypes(), def.ResultTypes()), typeString(want.params, want.results))
		}
	}
	if def, ok := funcs[exportInitialize]; ok && (len(def.ParamTypes()) > 0 || len(def.ResultTypes()) > 0) {
		return fmt.Errorf("export %s must take and return nothing", exportInitialize)
	}
	return nil
}

func typeString(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return "(" + names(params) + ") -> (" + names(results) + ")"
}

// handshake checks the ABI version of a fresh instance and reads the
// module's descriptor.
func (m *Module) handshake(ctx context.Context, in *instance) error {
	ctx, cancel := m.callContext(ctx)
	defer cancel()
	in.stack[0] = 0
	if err := in.version.CallWithStack(ctx, in.stack[:]); err != nil {
		return m.callError(in, abi.ExportVersion, err)
	}
	if v := int32(uint32(in.stack[0])); v != abi.Version {
		return fmt.Errorf("%w: module %s implements ABI version %d, host speaks %d",
			ErrABI, short(m.digest), v, abi.Version)
	}
	out, err := in.output(ctx, m, in.describe, abi.ExportDescribe, 0, 0)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return fmt.Errorf("%w: module %s returned no descriptor (did it call guest.Serve from init?)",
			ErrABI, short(m.digest))
	}
	d := new(macpv1.ModeDescriptor)
	if err := proto.Unmarshal(out, d); err != nil {
		return fmt.Errorf("%w: module %s: decode descriptor: %v", ErrABI, short(m.digest), err)
	}
	if d.GetMode() == "" {
		return fmt.Errorf("%w: module %s: descriptor names no mode", ErrABI, short(m.digest))
	}
	m.descriptor = d
	return nil
}

// Digest returns the module's content address: the hex sha256 of its bytes.
func (m *Module) Digest() string { return m.digest }

// Descriptor returns the ModeDescriptor the module reported when it was
// loaded. The caller must not modify it.
func (m *Module) Descriptor() *macpv1.ModeDescriptor { return m.descriptor }

// Stats returns a snapshot of the module's instance pool.
func (m *Module) Stats() Stats {
	return Stats{
		Live:      len(m.slots),
		Idle:      len(m.idle),
		Created:   m.created.Load(),
		Discarded: m.discarded.Load(),
		Trimmed:   m.trimmed.Load(),
	}
}

// Step offers one envelope to the mode. A rejection by the mode is a
// response with verdict REJECT, not an error; errors mean the module failed
// (trap, timeout, memory, output size, ABI) or the engine is closed. ctx
// bounds the wait for a free instance; it interrupts the call itself only in
// a sandboxed engine.
func (m *Module) Step(ctx context.Context, req *abiv1.StepRequest) (_ *abiv1.StepResponse, err error) {
	if req == nil {
		return nil, errors.New("wasm: Step: nil request")
	}
	if hook := m.engine.opts.StepHook; hook != nil {
		if done := hook(ctx, m.info()); done != nil {
			defer func() { done(err) }()
		}
	}
	resp := new(abiv1.StepResponse)
	err = m.invoke(ctx, abi.ExportStep, req, resp, func() error {
		switch resp.GetVerdict() {
		case abiv1.Verdict_VERDICT_ACCEPT, abiv1.Verdict_VERDICT_REJECT:
			return nil
		}
		return fmt.Errorf("%w: module %s: step returned verdict %v", ErrABI, short(m.digest), resp.GetVerdict())
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// View asks the mode to render state as JSON. A mode that reports a failure
// yields an error wrapping ErrView.
func (m *Module) View(ctx context.Context, req *abiv1.ViewRequest) (*abiv1.ViewResponse, error) {
	if req == nil {
		return nil, errors.New("wasm: View: nil request")
	}
	resp := new(abiv1.ViewResponse)
	if err := m.invoke(ctx, abi.ExportView, req, resp, nil); err != nil {
		return nil, err
	}
	if code, msg := viewError(resp); code != "" {
		return nil, fmt.Errorf("%w: module %s: %s: %s", ErrView, short(m.digest), code, msg)
	}
	return resp, nil
}

// viewError returns the error code and message a guest reports when it
// cannot render its state (ViewResponse fields 2 and 3).
func viewError(resp *abiv1.ViewResponse) (code, msg string) {
	return resp.GetErrorCode(), resp.GetErrorMessage()
}

// invoke runs one call of export on a pooled instance: req in, resp out.
// check, when not nil, validates resp; an instance whose output fails it is
// discarded like one that trapped.
func (m *Module) invoke(ctx context.Context, export string, req, resp proto.Message, check func() error) error {
	if err := ctx.Err(); err != nil {
		// Checked first: a sandboxed call with a done context would cost the
		// instance it ran on.
		return fmt.Errorf("wasm: %s of module %s: %w", export, short(m.digest), err)
	}
	in, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	callCtx, cancel := m.callContext(ctx)
	defer cancel()
	fn := in.step
	if export == abi.ExportView {
		fn = in.view
	}
	healthy, err := in.call(callCtx, m, fn, export, req, resp)
	if err == nil && check != nil {
		if err = check(); err != nil {
			healthy = false
		}
	}
	if healthy {
		m.release(in)
	} else {
		m.discard(in, err, req)
	}
	return err
}

// callContext adds the step deadline in sandbox mode; without the sandbox
// wazero ignores the context, so no timer is started.
func (m *Module) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !m.engine.opts.Sandbox {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, m.engine.opts.StepTimeout)
}

// acquire returns a warm instance, starts a new one when under the cap, or
// waits for one to be released.
func (m *Module) acquire(ctx context.Context) (*instance, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	select {
	case in := <-m.idle:
		return in, nil
	default:
	}
	select {
	case in := <-m.idle:
		return in, nil
	case m.slots <- struct{}{}:
		in, err := m.newInstance(ctx)
		if err != nil {
			<-m.slots
			return nil, err
		}
		return in, nil
	case <-m.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("wasm: waiting for an instance of module %s: %w", short(m.digest), ctx.Err())
	}
}

// release returns a healthy instance to the pool.
func (m *Module) release(in *instance) {
	if m.closed.Load() {
		in.close()
		<-m.slots
		return
	}
	in.idleSince = time.Now()
	m.idle <- in // never blocks: idle has room for every live instance
}

// discard closes an instance that must not run again and frees its slot. A
// non-nil cause is logged, with the session and message of req, the call
// that failed, when it names them.
func (m *Module) discard(in *instance, cause error, req proto.Message) {
	in.close()
	<-m.slots
	m.discarded.Add(1)
	if cause != nil && !m.closed.Load() {
		m.engine.opts.Logger.Warn("wasm: instance discarded", append(callAttrs(req),
			"module", short(m.digest), "mode", m.descriptor.GetMode(), "err", cause)...)
	}
}

// callAttrs are the log attributes naming the session and message a call
// is about.
func callAttrs(req proto.Message) []any {
	switch r := req.(type) {
	case *abiv1.StepRequest:
		return []any{"session_id", r.GetSession().GetSessionId(), "message_id", r.GetEnvelope().GetMessageId()}
	case *abiv1.ViewRequest:
		return []any{"session_id", r.GetSession().GetSessionId()}
	}
	return nil
}

// shutdown stops the pool and closes the idle instances; busy ones are
// closed by the runtime.
func (m *Module) shutdown(ctx context.Context) {
	if m.closed.Swap(true) {
		return
	}
	close(m.closing)
	for {
		select {
		case in := <-m.idle:
			in.close()
			<-m.slots
		default:
			_ = m.compiled.Close(ctx)
			return
		}
	}
}
