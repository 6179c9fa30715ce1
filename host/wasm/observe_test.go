package wasm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/concord-macp/concord/host/wasm"
)

type hookKey struct{}

func TestStepHookSeesEveryStep(t *testing.T) {
	type seen struct {
		info   wasm.StepInfo
		caller any
		err    error
	}
	var steps []seen
	e := newEngine(t, wasm.Options{MaxInstances: 1, Sandbox: true, StepHook: func(ctx context.Context, info wasm.StepInfo) func(error) {
		steps = append(steps, seen{info: info, caller: ctx.Value(hookKey{})})
		i := len(steps) - 1
		return func(err error) { steps[i].err = err }
	}})
	m := load(t, e, hostileWasm)
	ctx := context.WithValue(context.Background(), hookKey{}, "caller")
	if _, err := m.Step(ctx, stepReq([]byte("s"), "Ok", "a", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(ctx, stepReq(nil, "Trap", "a", nil)); !errors.Is(err, wasm.ErrTrap) {
		t.Fatalf("trap: %v", err)
	}
	if len(steps) != 2 {
		t.Fatalf("hook saw %d steps, want 2", len(steps))
	}
	want := wasm.StepInfo{Digest: m.Digest(), Mode: m.Descriptor().GetMode(), Sandboxed: true}
	for _, s := range steps {
		if s.info != want || s.caller != "caller" {
			t.Fatalf("hook saw %+v with caller %v, want %+v", s.info, s.caller, want)
		}
	}
	if steps[0].err != nil || !errors.Is(steps[1].err, wasm.ErrTrap) {
		t.Fatalf("outcomes %v, %v", steps[0].err, steps[1].err)
	}
}

func TestPoolsDescribeLoadedModules(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 2})
	m := load(t, e, counterWasm)
	pools := e.Pools()
	if len(pools) != 1 {
		t.Fatalf("%d pools, want 1", len(pools))
	}
	p := pools[0]
	if p.Digest != m.Digest() || p.Mode != "test.counter.v1" || p.Sandboxed || p.Live != 1 || p.Idle != 1 || p.Created != 1 {
		t.Fatalf("pool %+v", p)
	}
}

func TestDiscardLogNamesTheSessionAndMessage(t *testing.T) {
	var logs bytes.Buffer
	e := newEngine(t, wasm.Options{MaxInstances: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m := load(t, e, hostileWasm)
	req := stepReq(nil, "Trap", "a", nil)
	req.Envelope.MessageId = "msg-7"
	if _, err := m.Step(context.Background(), req); !errors.Is(err, wasm.ErrTrap) {
		t.Fatalf("trap: %v", err)
	}
	if line := logs.String(); !strings.Contains(line, "instance discarded") || !strings.Contains(line, "session_id="+session.SessionId) || !strings.Contains(line, "message_id=msg-7") {
		t.Fatalf("log: %s", line)
	}
}
