package crashtest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/concord-macp/concord/internal/proctest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

var (
	killsFlag   = flag.Int("kills", 5, "SIGKILLs to deliver (make crashtest: 25)")
	budgetFlag  = flag.Duration("budget", 3*time.Minute, "time limit of the kill phase; fewer kills than asked within it fail the test")
	workersFlag = flag.Int("workers", 6, "agents playing sessions concurrently")
	seedFlag    = flag.Uint64("seed", 0, "random seed (0: from the clock; the test logs the one it used)")
	replaysFlag = flag.Int("replays", 1, "finished sessions of each kind replayed offline with concord replay --data-dir")
)

// uploadedMode is the example mode the test uploads (examples/modes/broadcast).
const uploadedMode = "ext.mplp.broadcast.v1"

// killKind names when a SIGKILL lands.
type killKind string

const (
	underLoad     killKind = "under load"
	duringStartup killKind = "during start-up"
	duringDrain   killKind = "during the graceful drain"
	duringUpload  killKind = "during a module upload"
	duringPolicy  killKind = "during a policy push"
)

// plan is the order kill kinds take; any five kills in a row cover all of
// them.
var plan = []killKind{underLoad, duringUpload, duringStartup, duringPolicy, duringDrain, underLoad, duringStartup, duringDrain}

// harness owns the server process across kills and restarts.
type harness struct {
	t       *testing.T
	bin     string
	addr    string
	dataDir string
	cache   string
	srv     *proctest.Server
	rng     *rand.Rand
	startup time.Duration // how long the last start took until ready
	kills   map[killKind]int
	drained int // SIGTERMs whose drain finished before the SIGKILL came
	// emptyLogs counts starts that removed a log file a kill left empty.
	emptyLogs int
	faults    []string
	restarts  int
	startups  []time.Duration
}

func (h *harness) args() []string {
	return []string{"--data-dir", h.dataDir, "--wasm-cache-dir", h.cache, "--log-level", "warn", "--shutdown-grace", "5s",
		"--starts-per-minute", "0", "--messages-per-minute", "0", "--max-open-sessions", "0"}
}

// launch starts a server process without waiting for it.
func (h *harness) launch() *proctest.Server {
	h.t.Helper()
	srv, err := proctest.Start(h.bin, h.addr, h.args()...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(srv.Kill)
	return srv
}

// up starts a server and waits until it serves.
func (h *harness) up() {
	h.t.Helper()
	began := time.Now()
	h.srv = h.launch()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := h.srv.Ready(ctx); err != nil {
		h.t.Fatalf("restart %d: %v", h.restarts, err)
	}
	h.startup = time.Since(began)
	h.startups = append(h.startups, h.startup)
	h.restarts++
	if strings.Contains(h.srv.Logs(), "removed an empty log file") {
		h.emptyLogs++
	}
}

// kill ends srv with SIGKILL and records the kind.
func (h *harness) kill(srv *proctest.Server, kind killKind) {
	srv.Kill()
	h.kills[kind]++
	h.checkLogs(srv)
}

// checkLogs records a process that panicked or faulted before it ended.
func (h *harness) checkLogs(srv *proctest.Server) {
	logs := srv.Logs()
	for _, bad := range []string{"panic:", "fatal error", "SIGBUS", "SIGSEGV", "DATA RACE"} {
		if strings.Contains(logs, bad) {
			h.faults = append(h.faults, logs)
			return
		}
	}
}

func (h *harness) total() int {
	n := 0
	for _, c := range h.kills {
		n += c
	}
	return n
}

func (h *harness) pause(lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(h.rng.Int64N(int64(hi-lo)+1)))
}

// pusher uploads modules and pushes policies with the concord CLI, as an
// operator does, and knows which uploads were acknowledged.
type pusher struct {
	h       *harness
	dir     string
	module  []byte
	n       int
	durable map[string]string // what must survive: module digest or policy id -> how it was acknowledged
	upload  time.Duration     // how long the last unkilled upload took
	push    time.Duration     // how long the last unkilled policy push took
}

// moduleVariant returns the module with a custom section that makes its
// digest unique and its size span several store chunks.
func (p *pusher) moduleVariant() (path, digest string) {
	p.n++
	payload := make([]byte, 700<<10+p.n)
	for i := range payload {
		payload[i] = byte(i*31 + p.n)
	}
	name := []byte("crashtest")
	body := binary.AppendUvarint(nil, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	b := append([]byte(nil), p.module...)
	b = append(b, 0) // custom section id
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	path = filepath.Join(p.dir, fmt.Sprintf("broadcast-%d.wasm", p.n))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		p.h.t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

func (p *pusher) policyFiles() (path, id string) {
	p.n++
	id = fmt.Sprintf("policy.crash.p%d", p.n)
	rego := "package concord.custom\n\nmode := \"macp.mode.decision.v1\"\n\ngovern := {\"allow\": true, \"reasons\": []}\n\ntest_allows if govern.allow\n"
	desc := fmt.Sprintf(`{"policy_id": %q, "mode": "macp.mode.decision.v1", "description": "crash test policy %d", "schema_version": 1, "rules": {}}`, id, p.n)
	path = filepath.Join(p.dir, fmt.Sprintf("p%d.rego", p.n))
	if err := os.WriteFile(path, []byte(rego), 0o600); err != nil {
		p.h.t.Fatal(err)
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".rego")+".json", []byte(desc), 0o600); err != nil {
		p.h.t.Fatal(err)
	}
	return path, id
}

// cli runs `concord mode push` or `concord policy push` against the server.
func (p *pusher) cli(ctx context.Context, kind, file string) (int, string) {
	code, out, err := proctest.Run(ctx, p.h.bin, kind, "push", "--server", p.h.srv.URL, "--as", "operator", file)
	if err != nil {
		p.h.t.Fatal(err)
	}
	return code, out
}

// uploadModule uploads a new module variant; with kill set, the server is
// killed at a random moment of the upload. It returns the digest and
// whether the CLI reported success.
func (p *pusher) uploadModule(kill bool) (path, digest string, acked bool) {
	path, digest = p.moduleVariant()
	return path, digest, p.run("mode", path, kill, &p.upload)
}

func (p *pusher) pushPolicy(kill bool) (path, id string, acked bool) {
	path, id = p.policyFiles()
	return path, id, p.run("policy", path, kill, &p.push)
}

func (p *pusher) run(kind, path string, kill bool, took *time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !kill {
		began := time.Now()
		code, out := p.cli(ctx, kind, path)
		*took = time.Since(began)
		if code != 0 {
			p.h.t.Fatalf("concord %s push %s: exit %d: %s", kind, path, code, out)
		}
		return true
	}
	var (
		wg   sync.WaitGroup
		code int
	)
	wg.Go(func() { code, _ = p.cli(ctx, kind, path) })
	// The later half of an upload is where it is written to the store.
	p.h.pause(*took/2, *took*11/10)
	p.h.kill(p.h.srv, map[string]killKind{"mode": duringUpload, "policy": duringPolicy}[kind])
	wg.Wait()
	return code == 0
}

// settleModule checks, after a restart, a module upload the server was
// killed during: acknowledged means it must be served; otherwise it is
// either served or absent, and pushing it again must work.
func (p *pusher) settleModule(f *fleet, path, digest string, acked bool) {
	t := p.h.t
	served := p.moduleServed(f, digest)
	if acked && !served {
		t.Errorf("module %s was acknowledged before the kill but is not served after the restart", digest[:12])
	}
	if !served {
		if code, out := p.cli(context.Background(), "mode", path); code != 0 {
			t.Fatalf("pushing module %s again after the kill: exit %d: %s", digest[:12], code, out)
		}
		if !p.moduleServed(f, digest) {
			t.Fatalf("module %s pushed again but not served", digest[:12])
		}
	}
	p.durable["module "+digest[:12]] = outcome(acked, served)
	f.uploaded.Store(uploadedMode)
}

// outcome describes what became of an upload the server may have been
// killed during.
func outcome(acked, present bool) string {
	switch {
	case acked:
		return "acknowledged, kept"
	case present:
		return "unacknowledged, landed before the kill"
	}
	return "lost with the kill, pushed again"
}

func (p *pusher) moduleServed(f *fleet, digest string) bool {
	res, err := f.admin("operator").ListModules(context.Background(), connect.NewRequest(&adminv1.ListModulesRequest{}))
	if err != nil {
		p.h.t.Fatalf("list modules: %v", err)
	}
	for _, m := range res.Msg.GetModules() {
		if m.GetMode() == uploadedMode && m.GetDigest() == digest {
			return true
		}
	}
	return false
}

// settlePolicy is settleModule for a policy push.
func (p *pusher) settlePolicy(f *fleet, path, id string, acked bool) {
	t := p.h.t
	present := p.policyPresent(f, id)
	if acked && !present {
		t.Errorf("policy %s was acknowledged before the kill but is gone after the restart", id)
	}
	if !present {
		if code, out := p.cli(context.Background(), "policy", path); code != 0 {
			t.Fatalf("pushing policy %s again after the kill: exit %d: %s", id, code, out)
		}
		if !p.policyPresent(f, id) {
			t.Fatalf("policy %s pushed again but not registered", id)
		}
	}
	p.durable["policy "+id] = outcome(acked, present)
	f.policy.Store(id)
}

func (p *pusher) policyPresent(f *fleet, id string) bool {
	_, err := f.client("operator").GetPolicy(context.Background(), connect.NewRequest(&macpv1.GetPolicyRequest{PolicyId: id}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		p.h.t.Fatalf("get policy %s: %v", id, err)
	}
	return err == nil
}

// TestCrash is the crash test; see the package documentation.
func TestCrash(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -args -seed=%d)", seed, seed)
	ctx := context.Background()
	began := time.Now()
	work := t.TempDir()
	bin, err := proctest.Build(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	module, err := proctest.BuildWasm(ctx, work, "./examples/modes/broadcast/wasm")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := proctest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, bin: bin, addr: addr, dataDir: filepath.Join(work, "data"),
		cache: filepath.Join(os.TempDir(), "concord-test-wasm-cache"),
		rng:   rand.New(rand.NewPCG(seed, 1)), kills: map[killKind]int{}}
	t.Logf("setup (binary, module, first start): %v", time.Since(began).Round(time.Millisecond))
	h.up()
	f := newFleet(h.srv.URL, seed)
	p := &pusher{h: h, dir: work, module: module, durable: map[string]string{}}

	// One upload and one policy before the load, unkilled: the scripts
	// use them, and their durations bound the kill moments later.
	path, digest, _ := p.uploadModule(false)
	p.settleModule(f, path, digest, true)
	path, id, _ := p.pushPolicy(false)
	p.settlePolicy(f, path, id, true)

	runCtx, stopRun := context.WithTimeout(ctx, *budgetFlag+2*time.Minute)
	defer stopRun()
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for w := range *workersFlag {
		workers.Go(func() { f.run(runCtx, w, stop) })
	}

	killsBegan := time.Now()
	deadline := killsBegan.Add(*budgetFlag)
	for i := 0; h.total() < *killsFlag; i++ {
		if time.Now().After(deadline) {
			t.Errorf("the budget of %v ran out after %d of %d kills", *budgetFlag, h.total(), *killsFlag)
			break
		}
		if errs := f.failures(); len(errs) > 0 {
			break
		}
		switch kind := plan[i%len(plan)]; kind {
		case underLoad:
			h.pause(200*time.Millisecond, 2*time.Second)
			h.kill(h.srv, underLoad)
			f.markInterrupted()
			h.up()
		case duringDrain:
			h.pause(200*time.Millisecond, 1500*time.Millisecond)
			if err := h.srv.Term(); err != nil {
				t.Fatal(err)
			}
			h.pause(0, 300*time.Millisecond)
			select {
			case <-h.srv.Exited():
				// The drain finished first: a clean stop, not a kill.
				if code := h.srv.ExitCode(); code != 0 {
					t.Fatalf("graceful stop under load: exit %d:\n%s", code, h.srv.Logs())
				}
				h.checkLogs(h.srv)
				h.drained++
			default:
				h.kill(h.srv, duringDrain)
			}
			f.markInterrupted()
			h.up()
		case duringStartup:
			// A clean stop, then a start killed before it is ready.
			h.pause(200*time.Millisecond, time.Second)
			if err := h.srv.Term(); err != nil {
				t.Fatal(err)
			}
			if code, err := h.srv.Wait(time.Minute); err != nil || code != 0 {
				t.Fatalf("SIGTERM: exit %d, %v:\n%s", code, err, h.srv.Logs())
			}
			h.checkLogs(h.srv)
			booting := h.launch()
			h.pause(0, h.startup*9/10)
			kind := duringStartup
			if booting.Serving() {
				kind = underLoad // it was quicker this time
			}
			h.kill(booting, kind)
			f.markInterrupted()
			h.up()
		case duringUpload:
			path, digest, acked := p.uploadModule(true)
			f.markInterrupted()
			h.up()
			p.settleModule(f, path, digest, acked)
		case duringPolicy:
			path, id, acked := p.pushPolicy(true)
			f.markInterrupted()
			h.up()
			p.settlePolicy(f, path, id, acked)
		}
		f.probeSample(ctx, 10)
	}

	// Let every worker finish the session under way, then check it all.
	t.Logf("kill phase: %v", time.Since(killsBegan).Round(time.Millisecond))
	close(stop)
	workers.Wait()
	verifyBegan := time.Now()
	for _, err := range f.failures() {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	v, errs := f.verify(ctx)
	for i, err := range errs {
		if i == 20 {
			t.Errorf("... and %d more", len(errs)-20)
			break
		}
		t.Error(err)
	}

	t.Logf("verification through the server: %v", time.Since(verifyBegan).Round(time.Millisecond))
	replayBegan := time.Now()

	// A final graceful stop, then offline replays of a sample.
	if err := h.srv.Term(); err != nil {
		t.Fatal(err)
	}
	if code, err := h.srv.Wait(time.Minute); err != nil || code != 0 {
		t.Fatalf("final SIGTERM: exit %d, %v:\n%s", code, err, h.srv.Logs())
	}
	h.checkLogs(h.srv)
	replayed, exact := 0, 0
	for _, s := range f.sample(*replaysFlag) {
		replayed++
		code, out, err := proctest.Run(ctx, bin, "replay", "--data-dir", h.dataDir, "--wasm-cache-dir", h.cache, s.script.sid)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 || !strings.Contains(out, "replay is exact") {
			t.Errorf("replay of %s session %s: exit %d:\n%s", s.script.kind, s.script.sid, code, out)
			continue
		}
		exact++
	}
	t.Logf("replays: %v", time.Since(replayBegan).Round(time.Millisecond))
	for _, logs := range h.faults {
		t.Errorf("a server process panicked or faulted:\n%s", logs)
	}

	var kinds []string
	for k, n := range h.kills {
		kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(kinds)
	var durable []string
	for what, how := range p.durable {
		durable = append(durable, what+" ("+how+")")
	}
	sort.Strings(durable)
	slices.Sort(h.startups)
	t.Logf("kills: %d (%s); restarts: %d (median start-up %v, %d of them removing an empty log file a kill left); drains that finished before their kill: %d",
		h.total(), strings.Join(kinds, ", "), h.restarts, h.startups[len(h.startups)/2].Round(time.Millisecond), h.emptyLogs, h.drained)
	t.Logf("acknowledged steps: %d; retries: %d, of which answered as duplicates: %d; lifecycle retries finding the change made: %d",
		f.n.acked.Load(), f.n.retries.Load(), f.n.dupOnRetry.Load(), f.n.controlSeen.Load())
	t.Logf("deliberate resends answered as duplicates: %d", f.n.probes.Load())
	t.Logf("sessions: %d, finished: %d (%d of them interrupted by a kill); log entries verified: %d; verification errors: %d",
		v.sessions, v.finished, v.interrupted, v.entries, len(errs))
	t.Logf("uploads and pushes that survived: %s", strings.Join(durable, "; "))
	t.Logf("replays exact: %d of %d", exact, replayed)
	if v.interrupted == 0 && h.total() > 0 {
		t.Error("no session was under way at any kill: the load did not overlap the kills")
	}
}
