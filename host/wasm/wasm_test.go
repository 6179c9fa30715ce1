package wasm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/wasm"
	abiv1 "github.com/concord-macp/concord/proto/concord/abi/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

var session = &abiv1.Session{
	SessionId:    "s-1",
	Mode:         "test.counter.v1",
	ModeVersion:  "1.0.0",
	Initiator:    "agent://alice",
	Participants: []string{"agent://alice", "agent://bob"},
}

func stepReq(state []byte, typ, sender string, payload []byte) *abiv1.StepRequest {
	return &abiv1.StepRequest{
		State:    state,
		Envelope: &macpv1.Envelope{MessageType: typ, Sender: sender, Payload: payload, SessionId: session.SessionId},
		Session:  session,
	}
}

func num(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

func mustStep(t *testing.T, m *wasm.Module, req *abiv1.StepRequest) *abiv1.StepResponse {
	t.Helper()
	resp, err := m.Step(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestLoad(t *testing.T) {
	e := newEngine(t, wasm.Options{})
	m := load(t, e, counterWasm)
	if got, want := m.Digest(), wasm.Digest(counterWasm); got != want || len(got) != 64 {
		t.Fatalf("digest %q, want %q", got, want)
	}
	want := &macpv1.ModeDescriptor{
		Mode: "test.counter.v1", ModeVersion: "1.0.0", Title: "Counter",
		Description: "adds numbers; a test mode", DeterminismClass: "structural-only",
		ParticipantModel: "declared", MessageTypes: []string{"SessionStart", "Add", "Echo"},
		SchemaUris: map[string]string{"Add": "test://add", "Echo": "test://echo"},
	}
	if !proto.Equal(m.Descriptor(), want) {
		t.Fatalf("descriptor %v", m.Descriptor())
	}
	if s := m.Stats(); s.Live != 1 || s.Idle != 1 || s.Created != 1 {
		t.Fatalf("after load: %+v, want one warm instance", s)
	}

	// The same bytes give the same module, also when loaded concurrently
	// and from a copy.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if again := load(t, e, bytes.Clone(counterWasm)); again != m {
				t.Error("loading the same bytes returned another module")
			}
		})
	}
	wg.Wait()
	if got, ok := e.Module(m.Digest()); !ok || got != m {
		t.Fatal("Module(digest) does not find the loaded module")
	}
	if s := m.Stats(); s.Created != 1 {
		t.Fatalf("reloading started instances: %+v", s)
	}
}

func TestLoadConcurrentFirstLoad(t *testing.T) {
	e := newEngine(t, wasm.Options{})
	mods := make([]*wasm.Module, 6)
	var wg sync.WaitGroup
	for i := range mods {
		wg.Go(func() { mods[i] = load(t, e, hostileWasm) })
	}
	wg.Wait()
	for _, m := range mods {
		if m != mods[0] {
			t.Fatal("concurrent loads of the same bytes returned different modules")
		}
	}
}

func TestCounterStateRoundTrips(t *testing.T) {
	e := newEngine(t, wasm.Options{})
	m := load(t, e, counterWasm)

	resp := mustStep(t, m, stepReq(nil, "SessionStart", "agent://alice", nil))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT || !bytes.Equal(resp.GetState(), num(0)) {
		t.Fatalf("start: %v", resp)
	}
	state := resp.GetState()
	for i, d := range []int64{5, 7, -2} {
		resp = mustStep(t, m, stepReq(state, "Add", "agent://bob", num(d)))
		if resp.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
			t.Fatalf("add %d: %v", i, resp)
		}
		state = resp.GetState()
	}
	if !bytes.Equal(state, num(10)) {
		t.Fatalf("state %x, want 10", state)
	}

	// Rejections carry the mode's code and leave no state.
	resp = mustStep(t, m, stepReq(state, "Add", "agent://mallory", num(1)))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_REJECT || resp.GetErrorCode() != "FORBIDDEN" ||
		resp.GetErrorMessage() != "agent://mallory is not a participant" || resp.GetState() != nil {
		t.Fatalf("non-participant: %v", resp)
	}
	resp = mustStep(t, m, stepReq(state, "Add", "agent://bob", num(-11)))
	if resp.GetErrorCode() != "FORBIDDEN" {
		t.Fatalf("below zero: %v", resp)
	}

	view, err := m.View(context.Background(), &abiv1.ViewRequest{State: state, Session: session})
	if err != nil || view.GetJson() != `{"count":10,"session":"s-1"}` {
		t.Fatalf("view: %v %v", view, err)
	}
	_, err = m.View(context.Background(), &abiv1.ViewRequest{State: []byte("xyz")})
	if !errors.Is(err, wasm.ErrView) || !strings.Contains(err.Error(), "state is 3 bytes") {
		t.Fatalf("view of bad state: %v", err)
	}
	if s := m.Stats(); s.Created != 1 || s.Discarded != 0 {
		t.Fatalf("sequential calls should reuse one instance: %+v", s)
	}
}

func TestEveryRequestFieldReachesTheGuest(t *testing.T) {
	e := newEngine(t, wasm.Options{})
	m := load(t, e, counterWasm)
	req := &abiv1.StepRequest{
		State: []byte{0, 0xff},
		Envelope: &macpv1.Envelope{
			MacpVersion: "1.0", Mode: "test.counter.v1", MessageType: "Echo", MessageId: "m-ü",
			SessionId: "s-1", Sender: "agent://alice", TimestampUnixMs: -7, Payload: []byte{1, 2, 3},
		},
		Session: &abiv1.Session{
			SessionId: "s-1", Mode: "test.counter.v1", ModeVersion: "1.0.0", ConfigurationVersion: "c1",
			PolicyVersion: "policy.default", Initiator: "agent://alice",
			Participants: []string{"agent://alice", "agent://bob"}, StartedAtUnixMs: 1_700_000_000_000,
			PolicyRules: `{"a":1}`, PolicySchemaVersion: 2,
		},
		NowUnixMs: 1_700_000_000_500,
	}
	want := `"1.0"|"test.counter.v1"|"Echo"|"m-ü"|"s-1"|"agent://alice"|-7|010203|00ff|` +
		`"s-1"|"test.counter.v1"|"1.0.0"|"c1"|"policy.default"|"agent://alice"|"agent://alice,agent://bob"|` +
		`1700000000000|"{\"a\":1}"|2|1700000000500`
	if got := string(mustStep(t, m, req).GetState()); got != want {
		t.Fatalf("guest saw\n%s\nwant\n%s", got, want)
	}
}

func TestConcurrentSteps(t *testing.T) {
	const (
		sessions = 16
		steps    = 40
		max      = 3
	)
	e := newEngine(t, wasm.Options{MaxInstances: max})
	m := load(t, e, counterWasm)
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Go(func() {
			state := mustStep(t, m, stepReq(nil, "SessionStart", "agent://alice", nil)).GetState()
			var want int64
			for i := range steps {
				d := int64(s*1000 + i)
				resp, err := m.Step(context.Background(), stepReq(state, "Add", "agent://bob", num(d)))
				if err != nil || resp.GetVerdict() != abiv1.Verdict_VERDICT_ACCEPT {
					t.Errorf("session %d step %d: %v %v", s, i, resp, err)
					return
				}
				state, want = resp.GetState(), want+d
				if live := m.Stats().Live; live > max {
					t.Errorf("%d live instances, cap %d", live, max)
				}
			}
			if !bytes.Equal(state, num(want)) {
				t.Errorf("session %d: state %x, want %d", s, state, want)
			}
		})
	}
	wg.Wait()
	if s := m.Stats(); s.Created > max || s.Discarded != 0 || s.Idle != s.Live {
		t.Fatalf("pool after concurrent steps: %+v", s)
	}
}

func TestGuestPanicIsARejection(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 1})
	m := load(t, e, hostileWasm)
	resp := mustStep(t, m, stepReq(nil, "Panic", "a", nil))
	if resp.GetVerdict() != abiv1.Verdict_VERDICT_REJECT || resp.GetErrorCode() != "INTERNAL_ERROR" ||
		!strings.Contains(resp.GetErrorMessage(), "hostile: deliberate panic") {
		t.Fatalf("panic: %v", resp)
	}
	// A recovered panic does not cost the instance.
	mustStep(t, m, stepReq([]byte("s"), "Ok", "a", nil))
	if s := m.Stats(); s.Created != 1 || s.Discarded != 0 {
		t.Fatalf("after a recovered panic: %+v", s)
	}
}

// checkDiscarded steps typ on m and checks that the call fails with want,
// that the instance is discarded, and that the next call works.
func checkDiscarded(t *testing.T, m *wasm.Module, typ string, payload []byte, want error) error {
	t.Helper()
	before := m.Stats()
	_, err := m.Step(context.Background(), stepReq(nil, typ, "a", payload))
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", typ, err, want)
	}
	t.Logf("%s: %v", typ, err)
	if s := m.Stats(); s.Discarded != before.Discarded+1 || s.Live != 0 {
		t.Fatalf("%s: instance not discarded: before %+v after %+v", typ, before, s)
	}
	resp := mustStep(t, m, stepReq([]byte("next"), "Ok", "a", nil))
	if string(resp.GetState()) != "next" {
		t.Fatalf("%s: next step: %v", typ, resp)
	}
	if s := m.Stats(); s.Created != before.Created+1 || s.Live != 1 {
		t.Fatalf("%s: no fresh instance: %+v", typ, s)
	}
	return err
}

func TestTrapDiscardsInstance(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 1})
	m := load(t, e, hostileWasm)
	err := checkDiscarded(t, m, "Trap", nil, wasm.ErrTrap)
	if !strings.Contains(err.Error(), "out of bounds memory access") {
		t.Errorf("trap message: %v", err)
	}
	err = checkDiscarded(t, m, "Exit", nil, wasm.ErrTrap)
	if !strings.Contains(err.Error(), "exited with code 3") {
		t.Errorf("exit message: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 1, MemoryLimitPages: 512})
	m := load(t, e, hostileWasm)
	err := checkDiscarded(t, m, "Bomb", nil, wasm.ErrMemoryLimit)
	if !errors.Is(err, wasm.ErrTrap) || !strings.Contains(err.Error(), "out of memory") {
		t.Errorf("memory error: %v", err)
	}

	// A cap below the module's declared memory fails the compilation; one
	// too small for the Go runtime to initialize fails the instantiation.
	for _, c := range []struct {
		pages uint32
		want  error
		text  string
	}{
		{16, wasm.ErrCompile, "over limit of 16 pages"},
		{40, wasm.ErrInstantiate, "out of memory"},
	} {
		small := newEngine(t, wasm.Options{MemoryLimitPages: c.pages})
		_, err := small.Load(context.Background(), hostileWasm)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("load under a %d-page cap: %v", c.pages, err)
		}
	}
}

func TestOutputTooLarge(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 1, MaxOutputBytes: 1 << 20})
	m := load(t, e, hostileWasm)
	resp := mustStep(t, m, stepReq(nil, "Big", "a", num(512<<10)))
	if len(resp.GetState()) != 512<<10 {
		t.Fatalf("state of %d bytes", len(resp.GetState()))
	}
	checkDiscarded(t, m, "Big", num(2<<20), wasm.ErrOutputTooLarge)
}

func TestSandboxTimeout(t *testing.T) {
	e := newEngine(t, wasm.Options{Sandbox: true, MaxInstances: 1, StepTimeout: 200 * time.Millisecond})
	m := load(t, e, hostileWasm)
	start := time.Now()
	err := checkDiscarded(t, m, "Loop", nil, wasm.ErrTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout does not wrap context.DeadlineExceeded: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("runaway loop stopped only after %v", d)
	}

	// The caller's own cancellation stops a sandboxed call too.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = m.Step(ctx, stepReq(nil, "Loop", "a", nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled loop: %v", err)
	}
	mustStep(t, m, stepReq(nil, "Ok", "a", nil))
}

func TestWaitForFreeInstance(t *testing.T) {
	e := newEngine(t, wasm.Options{Sandbox: true, MaxInstances: 1, StepTimeout: time.Second})
	m := load(t, e, hostileWasm)
	busy := make(chan error)
	go func() {
		_, err := m.Step(context.Background(), stepReq(nil, "Loop", "a", nil))
		busy <- err
	}()
	for m.Stats().Idle != 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := m.Step(ctx, stepReq(nil, "Ok", "a", nil))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for an instance") {
		t.Fatalf("step while the only instance is busy: %v", err)
	}
	if err := <-busy; !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("loop: %v", err)
	}
	// Once the slot is free a waiting caller gets a new instance.
	mustStep(t, m, stepReq(nil, "Ok", "a", nil))
}

func TestDiscardIsLogged(t *testing.T) {
	var buf syncBuffer
	e := newEngine(t, wasm.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	m := load(t, e, hostileWasm)
	if _, err := m.Step(context.Background(), stepReq(nil, "Trap", "a", nil)); err == nil {
		t.Fatal("trap did not fail")
	}
	if got := buf.String(); !strings.Contains(got, "instance discarded") || !strings.Contains(got, "test.hostile.v1") {
		t.Fatalf("log: %q", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestClose(t *testing.T) {
	e, err := wasm.NewEngine(context.Background(), wasm.Options{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	m := load(t, e, counterWasm)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := m.Step(context.Background(), stepReq(nil, "SessionStart", "a", nil)); !errors.Is(err, wasm.ErrClosed) {
		t.Fatalf("step after close: %v", err)
	}
	if _, err := e.Load(context.Background(), counterWasm); !errors.Is(err, wasm.ErrClosed) {
		t.Fatalf("load after close: %v", err)
	}
}

func TestCacheDirPersistsCompiledCode(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 {
		e, err := wasm.NewEngine(context.Background(), wasm.Options{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		m := load(t, e, counterWasm)
		t.Logf("load %d: %v", i, time.Since(start))
		mustStep(t, m, stepReq(nil, "SessionStart", "a", nil))
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache dir is empty: %v", err)
	}
}

func TestInMemoryCache(t *testing.T) {
	e, err := wasm.NewEngine(context.Background(), wasm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	m := load(t, e, counterWasm)
	mustStep(t, m, stepReq(nil, "SessionStart", "a", nil))
}

func TestBadOptions(t *testing.T) {
	if _, err := wasm.NewEngine(context.Background(), wasm.Options{MemoryLimitPages: 70000}); err == nil {
		t.Fatal("accepted a memory cap above 4 GiB")
	}
}

func TestNilRequests(t *testing.T) {
	e := newEngine(t, wasm.Options{})
	m := load(t, e, counterWasm)
	if _, err := m.Step(context.Background(), nil); err == nil {
		t.Fatal("nil step request accepted")
	}
	if _, err := m.View(context.Background(), nil); err == nil {
		t.Fatal("nil view request accepted")
	}
}

func ExampleEngine() {
	ctx := context.Background()
	e, err := wasm.NewEngine(ctx, wasm.Options{CacheDir: cacheDir, Sandbox: true})
	if err != nil {
		panic(err)
	}
	defer e.Close(ctx)
	m, err := e.Load(ctx, counterWasm)
	if err != nil {
		panic(err)
	}
	resp, err := m.Step(ctx, &abiv1.StepRequest{
		Envelope: &macpv1.Envelope{MessageType: "SessionStart", Sender: "agent://alice"},
		Session:  &abiv1.Session{SessionId: "s-1"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Descriptor().GetMode(), resp.GetVerdict(), resp.GetState())
	// Output: test.counter.v1 VERDICT_ACCEPT [0 0 0 0 0 0 0 0]
}

// TestGarbageIsCollectedAcrossCalls checks that a long-lived instance of a Go
// guest keeps collecting its garbage. Under wazero's default fake clock it
// does not (see stoppedClock in module.go): this guest ran out of memory
// after 344 calls.
func TestGarbageIsCollectedAcrossCalls(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 1})
	m := load(t, e, hostileWasm)
	req := stepReq([]byte("s"), "Garbage", "a", num(1<<20))
	for i := range 1000 {
		if _, err := m.Step(context.Background(), req); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if s := m.Stats(); s.Created != 1 || s.Discarded != 0 {
		t.Fatalf("instance did not survive: %+v", s)
	}
	if mem := m.IdleMemoryForTest(); len(mem) != 1 || mem[0] > 16<<20 {
		t.Fatalf("memory after 1 GiB of garbage: %v", mem)
	}
}

func TestGuestClockIsStopped(t *testing.T) {
	e := newEngine(t, wasm.Options{Sandbox: true, MaxInstances: 1, StepTimeout: 200 * time.Millisecond})
	m := load(t, e, hostileWasm)
	checkDiscarded(t, m, "Sleep", nil, wasm.ErrTimeout)
}

// TestIdleInstancesAreTrimmed: after a burst, instances idle for longer
// than the timeout are closed, down to one warm instance, which still
// serves.
func TestIdleInstancesAreTrimmed(t *testing.T) {
	e := newEngine(t, wasm.Options{MaxInstances: 3, IdleTimeout: -1})
	m := load(t, e, counterWasm)
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			<-release
			mustStep(t, m, stepReq(nil, "SessionStart", "agent://alice", nil))
		})
	}
	close(release)
	wg.Wait()
	live := m.Stats().Live
	m.TrimForTest(time.Now(), time.Hour)
	if got := m.Stats().Live; got != live {
		t.Fatalf("fresh instances were trimmed: %d live, was %d", got, live)
	}
	m.TrimForTest(time.Now().Add(2*time.Hour), time.Hour)
	if s := m.Stats(); s.Live != 1 || s.Idle != 1 || s.Trimmed != uint64(live-1) {
		t.Fatalf("after trimming: %+v (had %d live)", s, live)
	}
	mustStep(t, m, stepReq(nil, "SessionStart", "agent://alice", nil))
}
