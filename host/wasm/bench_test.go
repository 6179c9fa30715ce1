package wasm_test

import (
	"context"
	"testing"

	"github.com/concord-macp/concord/host/wasm"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
)

// Run with: go test -run '^$' -bench . -benchmem ./host/wasm/

// BenchmarkInstantiate measures starting one instance of a Go guest
// (instantiation and the Go runtime's _initialize), and reports its linear
// memory right after.
func BenchmarkInstantiate(b *testing.B) {
	for _, sandbox := range []bool{false, true} {
		b.Run(mode(sandbox), func(b *testing.B) {
			m := load(b, newEngine(b, wasm.Options{Sandbox: sandbox}), counterWasm)
			ctx := context.Background()
			var mem uint32
			for b.Loop() {
				size, closeInstance, err := m.NewInstanceForTest(ctx)
				if err != nil {
					b.Fatal(err)
				}
				mem = size
				closeInstance()
			}
			b.ReportMetric(float64(mem), "mem-bytes/instance")
		})
	}
}

// BenchmarkStep measures one small step (8-byte state, 8-byte payload,
// two participants) through a pooled instance, including the host-side
// protobuf marshal and unmarshal, and reports the instance's linear memory
// afterwards.
func BenchmarkStep(b *testing.B) {
	for _, sandbox := range []bool{false, true} {
		b.Run(mode(sandbox), func(b *testing.B) {
			m := load(b, newEngine(b, wasm.Options{Sandbox: sandbox, MaxInstances: 1}), counterWasm)
			ctx := context.Background()
			req := stepReq(num(41), "Add", "agent://bob", num(1))
			for b.Loop() {
				resp, err := m.Step(ctx, req)
				if err != nil || resp.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
					b.Fatal(resp, err)
				}
			}
			if mem := m.IdleMemoryForTest(); len(mem) == 1 {
				b.ReportMetric(float64(mem[0]), "mem-bytes/instance")
			}
		})
	}
}

// BenchmarkStepParallel runs small steps from GOMAXPROCS goroutines against
// a pool of GOMAXPROCS instances.
func BenchmarkStepParallel(b *testing.B) {
	for _, sandbox := range []bool{false, true} {
		b.Run(mode(sandbox), func(b *testing.B) {
			m := load(b, newEngine(b, wasm.Options{Sandbox: sandbox}), counterWasm)
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				req := stepReq(num(41), "Add", "agent://bob", num(1))
				for pb.Next() {
					if _, err := m.Step(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkView measures rendering a small state as JSON.
func BenchmarkView(b *testing.B) {
	m := load(b, newEngine(b, wasm.Options{MaxInstances: 1}), counterWasm)
	ctx := context.Background()
	req := &abiv1.ViewRequest{State: num(41), Session: session}
	for b.Loop() {
		if _, err := m.View(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadFromCacheDir measures a new engine loading a module whose
// machine code is already in the on-disk compilation cache, as after a
// restart: cache read, first instance, version check and describe.
func BenchmarkLoadFromCacheDir(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	warm, err := wasm.NewEngine(ctx, wasm.Options{CacheDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	load(b, warm, counterWasm)
	warm.Close(ctx)
	for b.Loop() {
		e, err := wasm.NewEngine(ctx, wasm.Options{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		load(b, e, counterWasm)
		e.Close(ctx)
	}
}

func mode(sandbox bool) string {
	if sandbox {
		return "sandboxed"
	}
	return "trusted"
}
