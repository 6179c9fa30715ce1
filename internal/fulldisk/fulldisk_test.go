//go:build linux

package fulldisk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/auth"
	"github.com/concord-macp/concord/host/server"
	"github.com/concord-macp/concord/host/store"
	"github.com/concord-macp/concord/internal/proctest"
	"github.com/concord-macp/concord/internal/servertest"
	adminv1 "github.com/concord-macp/concord/proto/concord/admin/v1"
	"github.com/concord-macp/concord/proto/concord/admin/v1/adminv1connect"
	decisionv1 "github.com/concord-macp/concord/proto/macp/modes/decision/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
	"github.com/concord-macp/concord/proto/macp/v1/macpv1connect"
)

const (
	decisionMode = "macp.mode.decision.v1"
	agentCount   = 8
	proposalSize = 60_000
	// diskFullText is what a refusal's message must contain.
	diskFullText = "disk is full"
)

// wasmCache is the compilation cache shared by every test server of the
// machine (see internal/servertest); it stays off the small disk, which
// could not hold the compiled built-in modes besides the stored ones.
var wasmCache = filepath.Join(os.TempDir(), "concord-test-wasm-cache")

// ledger records every acknowledged message, per session, in order.
type ledger struct {
	mu       sync.Mutex
	sessions map[string][]string // session id -> acked message ids
	owner    map[string]int      // session id -> agent number
}

func newLedger() *ledger {
	return &ledger{sessions: map[string][]string{}, owner: map[string]int{}}
}

func (l *ledger) ack(agent int, sid, mid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sessions[sid] = append(l.sessions[sid], mid)
	l.owner[sid] = agent
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ids := range l.sessions {
		n += len(ids)
	}
	return n
}

// team holds the agents' clients; agent i is coordinator-i, who starts
// sessions with alice-i and bob-i.
type team struct {
	url     string
	mu      sync.Mutex
	clients map[string]macpv1connect.MACPRuntimeServiceClient
}

func (tm *team) client(identity string) macpv1connect.MACPRuntimeServiceClient {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.clients == nil {
		tm.clients = map[string]macpv1connect.MACPRuntimeServiceClient{}
	}
	c, ok := tm.clients[identity]
	if !ok {
		c = macpv1connect.NewMACPRuntimeServiceClient(proctest.H2C(), tm.url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
		tm.clients[identity] = c
	}
	return c
}

func (tm *team) admin(identity string) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(proctest.H2C(), tm.url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(identity)))
}

func envelope(typ, mid, sid string, p proto.Message) *macpv1.Envelope {
	return servertest.Envelope(decisionMode, typ, mid, sid, p)
}

func send(ctx context.Context, c macpv1connect.MACPRuntimeServiceClient, env *macpv1.Envelope) (*macpv1.Ack, error) {
	res, err := c.Send(ctx, connect.NewRequest(&macpv1.SendRequest{Envelope: env}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetAck(), nil
}

// isDiskFull reports whether ack is the refusal of a full disk, and fails
// the test for any other refusal.
func isDiskFull(t *testing.T, ack *macpv1.Ack) bool {
	t.Helper()
	if ack.GetOk() {
		return false
	}
	e := ack.GetError()
	if e.GetCode() != "INTERNAL_ERROR" || !strings.Contains(e.GetMessage(), diskFullText) {
		t.Errorf("refusal %s %q: want INTERNAL_ERROR naming the full disk", e.GetCode(), e.GetMessage())
	}
	return true
}

// fill has every agent open Decision sessions with 60 KB proposals until
// the server refuses one of its writes for the full disk. It returns how
// many refusals it saw.
func fill(t *testing.T, tm *team, l *ledger, round int) int {
	t.Helper()
	ctx := context.Background()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		refusals int
	)
	for i := range agentCount {
		wg.Go(func() {
			coordinator, alice := tm.client(fmt.Sprintf("coordinator-%d", i)), tm.client(fmt.Sprintf("alice-%d", i))
			for n := 0; n < 2000; n++ {
				sid := servertest.NewSessionID()
				start := envelope("SessionStart", "m0", sid, &macpv1.SessionStartPayload{
					Intent: "fill the disk", Participants: []string{fmt.Sprintf("alice-%d", i), fmt.Sprintf("bob-%d", i)},
					ModeVersion: "1.0.0", ConfigurationVersion: "full-disk", TtlMs: 3_600_000,
				})
				proposal := envelope("Proposal", "p1", sid, &decisionv1.ProposalPayload{
					ProposalId: "p1", Option: fmt.Sprintf("option %d/%d", round, n), Rationale: strings.Repeat("r", proposalSize),
				})
				for _, step := range []struct {
					c   macpv1connect.MACPRuntimeServiceClient
					env *macpv1.Envelope
				}{{coordinator, start}, {alice, proposal}} {
					ack, err := send(ctx, step.c, step.env)
					if err != nil {
						t.Errorf("agent %d: %s: transport error %v (is the server down?)", i, step.env.MessageType, err)
						return
					}
					if isDiskFull(t, ack) {
						mu.Lock()
						refusals++
						mu.Unlock()
						return
					}
					l.ack(i, sid, step.env.MessageId)
				}
			}
			t.Errorf("agent %d: 2000 sessions and the disk never filled", i)
		})
	}
	wg.Wait()
	return refusals
}

// checkFullButServing checks a server whose disk is full: health says
// NOT_SERVING, a lifecycle RPC is RESOURCE_EXHAUSTED with the MACP code,
// and acknowledged sessions can still be read. Badger's compactions may
// free a little space meanwhile and let a small write through; then the
// disk is filled again and the check repeated.
func checkFullButServing(t *testing.T, tm *team, l *ledger, round int) {
	t.Helper()
	ctx := context.Background()
	notServing, refused := false, false
	for attempt := 0; attempt < 5 && !(notServing && refused); attempt++ {
		if attempt > 0 {
			fill(t, tm, l, round*10+attempt)
		}
		if health(t, tm.url) == grpchealth.StatusNotServing {
			notServing = true
		}
		sid, owner := l.proposed()
		ack, err := tm.client(fmt.Sprintf("coordinator-%d", owner)).CancelSession(ctx, connect.NewRequest(&macpv1.CancelSessionRequest{SessionId: sid, Reason: "full disk"}))
		var ce *connect.Error
		switch {
		case err == nil && ack.Msg.GetAck().GetOk():
			l.ack(owner, sid, ack.Msg.GetAck().GetMessageId()) // space came back for it
		case errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted && ce.Meta().Get("macp-error-code") == "INTERNAL_ERROR" &&
			strings.Contains(ce.Message(), diskFullText):
			refused = true
		default:
			t.Fatalf("CancelSession on a full disk: %v %v, want RESOURCE_EXHAUSTED, macp-error-code INTERNAL_ERROR, naming the disk", ack, err)
		}
	}
	if !notServing || !refused {
		t.Errorf("on a full disk: health NOT_SERVING seen %t, CancelSession refused %t; want both", notServing, refused)
	}
	verify(t, tm, l, 10)
}

// proposed returns a session that holds exactly its start and proposal.
func (l *ledger) proposed() (sid string, owner int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, ids := range l.sessions {
		if len(ids) == 2 {
			return id, l.owner[id]
		}
	}
	return "", 0
}

// verify reads acknowledged sessions back through the server: the log of
// each holds exactly the acknowledged messages, in order. sample > 0
// checks only that many sessions.
func verify(t *testing.T, tm *team, l *ledger, sample int) {
	t.Helper()
	ctx := context.Background()
	l.mu.Lock()
	defer l.mu.Unlock()
	checked := 0
	for sid, ids := range l.sessions {
		if sample > 0 && checked == sample {
			break
		}
		checked++
		who := fmt.Sprintf("coordinator-%d", l.owner[sid])
		in, err := tm.admin(who).InspectSession(ctx, connect.NewRequest(&adminv1.InspectSessionRequest{SessionId: sid}))
		if err != nil {
			t.Errorf("inspect %s: %v", sid, err)
			continue
		}
		if in.Msg.GetLogLength() != uint64(len(ids)) {
			t.Errorf("session %s: log of %d entries, %d acknowledged (%v)", sid, in.Msg.GetLogLength(), len(ids), ids)
			continue
		}
		envs, err := proctest.StreamLog(ctx, tm.client(who), sid, len(ids))
		if err != nil {
			t.Errorf("stream %s: %v", sid, err)
			continue
		}
		for i, e := range envs {
			if e.GetMessageId() != ids[i] {
				t.Errorf("session %s: entry %d is %s, acknowledged %s", sid, i+1, e.GetMessageId(), ids[i])
			}
		}
	}
}

func health(t *testing.T, url string) grpchealth.Status {
	t.Helper()
	res, err := grpchealth.NewClient(proctest.H2C(), url, connect.WithGRPC()).Check(context.Background(), &grpchealth.CheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	return res.Status
}

// waitHealth polls health until it reports want, for up to 20 s.
func waitHealth(t *testing.T, url string, want grpchealth.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for health(t, url) != want {
		if time.Now().After(deadline) {
			t.Fatalf("health never became %v", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finishOne resolves one acknowledged session (Evaluation, votes,
// Commitment), to show that half-finished sessions continue.
func finishOne(t *testing.T, tm *team, l *ledger) {
	t.Helper()
	sid, owner := l.proposed()
	if sid == "" {
		t.Fatal("no session with its proposal acknowledged")
	}
	alice, bob, coordinator := fmt.Sprintf("alice-%d", owner), fmt.Sprintf("bob-%d", owner), fmt.Sprintf("coordinator-%d", owner)
	for _, s := range []struct {
		who string
		env *macpv1.Envelope
	}{
		{bob, envelope("Evaluation", "e1", sid, &decisionv1.EvaluationPayload{ProposalId: "p1", Recommendation: "APPROVE", Confidence: 0.9, Reason: "fine"})},
		{alice, envelope("Vote", "v1", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"})},
		{bob, envelope("Vote", "v2", sid, &decisionv1.VotePayload{ProposalId: "p1", Vote: "APPROVE"})},
		{coordinator, envelope("Commitment", "c1", sid, &macpv1.CommitmentPayload{
			CommitmentId: "c1", Action: "decision.selected", AuthorityScope: "test", Reason: "approved",
			ModeVersion: "1.0.0", ConfigurationVersion: "full-disk", OutcomePositive: true,
		})},
	} {
		ack, err := send(context.Background(), tm.client(s.who), s.env)
		if err != nil || !ack.GetOk() {
			t.Fatalf("%s %s on session %s: %v %v", s.who, s.env.MessageType, sid, ack, err)
		}
		l.ack(owner, sid, s.env.MessageId)
		if s.env.MessageType == "Commitment" && ack.GetSessionState() != macpv1.SessionState_SESSION_STATE_RESOLVED {
			t.Fatalf("Commitment left the session %v", ack.GetSessionState())
		}
	}
}

func mountTmpfs(dir, size string) error {
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount tmpfs: %w: %s", err, out)
	}
	return nil
}

func resizeTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs to %s: %v: %s", size, err, out)
	}
}

// fillFilesystem writes a file until the filesystem has no space left.
func fillFilesystem(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill the filesystem: %v", err)
			}
			return
		}
	}
}

func serveArgs(dataDir string) []string {
	return []string{"--data-dir", dataDir, "--wasm-cache-dir", wasmCache,
		"--starts-per-minute", "0", "--messages-per-minute", "0", "--max-open-sessions", "0"}
}

func startReady(t *testing.T, bin, addr, dataDir string) *proctest.Server {
	t.Helper()
	srv, err := proctest.Start(bin, addr, serveArgs(dataDir)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := srv.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return srv
}

func noFault(t *testing.T, srv *proctest.Server) {
	t.Helper()
	if logs := srv.Logs(); strings.Contains(logs, "SIGBUS") || strings.Contains(logs, "fatal error") || strings.Contains(logs, "panic:") {
		t.Fatalf("the server faulted:\n%s", logs)
	}
}

// TestFullDisk runs the real binary on a 48 MiB tmpfs: the built-in
// modules it stores at start-up take 20 MB of it.
func TestFullDisk(t *testing.T) {
	disk := t.TempDir()
	if err := mountTmpfs(disk, "48m"); err != nil {
		t.Logf("cannot mount a small filesystem (%v): simulating one at the store's lowest layer", err)
		testSimulatedFullDisk(t)
		return
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })
	bin, err := proctest.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := proctest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(disk, "data")
	srv := startReady(t, bin, addr, dataDir)
	tm := &team{url: srv.URL}
	l := newLedger()

	// The disk fills: every agent is refused, the server stays up.
	refusals := fill(t, tm, l, 1)
	acked := l.count()
	t.Logf("first fill: %d messages acknowledged, %d refused for the full disk", acked, refusals)
	if refusals != agentCount || acked == 0 {
		t.Fatalf("%d refusals and %d acknowledgements, want one refusal per agent after some acknowledgements", refusals, acked)
	}
	select {
	case <-srv.Exited():
		t.Fatalf("the server died on the full disk:\n%s", srv.Logs())
	default:
	}
	checkFullButServing(t, tm, l, 1)

	// Space returns: writes resume by themselves.
	resizeTmpfs(t, disk, "56m")
	waitHealth(t, srv.URL, grpchealth.StatusServing)
	finishOne(t, tm, l)
	refusals = fill(t, tm, l, 2)
	t.Logf("second fill after growing to 56 MiB: %d more acknowledged, %d refused", l.count()-acked, refusals)
	if l.count() <= acked+4 {
		t.Fatalf("only %d messages acknowledged after the disk grew", l.count()-acked)
	}

	// SIGKILL on the full disk, and a restart that must flush the
	// write-ahead log the kill left behind: it comes up (the reserve holds
	// that flush) still refusing writes, or refuses to start cleanly.
	srv.Kill()
	srv, err = proctest.Start(bin, addr, serveArgs(dataDir)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	err = srv.Up(ctx)
	cancel()
	select {
	case <-srv.Exited():
		if srv.ExitCode() == 0 || !strings.Contains(srv.Logs(), "disk full") {
			t.Fatalf("restart after SIGKILL on a full disk: exit %d:\n%s", srv.ExitCode(), srv.Logs())
		}
		noFault(t, srv)
		t.Logf("restart after SIGKILL on the full disk refused: %s", lastLine(srv.Logs()))
	default:
		if err != nil {
			t.Fatalf("restart after SIGKILL on a full disk: %v", err)
		}
		// Up with the disk still full: the next big writes are refused
		// (small ones may still fit the space above the reserve).
		before := l.count()
		if refusals := fill(t, tm, l, 3); refusals != agentCount || l.count() > before+2*agentCount {
			t.Fatalf("restart after SIGKILL on a full disk: %d refusals after %d more acknowledgements", refusals, l.count()-before)
		}
		checkFullButServing(t, tm, l, 3)
		t.Log("restart after SIGKILL on the full disk: up, writes refused, NOT_SERVING, reads served")
		// A graceful stop on the full disk flushes and exits cleanly.
		if err := srv.Term(); err != nil {
			t.Fatal(err)
		}
		if code, err := srv.Wait(time.Minute); err != nil || code != 0 {
			t.Fatalf("SIGTERM on a full disk: exit %d, %v:\n%s", code, err, srv.Logs())
		}
		noFault(t, srv)
	}

	// A start on a disk with no space left says so and exits non-zero.
	filler := filepath.Join(disk, "filler")
	fillFilesystem(t, filler)
	full, err := proctest.Start(bin, addr, serveArgs(dataDir)...)
	if err != nil {
		t.Fatal(err)
	}
	code, err := full.Wait(3 * time.Minute)
	if err != nil || code == 0 || !strings.Contains(full.Logs(), "disk full") {
		t.Fatalf("start on a full disk: exit %d, %v, want a non-zero exit naming the full disk:\n%s", code, err, full.Logs())
	}
	noFault(t, full)
	t.Logf("start on the full disk: exit %d: %s", code, lastLine(full.Logs()))

	// Space freed: everything acknowledged is back, and sessions continue.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	resizeTmpfs(t, disk, "96m")
	srv = startReady(t, bin, addr, dataDir)
	if st := health(t, srv.URL); st != grpchealth.StatusServing {
		t.Fatalf("health after space was freed = %v", st)
	}
	verify(t, tm, l, 0)
	finishOne(t, tm, l)
	t.Logf("after restart: all %d acknowledged messages of %d sessions read back exactly", l.count(), len(l.sessions))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// simulatedDisk is a filesystem of size bytes holding only dir, for hosts
// where the test may not mount one: free space is size minus what the
// files under dir occupy.
type simulatedDisk struct {
	dir string
	mu  sync.Mutex
	sz  uint64
}

func (d *simulatedDisk) resize(n uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sz = n
}

func (d *simulatedDisk) space(string) (store.Space, error) {
	var used uint64
	err := filepath.WalkDir(d.dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		used += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return store.Space{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return store.Space{Free: d.sz - min(used, d.sz), Total: d.sz}, nil
}

// testSimulatedFullDisk is TestFullDisk in process, on a simulated 48 MiB
// disk: the same refusals, health, reads, resumption and recovery.
func testSimulatedFullDisk(t *testing.T) {
	dataDir := t.TempDir()
	disk := &simulatedDisk{dir: dataDir, sz: 48 << 20}
	srv := servertest.Start(t, server.Config{DataDir: dataDir, WasmCacheDir: wasmCache, DiskSpace: disk.space})
	tm := &team{url: srv.URL}
	l := newLedger()
	if refusals := fill(t, tm, l, 1); refusals != agentCount {
		t.Fatalf("%d refusals, want one per agent", refusals)
	}
	checkFullButServing(t, tm, l, 1)
	disk.resize(56 << 20)
	waitHealth(t, srv.URL, grpchealth.StatusServing)
	finishOne(t, tm, l)
	fill(t, tm, l, 2)
	srv.Stop()
	if _, err := server.New(context.Background(), server.Config{Addr: "127.0.0.1:0", DataDir: dataDir, WasmCacheDir: wasmCache, DiskSpace: func(string) (store.Space, error) {
		return store.Space{Free: 0, Total: 48 << 20}, nil
	}}); err == nil || !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("start on a full disk: %v, want ErrDiskFull", err)
	}
	disk.resize(96 << 20)
	srv.Restart()
	verify(t, tm, l, 0)
	finishOne(t, tm, l)
}
