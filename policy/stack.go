package policy

// OPA's evaluator recurses deeply: one decision needs between 32 and 64
// KB of goroutine stack. A server decides each request on the request's
// own goroutine, which starts with a few KB, so an evaluation would grow
// and copy its stack several times over; growStack makes the runtime grow
// it once, to the size the evaluation needs, before the evaluation starts.
// On a goroutine whose stack is already that large it costs the zeroing of
// its frame. (BenchmarkDecisionCommitmentFreshGoroutine measures the
// difference; a pool of long-lived goroutines saves as much on fresh
// goroutines but costs a handoff on every decision.)

// stackReserve is the frame growStack puts on the stack.
const stackReserve = 32 << 10

//go:noinline
func growStack() {
	var reserve [stackReserve]byte
	touch(reserve[:])
}

// touch keeps the compiler from dropping growStack's frame.
//
//go:noinline
func touch(b []byte) {
	if len(b) > 0 {
		b[len(b)-1] = 1
	}
}
