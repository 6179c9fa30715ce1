package wasm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/wasm"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// A raw module is assembled here byte by byte: it is not Go, imports nothing
// and has no _initialize, which shows that the host asks no more of a guest
// than the ABI. Its functions return constant outputs from a data segment.

// rawSpec describes a raw module; the zero value (plus outputs) is valid.
type rawSpec struct {
	version    int32
	descriptor []byte
	step       []byte // StepResponse bytes
	view       []byte // ViewResponse bytes
	// stepPacked, when set, replaces the packed result of concord_step.
	stepPacked uint64
	// importEnv adds an import of env.clock.
	importEnv bool
	// omit names an ABI export to leave out.
	omit string
	// badAllocType gives concord_alloc the type () -> i64.
	badAllocType bool
	// loopInit adds an _initialize that never returns.
	loopInit bool
}

const dataBase = 1024

func rawModule(s rawSpec) []byte {
	if s.version == 0 {
		s.version = 1
	}
	data := append(append(append([]byte{}, s.descriptor...), s.step...), s.view...)
	pack := func(off, n int) uint64 { return uint64(dataBase+off)<<32 | uint64(n) }
	descPacked := pack(0, len(s.descriptor))
	stepPacked := pack(len(s.descriptor), len(s.step))
	viewPacked := pack(len(s.descriptor)+len(s.step), len(s.view))
	if s.stepPacked != 0 {
		stepPacked = s.stepPacked
	}

	const (
		i32 = 0x7f
		i64 = 0x7e
	)
	types := [][]byte{
		funcType(nil, []byte{i32}),              // 0: () -> i32
		funcType([]byte{i32}, []byte{i32}),      // 1: (i32) -> i32
		funcType(nil, []byte{i64}),              // 2: () -> i64
		funcType([]byte{i32, i32}, []byte{i64}), // 3: (i32, i32) -> i64
		funcType(nil, nil),                      // 4: () -> ()
	}
	allocType := byte(1)
	if s.badAllocType {
		allocType = 2
	}
	type fn struct {
		name string
		typ  byte
		body []byte
	}
	funcs := []fn{
		{"concord_abi_version", 0, append([]byte{0x41}, sleb(int64(s.version))...)},
		{"concord_alloc", allocType, append([]byte{0x41}, sleb(8192)...)},
		{"concord_describe", 2, append([]byte{0x42}, sleb(int64(descPacked))...)},
		{"concord_step", 3, append([]byte{0x42}, sleb(int64(stepPacked))...)},
		{"concord_view", 3, append([]byte{0x42}, sleb(int64(viewPacked))...)},
	}
	if s.badAllocType {
		funcs[1].body = append([]byte{0x42}, sleb(8192)...)
	}
	if s.loopInit {
		// loop (void) br 0 end
		funcs = append(funcs, fn{"_initialize", 4, []byte{0x03, 0x40, 0x0c, 0x00, 0x0b}})
	}
	var imports [][]byte
	if s.importEnv {
		imports = append(imports, cat(name("env"), name("clock"), []byte{0x00, 4}))
	}
	var funcSec, codeSec, exportSec [][]byte
	for _, f := range funcs {
		if f.name == s.omit {
			continue
		}
		funcSec = append(funcSec, []byte{f.typ})
		body := cat([]byte{0}, f.body, []byte{0x0b}) // no locals, body, end
		codeSec = append(codeSec, cat(uleb(uint64(len(body))), body))
		idx := len(imports) + len(funcSec) - 1
		exportSec = append(exportSec, cat(name(f.name), []byte{0x00}, uleb(uint64(idx))))
	}
	exportSec = append(exportSec, cat(name("memory"), []byte{0x02, 0x00}))
	dataSeg := cat([]byte{0x00, 0x41}, sleb(dataBase), []byte{0x0b}, uleb(uint64(len(data))), data)

	mod := []byte("\x00asm\x01\x00\x00\x00")
	mod = append(mod, section(1, vec(types))...)
	if len(imports) > 0 {
		mod = append(mod, section(2, vec(imports))...)
	}
	mod = append(mod, section(3, vec(funcSec))...)
	mod = append(mod, section(5, vec([][]byte{{0x00, 0x01}}))...) // one memory, min 1 page
	mod = append(mod, section(7, vec(exportSec))...)
	mod = append(mod, section(10, vec(codeSec))...)
	mod = append(mod, section(11, vec([][]byte{dataSeg}))...)
	return mod
}

func funcType(params, results []byte) []byte {
	return cat([]byte{0x60}, uleb(uint64(len(params))), params, uleb(uint64(len(results))), results)
}

func section(id byte, content []byte) []byte {
	return cat([]byte{id}, uleb(uint64(len(content))), content)
}

func vec(items [][]byte) []byte {
	return cat(append([][]byte{uleb(uint64(len(items)))}, items...)...)
}

func name(s string) []byte { return cat(uleb(uint64(len(s))), []byte(s)) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func uleb(v uint64) []byte { return protowire.AppendVarint(nil, v) }

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validRaw(t *testing.T) rawSpec {
	return rawSpec{
		descriptor: marshal(t, &macpv1.ModeDescriptor{Mode: "test.raw.v1", ModeVersion: "0.1.0"}),
		step: marshal(t, &abiv1.StepResponse{
			Verdict: abiv1.Verdict_VERDICT_REJECT, ErrorCode: "FORBIDDEN", ErrorMessage: "raw says no",
		}),
		view: marshal(t, &abiv1.ViewResponse{Json: `{"raw":true}`}),
	}
}

func TestRawModuleWithoutWASI(t *testing.T) {
	e := newEngine(t, wasm.Options{Sandbox: true})
	m := load(t, e, rawModule(validRaw(t)))
	if m.Descriptor().GetMode() != "test.raw.v1" {
		t.Fatalf("descriptor %v", m.Descriptor())
	}
	resp := mustStep(t, m, stepReq([]byte("s"), "Vote", "a", []byte("payload")))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_REJECT || resp.GetErrorMessage() != "raw says no" {
		t.Fatalf("step: %v", resp)
	}
	view, err := m.View(context.Background(), &abiv1.ViewRequest{State: []byte("s")})
	if err != nil || view.GetJson() != `{"raw":true}` {
		t.Fatalf("view: %v %v", view, err)
	}
}

func TestViewErrorFields(t *testing.T) {
	spec := validRaw(t)
	// Fields 2 and 3 of ViewResponse carry a failed view's code and message.
	spec.view = protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "INTERNAL_ERROR")
	spec.view = protowire.AppendString(protowire.AppendTag(spec.view, 3, protowire.BytesType), "no such state")
	e := newEngine(t, wasm.Options{})
	m := load(t, e, rawModule(spec))
	_, err := m.View(context.Background(), &abiv1.ViewRequest{})
	if !errors.Is(err, wasm.ErrView) || !strings.Contains(err.Error(), "INTERNAL_ERROR: no such state") {
		t.Fatalf("view error: %v", err)
	}
}

func TestLoadRejectsModulesOutsideTheABI(t *testing.T) {
	e := newEngine(t, wasm.Options{})
	cases := map[string]struct {
		spec func(*rawSpec)
		want error
		text string
	}{
		"wrong version":  {func(s *rawSpec) { s.version = 2 }, wasm.ErrABI, "ABI version 2"},
		"foreign import": {func(s *rawSpec) { s.importEnv = true }, wasm.ErrABI, "env.clock"},
		"missing step":   {func(s *rawSpec) { s.omit = "concord_step" }, wasm.ErrABI, "does not export concord_step"},
		"mistyped alloc": {func(s *rawSpec) { s.badAllocType = true }, wasm.ErrABI, "concord_alloc has type () -> (i64)"},
		"no descriptor":  {func(s *rawSpec) { s.descriptor = nil }, wasm.ErrABI, "no descriptor"},
		"bad descriptor": {func(s *rawSpec) { s.descriptor = []byte{0xff, 0xff} }, wasm.ErrABI, "decode descriptor"},
		"nameless mode":  {func(s *rawSpec) { s.descriptor = []byte{0x12, 0x01, 'x'} }, wasm.ErrABI, "names no mode"},
		"not wasm":       {nil, wasm.ErrCompile, ""},
		"empty wasm":     {func(s *rawSpec) {}, wasm.ErrABI, "memory"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var b []byte
			switch name {
			case "not wasm":
				b = []byte("definitely not a module")
			case "empty wasm":
				b = []byte("\x00asm\x01\x00\x00\x00")
			default:
				spec := validRaw(t)
				c.spec(&spec)
				b = rawModule(spec)
			}
			_, err := e.Load(context.Background(), b)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("error %v, want %v containing %q", err, c.want, c.text)
			}
			// A failed load is not remembered.
			if _, ok := e.Module(wasm.Digest(b)); ok {
				t.Fatal("failed module is registered")
			}
		})
	}
}

func TestBadOutputsDiscardInstance(t *testing.T) {
	cases := map[string]struct {
		spec func(*rawSpec)
		text string
	}{
		"outside memory":      {func(s *rawSpec) { s.stepPacked = 0xfff0<<32 | 64 }, "outside its 65536-byte memory"},
		"undecodable":         {func(s *rawSpec) { s.step = []byte{0x0a, 0x7f} }, "decode concord_step output"},
		"no verdict":          {func(s *rawSpec) { s.step = marshal(t, &abiv1.StepResponse{ErrorCode: "X"}) }, "verdict VERDICT_UNSPECIFIED"},
		"empty step response": {func(s *rawSpec) { s.step = nil }, "verdict VERDICT_UNSPECIFIED"},
	}
	e := newEngine(t, wasm.Options{})
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			spec := validRaw(t)
			c.spec(&spec)
			m := load(t, e, rawModule(spec))
			before := m.Stats()
			_, err := m.Step(context.Background(), stepReq(nil, "Vote", "a", nil))
			if !errors.Is(err, wasm.ErrABI) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("error %v, want ErrABI containing %q", err, c.text)
			}
			if after := m.Stats(); after.Discarded != before.Discarded+1 {
				t.Fatalf("instance kept after a bad output: %+v", after)
			}
		})
	}
}

func TestSandboxInitTimeout(t *testing.T) {
	spec := validRaw(t)
	spec.loopInit = true
	e := newEngine(t, wasm.Options{Sandbox: true, InitTimeout: 100 * time.Millisecond})
	_, err := e.Load(context.Background(), rawModule(spec))
	if !errors.Is(err, wasm.ErrInstantiate) || !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("load of a module whose _initialize never returns: %v", err)
	}
}
