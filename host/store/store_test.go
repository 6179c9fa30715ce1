package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concord-macp/concord/host/storage"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openDisk(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openMem(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{InMemory: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// payload is ~220 bytes, which makes an encoded envelope of about 300.
var payload = bytes.Repeat([]byte("concord!"), 28)

func entry(id string, seq uint64) *storev1.Entry {
	return &storev1.Entry{
		Sequence: seq,
		Envelope: &macpv1.Envelope{
			MacpVersion:     "1.0",
			Mode:            "macp.mode.decision.v1",
			MessageType:     "Vote",
			MessageId:       fmt.Sprintf("m-%s-%d", id, seq),
			SessionId:       id,
			Sender:          "agent://alice",
			TimestampUnixMs: 1_700_000_000_000 + int64(seq),
			Payload:         payload,
		},
		AcceptedAtUnixMs: 1_700_000_000_000 + int64(seq),
		Origin:           storev1.Origin_ORIGIN_AGENT,
		StateAfter:       macpv1.SessionState_SESSION_STATE_OPEN,
	}
}

func entries(id string, from, to uint64) []*storev1.Entry {
	var es []*storev1.Entry
	for seq := from; seq <= to; seq++ {
		es = append(es, entry(id, seq))
	}
	return es
}

func snapshot(id string, last uint64, state macpv1.SessionState) *storev1.Session {
	return &storev1.Session{
		Metadata: &macpv1.SessionMetadata{
			SessionId:    id,
			Mode:         "macp.mode.decision.v1",
			State:        state,
			Participants: []string{"agent://alice", "agent://bob"},
		},
		ModeState:     []byte(fmt.Sprintf("state of %s at %d", id, last)),
		LastSequence:  last,
		StateSequence: last,
		ModuleDigest:  strings.Repeat("ab", 32),
	}
}

// commitFull writes snap and entries and saves snap's state.
func (s *Store) commitFull(ctx context.Context, snap *storev1.Session, entries ...*storev1.Entry) error {
	return s.Commit(ctx, storage.Commit{Session: snap, Entries: entries, SaveState: true})
}

// sessionFull reads a session back with its head and state snapshot
// merged, as commitFull wrote it.
func (s *Store) sessionFull(ctx context.Context, id string) (*storev1.Session, error) {
	head, state, err := s.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	head.ModeState = state.GetModeState()
	return head, nil
}

func open(id string, last uint64) *storev1.Session {
	return snapshot(id, last, macpv1.SessionState_SESSION_STATE_OPEN)
}

// commitRange commits entries from..to with a matching snapshot.
func commitRange(t testing.TB, s *Store, id string, from, to uint64) {
	t.Helper()
	if err := s.commitFull(context.Background(), open(id, to), entries(id, from, to)...); err != nil {
		t.Fatalf("commit %s %d..%d: %v", id, from, to, err)
	}
}

func collect(t testing.TB, s *Store, id string, after uint64) []*storev1.Entry {
	t.Helper()
	var got []*storev1.Entry
	if err := s.Entries(context.Background(), id, after, func(e *storev1.Entry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatalf("entries of %s after %d: %v", id, after, err)
	}
	return got
}

// checkLog asserts that the session's log is exactly entries 1..last and
// that its snapshot ends at last.
func checkLog(t testing.TB, s *Store, id string, last uint64) {
	t.Helper()
	got := collect(t, s, id, 0)
	if uint64(len(got)) != last {
		t.Fatalf("%s: %d entries, want %d", id, len(got), last)
	}
	for i, e := range got {
		if want := entry(id, uint64(i)+1); !proto.Equal(e, want) {
			t.Fatalf("%s: entry %d = %v, want %v", id, i, e, want)
		}
	}
	snap, err := s.sessionFull(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(snap, open(id, last)) {
		t.Fatalf("%s: snapshot %v, want %v", id, snap, open(id, last))
	}
}

func TestRoundTrip(t *testing.T) {
	s := openDisk(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()

	if _, err := s.sessionFull(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing session: got %v, want ErrNotFound", err)
	}
	commitRange(t, s, "s1", 1, 1)
	commitRange(t, s, "s1", 2, 4)
	checkLog(t, s, "s1", 4)

	// A snapshot-only commit keeps the log where it is.
	snap := open("s1", 4)
	snap.ModeState = []byte("changed")
	if err := s.commitFull(ctx, snap); err != nil {
		t.Fatal(err)
	}
	got, err := s.sessionFull(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, snap) {
		t.Fatalf("snapshot %v, want %v", got, snap)
	}
	if st := s.Stats(); st.Commits != 3 || st.Entries != 4 {
		t.Fatalf("stats %+v, want 3 commits and 4 entries", st)
	}
}

func TestEntriesAfter(t *testing.T) {
	s := openMem(t)
	commitRange(t, s, "x", 1, 3)
	commitRange(t, s, "x", 4, 10)
	commitRange(t, s, "x1", 1, 2) // a neighbour must not leak in

	for _, after := range []uint64{0, 1, 4, 9, 10, 11, ^uint64(0)} {
		got := collect(t, s, "x", after)
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.GetSequence())
		}
		var want []uint64
		for seq := after + 1; seq <= 10 && after < 10; seq++ {
			want = append(want, seq)
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("after %d: got %v, want %v", after, seqs, want)
		}
	}

	var n int
	err := s.Entries(context.Background(), "x", 0, func(*storev1.Entry) error {
		n++
		if n == 3 {
			return ErrStop
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("stop after 3: err %v, n %d", err, n)
	}
	boom := errors.New("boom")
	err = s.Entries(context.Background(), "x", 0, func(*storev1.Entry) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("callback error: got %v", err)
	}
	if got := collect(t, s, "nobody", 0); len(got) != 0 {
		t.Fatalf("unknown session has %d entries", len(got))
	}
}

// ids that share prefixes, so that a key layout without a terminator would mix
// their logs up.
var prefixIDs = []string{
	"a", "ab", "abc", "abcd", "abc-", "abc_", "abc0", "abcd-1",
	"0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950",
	"AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA",
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	s := openDisk(t, dir)
	for i, id := range prefixIDs {
		commitRange(t, s, id, 1, uint64(i+1))
		commitRange(t, s, id, uint64(i+2), uint64(i+3))
	}
	// Plenty of other sessions, so the data outgrows one table.
	for i := range 300 {
		commitRange(t, s, fmt.Sprintf("bulk-%03d", i), 1, 5)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openDisk(t, dir)
	defer s.Close()
	for i, id := range prefixIDs {
		checkLog(t, s, id, uint64(i+3))
	}
	var ids []string
	if err := s.Heads(context.Background(), func(snap *storev1.Session) error {
		ids = append(ids, snap.GetMetadata().GetSessionId())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(prefixIDs)+300 {
		t.Fatalf("%d sessions after restart, want %d", len(ids), len(prefixIDs)+300)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("sessions not in ascending id order: %v", ids)
	}

	// The reopened store knows where every log ends.
	commitRange(t, s, "abc", 6, 6)
	checkLog(t, s, "abc", 6)
	if err := s.commitFull(context.Background(), open("abcd", 9), entry("abcd", 9)); !errors.Is(err, ErrSequence) {
		t.Fatalf("gap after restart: got %v, want ErrSequence", err)
	}
}

func TestConcurrent(t *testing.T) {
	s := openDisk(t, t.TempDir())
	defer s.Close()
	const (
		solo    = 64 // goroutines, each with its own session
		shared  = 4  // sessions written by several goroutines in turn
		sharers = 4  // goroutines per shared session
		rounds  = 30
	)
	var wg sync.WaitGroup
	errs := make(chan error, solo+shared*sharers)
	for g := range solo {
		wg.Go(func() {
			id := fmt.Sprintf("solo-%d", g)
			for seq := uint64(1); seq <= rounds; seq++ {
				if err := s.commitFull(context.Background(), open(id, seq), entry(id, seq)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	type sharedLog struct {
		mu   sync.Mutex
		last uint64
	}
	logs := make([]*sharedLog, shared)
	for i := range logs {
		logs[i] = &sharedLog{}
		for range sharers {
			wg.Go(func() {
				id := fmt.Sprintf("shared-%d", i)
				l := logs[i]
				for range rounds {
					// The kernel orders each session's messages; so do we.
					l.mu.Lock()
					next := l.last + 1
					err := s.commitFull(context.Background(), open(id, next), entry(id, next))
					if err == nil {
						l.last = next
					}
					l.mu.Unlock()
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for g := range solo {
		checkLog(t, s, fmt.Sprintf("solo-%d", g), rounds)
	}
	for i := range shared {
		checkLog(t, s, fmt.Sprintf("shared-%d", i), rounds*sharers)
	}
	st := s.Stats()
	total := uint64((solo + shared*sharers) * rounds)
	if st.Commits != total || st.Entries != total {
		t.Fatalf("stats %+v, want %d commits and entries", st, total)
	}
	t.Logf("%d commits in %d groups (%.1f per fsync)", st.Commits, st.Groups, float64(st.Commits)/float64(st.Groups))
}

func TestRefusals(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	commitRange(t, s, "s", 1, 3)

	cases := []struct {
		name    string
		snap    *storev1.Session
		entries []*storev1.Entry
		want    error
	}{
		{"gap", open("s", 5), entries("s", 5, 5), ErrSequence},
		{"replay", open("s", 3), entries("s", 3, 3), ErrSequence},
		{"rewind", open("s", 2), entries("s", 1, 2), ErrSequence},
		{"first entry not 1", open("new", 2), entries("new", 2, 2), ErrSequence},
		{"snapshot behind entries", open("s", 4), entries("s", 4, 5), ErrInvalid},
		{"snapshot ahead of entries", open("s", 6), entries("s", 4, 5), ErrInvalid},
		{"entries not consecutive", open("s", 6), []*storev1.Entry{entry("s", 4), entry("s", 6)}, ErrInvalid},
		{"entries out of order", open("s", 5), []*storev1.Entry{entry("s", 5), entry("s", 4)}, ErrInvalid},
		{"more entries than sequence", open("s", 1), entries("s", 0, 1), ErrInvalid},
		{"snapshot-only moves the log", open("s", 4), nil, ErrSequence},
		{"nil entry", open("s", 4), []*storev1.Entry{nil}, ErrInvalid},
		{"nil snapshot", nil, entries("s", 4, 4), ErrInvalid},
		{"no metadata", &storev1.Session{LastSequence: 4}, entries("s", 4, 4), ErrInvalid},
		{"empty id", open("", 1), entries("", 1, 1), ErrInvalid},
		{"NUL in id", open("a\x00b", 1), entries("a\x00b", 1, 1), ErrInvalid},
		{"id too long", open(strings.Repeat("x", MaxSessionIDLen+1), 1), nil, ErrInvalid},
		{"envelope of another session", open("s", 4), entries("t", 4, 4), ErrInvalid},
	}
	for _, c := range cases {
		err := s.commitFull(ctx, c.snap, c.entries...)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	// Nothing refused was written, and the log goes on.
	checkLog(t, s, "s", 3)
	commitRange(t, s, "s", 4, 4)
	checkLog(t, s, "s", 4)
	if _, err := s.sessionFull(ctx, "new"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused session was stored: %v", err)
	}
}

// A refused commit in the middle of a group fails alone, and a second
// commit of the same session in that group sees the first one.
func TestGroupMixesRefusals(t *testing.T) {
	s := openMem(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s.beforeCommit = func() error {
		select {
		case entered <- struct{}{}:
			<-release // hold the first group so the rest gathers
		default:
		}
		return nil
	}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- s.commitFull(ctx, open("hold", 1), entry("hold", 1)) }()
	<-entered

	type result struct {
		name string
		err  error
	}
	results := make(chan result, 3)
	commit := func(name string, snap *storev1.Session, es ...*storev1.Entry) {
		results <- result{name, s.commitFull(ctx, snap, es...)}
	}
	// Queue in a known order: each waits until the previous one is queued.
	go commit("a1", open("a", 1), entry("a", 1))
	waitQueued(t, s, 1)
	go commit("a3 gap", open("a", 3), entry("a", 3))
	waitQueued(t, s, 2)
	go commit("a2", open("a", 2), entry("a", 2))
	waitQueued(t, s, 3)
	close(release)

	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r := <-results
		switch r.name {
		case "a3 gap":
			if !errors.Is(r.err, ErrSequence) {
				t.Errorf("%s: got %v, want ErrSequence", r.name, r.err)
			}
		default:
			if r.err != nil {
				t.Errorf("%s: %v", r.name, r.err)
			}
		}
	}
	checkLog(t, s, "a", 2)
	if st := s.Stats(); st.Groups != 2 || st.Commits != 3 {
		t.Fatalf("stats %+v, want 3 commits in 2 groups", st)
	}
}

func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if len(s.queue) >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("queue never reached %d", n)
}

func TestFailedWriteFailsGroupAndStore(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	commitRange(t, s, "before", 1, 1)

	injected := errors.New("disk on fire")
	release := make(chan struct{})
	entered := make(chan struct{})
	var once sync.Once
	s.beforeCommit = func() error {
		once.Do(func() { close(entered) })
		<-release
		return injected
	}
	errs := make(chan error, 6)
	go func() { errs <- s.commitFull(ctx, open("w0", 1), entry("w0", 1)) }()
	<-entered
	for i := 1; i < 6; i++ {
		id := fmt.Sprintf("w%d", i)
		go func() { errs <- s.commitFull(ctx, open(id, 1), entry(id, 1)) }()
	}
	waitQueued(t, s, 5)
	close(release)
	for range 6 {
		err := <-errs
		if !errors.Is(err, ErrFailed) || !errors.Is(err, injected) {
			t.Errorf("got %v, want ErrFailed wrapping the cause", err)
		}
	}
	if err := s.commitFull(ctx, open("later", 1), entry("later", 1)); !errors.Is(err, ErrFailed) {
		t.Errorf("commit after failure: got %v", err)
	}
	if _, err := s.sessionFull(ctx, "before"); !errors.Is(err, ErrFailed) {
		t.Errorf("read after failure: got %v", err)
	}
	if err := s.Heads(ctx, func(*storev1.Session) error { return nil }); !errors.Is(err, ErrFailed) {
		t.Errorf("scan after failure: got %v", err)
	}
	if err := s.Entries(ctx, "before", 0, func(*storev1.Entry) error { return nil }); !errors.Is(err, ErrFailed) {
		t.Errorf("entries after failure: got %v", err)
	}
}

func TestCancelledWaitMayStillLand(t *testing.T) {
	s := openMem(t)
	release := make(chan struct{})
	entered := make(chan struct{})
	var once sync.Once
	s.beforeCommit = func() error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.commitFull(ctx, open("c", 1), entry("c", 1)) }()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	close(release)
	// The next commit of the session is ordered after the first one.
	commitRange(t, s, "c", 2, 2)
	checkLog(t, s, "c", 2)

	if err := s.commitFull(ctx, open("c", 3), entry("c", 3)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before queueing: got %v", err)
	}
	checkLog(t, s, "c", 2)
}

func TestTerminalSessionsLeaveTheCursor(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	commitRange(t, s, "t", 1, 2)
	done := snapshot("t", 3, macpv1.SessionState_SESSION_STATE_RESOLVED)
	if err := s.commitFull(ctx, done, entry("t", 3)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.cursorOf("t"); ok {
		t.Fatal("resolved session still has a cursor")
	}
	// Its position is reloaded from the snapshot when needed.
	if err := s.commitFull(ctx, open("t", 5), entry("t", 5)); !errors.Is(err, ErrSequence) {
		t.Fatalf("gap: got %v", err)
	}
	if err := s.commitFull(ctx, done, entry("t", 3)); !errors.Is(err, ErrSequence) {
		t.Fatalf("replay: got %v", err)
	}
}

// cursorOf reads the committer's cursor; only safe while no Commit runs.
func (s *Store) cursorOf(id string) (uint64, bool) {
	seq, ok := s.cursor[id]
	return seq, ok
}

func TestInMemory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Options{InMemory: true, Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range prefixIDs {
		commitRange(t, s, id, 1, 3)
	}
	for _, id := range prefixIDs {
		checkLog(t, s, id, 3)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("in-memory store wrote files: %v", files)
	}
}

func TestClose(t *testing.T) {
	s := openDisk(t, t.TempDir())
	commitRange(t, s, "s", 1, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if err := s.commitFull(ctx, open("s", 2), entry("s", 2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("commit after close: got %v", err)
	}
	if _, err := s.sessionFull(ctx, "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: got %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Fatal("opened a store with neither a directory nor InMemory")
	}
	// Two stores cannot share a directory.
	dir := t.TempDir()
	s := openDisk(t, dir)
	defer s.Close()
	if s2, err := Open(context.Background(), Options{Dir: dir, Logger: testLogger(t)}); err == nil {
		s2.Close()
		t.Fatal("opened a locked directory twice")
	}
}

func TestKeyLayout(t *testing.T) {
	kinds := []byte{kindMeta, kindEntry, kindSession, kindBlob, kindBlobManifest, kindState, kindSeen}
	for _, k := range recordKinds {
		kinds = append(kinds, k)
	}
	n := len(kinds)
	slices.Sort(kinds)
	if len(slices.Compact(kinds)) != n {
		t.Fatal("record kinds collide")
	}
	for _, a := range prefixIDs {
		for _, b := range prefixIDs {
			if a == b {
				continue
			}
			if bytes.HasPrefix(entryKey(b, 1), entryPrefix(a)) {
				t.Errorf("entry key of %q lies under the prefix of %q", b, a)
			}
			if bytes.HasPrefix(sessionKey(b), sessionKey(a)) {
				t.Errorf("snapshot key of %q lies under that of %q", b, a)
			}
			// Key order is id order.
			if (a < b) != (bytes.Compare(sessionKey(a), sessionKey(b)) < 0) {
				t.Errorf("key order of %q and %q differs from id order", a, b)
			}
		}
	}
	for _, pair := range [][2]uint64{{1, 2}, {255, 256}, {65535, 65536}, {1 << 32, 1<<32 + 1}} {
		if bytes.Compare(entryKey("s", pair[0]), entryKey("s", pair[1])) >= 0 {
			t.Errorf("entry %d does not sort before %d", pair[0], pair[1])
		}
	}
	if seq, ok := entrySeq(entryKey("abc", 42)); !ok || seq != 42 {
		t.Errorf("entrySeq = %d, %v", seq, ok)
	}
	if id, ok := sessionIDOf(sessionKey("abc")); !ok || id != "abc" {
		t.Errorf("sessionIDOf = %q, %v", id, ok)
	}
}

func TestBadgerLogger(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Debugf("debug %d\n", 1)
	l.Infof("info %d\n", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d\n", 4)
	out := buf.String()
	if strings.Contains(out, "debug 1") || strings.Contains(out, "info 2") {
		t.Errorf("info or debug passed through: %s", out)
	}
	if !strings.Contains(out, `level=WARN msg="warn 3" source=badger`) ||
		!strings.Contains(out, `level=ERROR msg="error 4" source=badger`) {
		t.Errorf("warning or error missing: %s", out)
	}
}

func TestGroupSizeLimit(t *testing.T) {
	s, err := Open(context.Background(), Options{InMemory: true, MaxGroupBytes: 2000, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s.beforeCommit = func() error {
		select {
		case entered <- struct{}{}:
			<-release
		default:
		}
		return nil
	}
	ctx := context.Background()
	errs := make(chan error, 9)
	go func() { errs <- s.commitFull(ctx, open("hold", 1), entry("hold", 1)) }()
	<-entered
	for i := range 8 {
		id := fmt.Sprintf("g%d", i)
		go func() { errs <- s.commitFull(ctx, open(id, 2), entries(id, 1, 2)...) }()
	}
	waitQueued(t, s, 8)
	close(release)
	for range 9 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each commit is about 1 KB encoded: at most one fits under 2000 bytes
	// beside another, so the 8 queued ones need at least 4 transactions.
	if st := s.Stats(); st.Commits != 9 || st.Groups < 5 {
		t.Fatalf("stats %+v, want 9 commits in at least 5 groups", st)
	}
	for i := range 8 {
		checkLog(t, s, fmt.Sprintf("g%d", i), 2)
	}
}

func TestTooLargeFailsAlone(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	huge := open("big", 1)
	huge.ModeState = make([]byte, 32<<20)
	if err := s.commitFull(ctx, huge, entry("big", 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	// The store goes on; nothing of the refused commit is visible.
	commitRange(t, s, "small", 1, 1)
	if _, err := s.sessionFull(ctx, "big"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused snapshot visible: %v", err)
	}
	commitRange(t, s, "big", 1, 1)
}

// TestSecondOpenIsLocked: a directory another store has open is refused
// with ErrLocked, and free again once that store is closed.
func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	first := openDisk(t, dir)
	if _, err := Open(context.Background(), Options{Dir: dir, Logger: testLogger(t)}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(context.Background(), Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = again.Close()
}
