package wasm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/abi"
)

// How much of a guest's stderr an instance keeps to explain a trap, and how
// much of that an error message shows.
const (
	stderrKeep  = 2048
	stderrShown = 512
)

// instance is one running copy of a module. It serves one call at a time:
// wazero functions are not safe for concurrent use.
type instance struct {
	mod                                  api.Module
	mem                                  api.Memory
	version, alloc, describe, step, view api.Function
	// stack carries parameters in and results out of CallWithStack; two
	// slots fit every ABI function.
	stack  [2]uint64
	stderr stderrWriter
	// idleSince is when the instance was last returned to its pool.
	idleSince time.Time
}

// newInstance starts an instance of m, running its "_initialize".
func (m *Module) newInstance(ctx context.Context) (*instance, error) {
	if m.engine.opts.Sandbox {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.engine.opts.InitTimeout)
		defer cancel()
	}
	in := &instance{}
	mod, err := m.engine.rt.InstantiateModule(ctx, m.compiled, m.config.WithStderr(&in.stderr))
	if err != nil {
		if m.engine.isClosed() {
			return nil, ErrClosed
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: module %s: %w: initialization ran past its deadline",
				ErrInstantiate, short(m.digest), ErrTimeout)
		}
		return nil, fmt.Errorf("%w: module %s: %s%s", ErrInstantiate, short(m.digest),
			firstLine(err.Error()), in.stderr.suffix())
	}
	in.mod = mod
	in.mem = mod.ExportedMemory(exportMemory)
	in.version = mod.ExportedFunction(abi.ExportVersion)
	in.alloc = mod.ExportedFunction(abi.ExportAlloc)
	in.describe = mod.ExportedFunction(abi.ExportDescribe)
	in.step = mod.ExportedFunction(abi.ExportStep)
	in.view = mod.ExportedFunction(abi.ExportView)
	m.created.Add(1)
	return in, nil
}

// close closes the instance; it must not be used afterwards.
func (in *instance) close() {
	_ = in.mod.Close(context.Background())
}

// call runs fn, the export named export (step or view), with req written
// into guest memory and decodes its output into resp. healthy reports
// whether the instance may be used again: false after any failure inside the
// guest or of the ABI.
func (in *instance) call(ctx context.Context, m *Module, fn api.Function, export string, req, resp proto.Message) (healthy bool, err error) {
	size := proto.Size(req)
	if size > math.MaxInt32 {
		return true, fmt.Errorf("wasm: %s request of %d bytes is too large", export, size)
	}
	in.stderr.reset()
	in.stack[0] = uint64(size)
	if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
		return false, m.callError(in, abi.ExportAlloc, err)
	}
	ptr := uint32(in.stack[0])
	dst, ok := in.mem.Read(ptr, uint32(size))
	if !ok || (ptr == 0 && size > 0) { // 0 is how a guest reports a failed allocation
		return false, fmt.Errorf("%w: module %s: %s(%d) returned %#x, outside its %d-byte memory",
			ErrABI, short(m.digest), abi.ExportAlloc, size, ptr, in.mem.Size())
	}
	// Marshal straight into guest memory: dst has exactly size bytes of
	// capacity, so the append fills it in place.
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(dst[:0], req)
	if err != nil {
		return true, fmt.Errorf("wasm: marshal %s request: %w", export, err)
	}
	if len(b) != size {
		return true, fmt.Errorf("wasm: %s request changed while being marshaled", export)
	}
	if size > 0 && &b[0] != &dst[0] {
		in.mem.Write(ptr, b)
	}
	out, err := in.output(ctx, m, fn, export, ptr, uint32(size))
	if err != nil {
		return false, err
	}
	// Unmarshal copies what it keeps, so out may point into guest memory.
	if err := proto.Unmarshal(out, resp); err != nil {
		return false, fmt.Errorf("%w: module %s: decode %s output: %v", ErrABI, short(m.digest), export, err)
	}
	return true, nil
}

// output calls fn with (ptr, n), unpacks its ptr<<32|len result and returns
// a view of those bytes in guest memory, valid until the next call.
func (in *instance) output(ctx context.Context, m *Module, fn api.Function, export string, ptr, n uint32) ([]byte, error) {
	in.stack[0], in.stack[1] = uint64(ptr), uint64(n)
	if err := fn.CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, m.callError(in, export, err)
	}
	packed := in.stack[0]
	outPtr, outLen := uint32(packed>>32), uint32(packed)
	if limit := m.engine.opts.MaxOutputBytes; int64(outLen) > int64(limit) {
		return nil, fmt.Errorf("%w: module %s: %s returned %d bytes, limit %d",
			ErrOutputTooLarge, short(m.digest), export, outLen, limit)
	}
	out, ok := in.mem.Read(outPtr, outLen)
	if !ok {
		return nil, fmt.Errorf("%w: module %s: %s returned [%#x, +%d), outside its %d-byte memory",
			ErrABI, short(m.digest), export, outPtr, outLen, in.mem.Size())
	}
	return out, nil
}

// callError turns a failed guest call into an error wrapping a sentinel.
func (m *Module) callError(in *instance, export string, err error) error {
	if m.closed.Load() || m.engine.isClosed() {
		return fmt.Errorf("%w (during %s)", ErrClosed, export)
	}
	where := fmt.Sprintf("%s of module %s", export, short(m.digest))
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fmt.Errorf("%w: %s: %w", ErrTimeout, where, context.DeadlineExceeded)
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("wasm: %s interrupted: %w", where, context.Canceled)
		}
		return fmt.Errorf("%w: %s: guest exited with code %d%s", ErrTrap, where, exit.ExitCode(), in.stderr.suffix())
	}
	if strings.Contains(string(in.stderr.buf), "out of memory") {
		return fmt.Errorf("%w: %s: %s%s", ErrMemoryLimit, where, firstLine(err.Error()), in.stderr.suffix())
	}
	return fmt.Errorf("%w: %s: %s%s", ErrTrap, where, firstLine(err.Error()), in.stderr.suffix())
}

// firstLine drops the wasm stack trace wazero appends to trap messages.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// stderrWriter keeps the first stderrKeep bytes a guest writes during a
// call: a Go runtime prints the fatal error first and goroutine dumps after.
type stderrWriter struct {
	buf []byte
}

func (w *stderrWriter) Write(p []byte) (int, error) {
	if room := stderrKeep - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *stderrWriter) reset() { w.buf = w.buf[:0] }

// suffix renders the start of the kept stderr, up to the first blank line,
// for an error message, or "" when empty.
func (w *stderrWriter) suffix() string {
	s := string(w.buf)
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > stderrShown {
		s = s[:stderrShown] + "…"
	}
	if s == "" {
		return ""
	}
	return fmt.Sprintf("; guest stderr: %q", s)
}
