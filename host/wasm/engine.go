package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Defaults for Options fields left at zero.
const (
	// DefaultMemoryLimitPages is 32 MiB; a Go guest needs at least 16 MiB.
	DefaultMemoryLimitPages = 512
	// DefaultStepTimeout bounds one sandboxed Step or View.
	DefaultStepTimeout = time.Second
	// DefaultInitTimeout bounds starting one sandboxed instance.
	DefaultInitTimeout = 5 * time.Second
	// DefaultMaxOutputBytes bounds what one call may return.
	DefaultMaxOutputBytes = 8 << 20
)

// maxPages is the largest memory a 32-bit WebAssembly module can address.
const maxPages = 65536

// Options configure an Engine. The zero value is usable.
type Options struct {
	// CacheDir, when set, keeps compiled machine code in this directory so
	// that a later process loading the same module skips compilation. When
	// empty, compiled code is cached in memory only.
	CacheDir string
	// MemoryLimitPages caps each instance's linear memory, in 64 KiB pages.
	// Zero selects DefaultMemoryLimitPages.
	MemoryLimitPages uint32
	// MaxInstances caps the instances alive at once for each module; callers
	// beyond it wait for a free one. Zero selects GOMAXPROCS.
	MaxInstances int
	// Sandbox makes calls interruptible: each call gets a deadline and a
	// cancelled context closes the instance. Required for untrusted modules.
	// Without it a guest that never returns blocks its caller for ever.
	Sandbox bool
	// StepTimeout is the deadline of one sandboxed call. Zero selects
	// DefaultStepTimeout. Ignored without Sandbox.
	StepTimeout time.Duration
	// InitTimeout is the deadline for starting one sandboxed instance (its
	// "_initialize"). Zero selects DefaultInitTimeout. Ignored without
	// Sandbox.
	InitTimeout time.Duration
	// MaxOutputBytes caps the bytes one call may return. Zero selects
	// DefaultMaxOutputBytes.
	MaxOutputBytes int
	// IdleTimeout is how long an idle instance is kept before it is closed
	// (one per module always stays warm). Zero selects DefaultIdleTimeout;
	// negative keeps every instance.
	IdleTimeout time.Duration
	// Logger receives a warning when an instance is discarded. Nil selects
	// slog.Default().
	Logger *slog.Logger
	// StepHook, when set, is told about every Step (metrics, traces).
	StepHook StepHook
}

func (o Options) withDefaults() (Options, error) {
	if o.MemoryLimitPages == 0 {
		o.MemoryLimitPages = DefaultMemoryLimitPages
	}
	if o.MemoryLimitPages > maxPages {
		return o, fmt.Errorf("wasm: MemoryLimitPages %d exceeds %d", o.MemoryLimitPages, maxPages)
	}
	if o.MaxInstances <= 0 {
		o.MaxInstances = runtime.GOMAXPROCS(0)
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = DefaultStepTimeout
	}
	if o.InitTimeout <= 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.MaxOutputBytes <= 0 {
		o.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Engine compiles and runs mode modules. It is safe for concurrent use.
type Engine struct {
	opts  Options
	rt    wazero.Runtime
	cache wazero.CompilationCache

	mu      sync.Mutex
	closed  bool
	modules map[string]*loading // by digest

	stopTrim context.CancelFunc
	trimDone chan struct{}
}

// loading is a module being loaded, or loaded; done is closed when mod or
// err is set.
type loading struct {
	done chan struct{}
	mod  *Module
	err  error
}

// NewEngine starts a wazero runtime configured by opts, with WASI preview 1
// available to guests.
func NewEngine(ctx context.Context, opts Options) (*Engine, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var cache wazero.CompilationCache
	if opts.CacheDir != "" {
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("wasm: compilation cache in %s: %w", opts.CacheDir, err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(opts.MemoryLimitPages).
		WithCloseOnContextDone(opts.Sandbox)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("wasm: instantiate WASI: %w", err)
	}
	e := &Engine{opts: opts, rt: rt, cache: cache, modules: map[string]*loading{}, trimDone: make(chan struct{})}
	if opts.IdleTimeout > 0 {
		var trimCtx context.Context
		trimCtx, e.stopTrim = context.WithCancel(context.WithoutCancel(ctx))
		go e.trimIdle(trimCtx, opts.IdleTimeout)
	} else {
		close(e.trimDone)
	}
	return e, nil
}

// Digest returns the content address of a module: the lowercase hex sha256
// of its bytes.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

// Load compiles wasm, checks it against the ABI, starts one instance and
// reads its descriptor. Loading bytes that were loaded before returns the same
// Module; concurrent loads of the same bytes compile once. A failed load is
// not remembered. Load does not keep wasm.
func (e *Engine) Load(ctx context.Context, wasm []byte) (*Module, error) {
	digest := Digest(wasm)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if l, ok := e.modules[digest]; ok {
		e.mu.Unlock()
		select {
		case <-l.done:
			return l.mod, l.err
		case <-ctx.Done():
			return nil, fmt.Errorf("wasm: waiting for module %s: %w", short(digest), ctx.Err())
		}
	}
	l := &loading{done: make(chan struct{})}
	e.modules[digest] = l
	e.mu.Unlock()

	// wazero may keep references into the bytes it compiles; the caller's
	// slice stays the caller's.
	l.mod, l.err = e.load(ctx, digest, bytes.Clone(wasm))
	if l.err != nil {
		e.mu.Lock()
		delete(e.modules, digest)
		e.mu.Unlock()
	}
	close(l.done)
	return l.mod, l.err
}

// Module returns the loaded module with the given digest, if any.
func (e *Engine) Module(digest string) (*Module, bool) {
	e.mu.Lock()
	l, ok := e.modules[digest]
	e.mu.Unlock()
	if !ok {
		return nil, false
	}
	select {
	case <-l.done:
		return l.mod, l.err == nil
	default:
		return nil, false
	}
}

// Close closes every module and instance and the runtime. Calls in progress
// fail; later calls return ErrClosed.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	if e.stopTrim != nil {
		e.stopTrim()
	}
	var mods []*Module
	for _, l := range e.modules {
		select {
		case <-l.done:
			if l.mod != nil {
				mods = append(mods, l.mod)
			}
		default:
		}
	}
	e.mu.Unlock()

	<-e.trimDone
	for _, m := range mods {
		m.shutdown(ctx)
	}
	err := e.rt.Close(ctx)
	if cerr := e.cache.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wasm: close runtime: %w", err)
	}
	return nil
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// short abbreviates a digest for messages.
func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
