//go:build wasip1

package guest

import (
	"github.com/concord-macp/concord/macperr"
	"unsafe"

	"github.com/concord-macp/concord/abi"
)

// The ABI exports. Since Go 1.24 //go:wasmexport may be used in any package,
// not only in main, so a mode's main package only has to import this package
// and call Serve; the exports below are linked into the module with it.

// Buffers shared with the host. They are package variables so that the
// garbage collector keeps them alive while the host writes the input or reads
// the output between two calls.
var (
	// inBuf holds the input the host writes after concord_alloc.
	inBuf []byte
	// outBuf holds the output of the last call, until the next call.
	outBuf []byte
)

const (
	// minInput is the smallest input buffer allocated, so that small
	// requests reuse one buffer.
	minInput = 512
	// keepBuffer is the largest buffer kept for reuse; a larger one is
	// released after use so that one big request does not pin its memory.
	keepBuffer = 1 << 20
)

//go:wasmexport concord_abi_version
func exportABIVersion() int32 { return abi.Version }

//go:wasmexport concord_alloc
func exportAlloc(n int32) uint32 {
	if n < 0 {
		return 0
	}
	size := max(int(n), minInput)
	if cap(inBuf) < size || (cap(inBuf) > keepBuffer && size <= keepBuffer) {
		inBuf = make([]byte, size)
	}
	return addr(inBuf[:cap(inBuf)])
}

//go:wasmexport concord_describe
func exportDescribe() uint64 {
	out, ok := handleDescribe(registered, scratch())
	if !ok {
		return output(nil)
	}
	return output(out)
}

//go:wasmexport concord_step
func exportStep(ptr, n uint32) uint64 {
	in, ok := input(ptr, n)
	if !ok {
		res := Reject(macperr.InternalError, "step input is not inside the buffer returned by concord_alloc")
		return output(appendStepResponse(scratch(), &res))
	}
	return output(handleStep(registered, in, scratch()))
}

//go:wasmexport concord_view
func exportView(ptr, n uint32) uint64 {
	in, ok := input(ptr, n)
	if !ok {
		return output(appendViewResponse(scratch(), nil, macperr.InternalError,
			"view input is not inside the buffer returned by concord_alloc"))
	}
	return output(handleView(registered, in, scratch()))
}

// input returns the n bytes at ptr, which must lie inside the buffer that
// concord_alloc returned; any other range is refused rather than read.
func input(ptr, n uint32) ([]byte, bool) {
	buf := inBuf[:cap(inBuf)]
	if len(buf) == 0 {
		return nil, n == 0
	}
	base := addr(buf)
	if ptr < base || uint64(ptr-base)+uint64(n) > uint64(len(buf)) {
		return nil, false
	}
	off := ptr - base
	return buf[off : off+n : off+n], true
}

// scratch returns an empty slice to encode the next output into, reusing the
// previous output's memory unless it is large.
func scratch() []byte {
	if cap(outBuf) > keepBuffer {
		outBuf = nil
	}
	return outBuf[:0]
}

// output keeps b alive until the next call and returns it packed as
// ptr<<32 | len (0 when empty).
func output(b []byte) uint64 {
	outBuf = b
	if len(b) == 0 {
		return 0
	}
	return uint64(addr(b))<<32 | uint64(len(b))
}

// addr is the linear-memory address of b's first byte; b must not be empty.
func addr(b []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
