package wasm

import (
	"context"
	"time"
)

// NewInstanceForTest starts an instance of m outside the pool and returns the
// size of its linear memory after initialization and a function closing it.
func (m *Module) NewInstanceForTest(ctx context.Context) (memBytes uint32, closeInstance func(), err error) {
	in, err := m.newInstance(ctx)
	if err != nil {
		return 0, nil, err
	}
	return in.mem.Size(), in.close, nil
}

// IdleMemoryForTest returns the linear-memory size of each idle instance.
func (m *Module) IdleMemoryForTest() []uint32 {
	var sizes []uint32
	for range len(m.idle) {
		select {
		case in := <-m.idle:
			sizes = append(sizes, in.mem.Size())
			defer func() { m.idle <- in }()
		default:
		}
	}
	return sizes
}

// TrimForTest runs one trimming pass of m as if it were now.
func (m *Module) TrimForTest(now time.Time, timeout time.Duration) { m.trim(now, timeout) }
