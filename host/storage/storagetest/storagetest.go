// Package storagetest holds the contract tests of host/storage: every
// implementation of storage.Store (Badger, memory, JetStream) runs them
// from its own tests with Run, so that all of them keep the same rules —
// fenced appends, heads without mode state, state snapshots, the dedup
// index, record order and blob namespaces.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// Harness opens the stores the contract tests run against.
type Harness struct {
	// Open returns a store: a new one, or one shared by the tests (they
	// use session ids, record kinds and blob kinds of their own, so none
	// sees another's data). The harness closes it.
	Open func(t *testing.T) storage.Store
	// Second, when set, returns another handle on the data of store s (a
	// second node of a cluster): the fencing tests then race two writers
	// on two handles, not only on one.
	Second func(t *testing.T, s storage.Store) storage.Store
}

// Run runs every contract test against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"EntriesAfter", testEntriesAfter},
		{"Pipelined", testPipelined},
		{"FenceOneWriter", testFenceOneWriter},
		{"FenceTwoWriters", testFenceTwoWriters},
		{"FencedHandleRecovers", testFencedHandleRecovers},
		{"Invalid", testInvalid},
		{"HeadsWithoutState", testHeads},
		{"StateSnapshots", testStateSnapshots},
		{"HeadOnlyCommit", testHeadOnlyCommit},
		{"Seen", testSeen},
		{"NotFound", testNotFound},
		{"Records", testRecords},
		{"EachBefore", testEachBefore},
		{"Blobs", testBlobs},
		{"ManySessions", testManySessions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Session ids of the tests: valid MACP tokens, except where a test says.
func sid(name string) string { return "contract-" + name + "-0123456789abcdef" }

// Entry returns the agent entry with sequence seq of session id.
func Entry(id string, seq uint64) *storev1.Entry {
	return &storev1.Entry{
		Sequence: seq,
		Envelope: &macpv1.Envelope{
			MacpVersion:     "1.0",
			Mode:            "macp.mode.decision.v1",
			MessageType:     "Vote",
			MessageId:       fmt.Sprintf("m-%d", seq),
			SessionId:       id,
			Sender:          "agent://alice",
			TimestampUnixMs: 1_700_000_000_000 + int64(seq),
			Payload:         bytes.Repeat([]byte{byte(seq)}, 64),
		},
		AcceptedAtUnixMs: 1_700_000_000_000 + int64(seq),
		Origin:           storev1.Origin_ORIGIN_AGENT,
		StateAfter:       macpv1.SessionState_SESSION_STATE_OPEN,
	}
}

// Head returns session id after entry last, with mode state.
func Head(id string, last uint64) *storev1.Session {
	return &storev1.Session{
		Metadata: &macpv1.SessionMetadata{
			SessionId:    id,
			Mode:         "macp.mode.decision.v1",
			State:        macpv1.SessionState_SESSION_STATE_OPEN,
			Participants: []string{"agent://alice", "agent://bob"},
		},
		ModeState:     fmt.Appendf(nil, "state at %d", last),
		LastSequence:  last,
		StateSequence: last,
		ModuleDigest:  strings.Repeat("ab", 32),
	}
}

// commit writes entries from..to of id, saving the state, and waits.
func commit(ctx context.Context, s storage.Store, id string, from, to uint64) error {
	var es []*storev1.Entry
	for seq := from; seq <= to; seq++ {
		es = append(es, Entry(id, seq))
	}
	p, err := s.Enqueue(ctx, storage.Commit{Session: Head(id, to), Entries: es, SaveState: true})
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

func mustCommit(t *testing.T, s storage.Store, id string, from, to uint64) {
	t.Helper()
	if err := commit(ctx(t), s, id, from, to); err != nil {
		t.Fatalf("commit %s %d..%d: %v", id, from, to, err)
	}
}

func sequences(t *testing.T, s storage.Store, id string, after uint64) []uint64 {
	t.Helper()
	var out []uint64
	err := s.Entries(ctx(t), id, after, func(e *storev1.Entry) error {
		if want := Entry(id, e.GetSequence()); !proto.Equal(e, want) {
			t.Errorf("entry %d read back differs:\n got %v\nwant %v", e.GetSequence(), e, want)
		}
		out = append(out, e.GetSequence())
		return nil
	})
	if err != nil {
		t.Fatalf("entries of %s after %d: %v", id, after, err)
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func testRoundTrip(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("roundtrip")
	mustCommit(t, s, id, 1, 1)
	mustCommit(t, s, id, 2, 3)
	head, state, err := s.Load(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	want := Head(id, 3)
	want.ModeState = nil
	if !proto.Equal(head, want) {
		t.Errorf("head:\n got %v\nwant %v", head, want)
	}
	if state.GetSequence() != 3 || string(state.GetModeState()) != "state at 3" {
		t.Errorf("state snapshot = %d %q, want 3 %q", state.GetSequence(), state.GetModeState(), "state at 3")
	}
	if got := sequences(t, s, id, 0); !slices.Equal(got, seqRange(1, 3)) {
		t.Errorf("log = %v, want 1..3", got)
	}
	h2, err := s.Head(ctx(t), id)
	if err != nil || !proto.Equal(h2, want) {
		t.Errorf("Head = %v, %v; want %v", h2, err, want)
	}
}

func testEntriesAfter(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("after")
	// Commits of varying sizes, so that a backend that groups entries
	// into messages has to find a start inside one.
	for _, r := range [][2]uint64{{1, 1}, {2, 5}, {6, 6}, {7, 20}, {21, 40}} {
		mustCommit(t, s, id, r[0], r[1])
	}
	for _, after := range []uint64{0, 1, 3, 5, 6, 19, 20, 39, 40, 41, 1000, ^uint64(0)} {
		want := seqRange(after+1, 40)
		if after >= 40 {
			want = nil
		}
		if got := sequences(t, s, id, after); !slices.Equal(got, want) {
			t.Errorf("after %d: %v, want %v", after, got, want)
		}
	}
	// ErrStop ends the iteration early, without an error.
	n := 0
	err := s.Entries(ctx(t), id, 0, func(*storev1.Entry) error {
		n++
		if n == 3 {
			return storage.ErrStop
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("ErrStop after 3: n=%d err=%v", n, err)
	}
	// Any other error of the callback is returned.
	boom := errors.New("boom")
	if err := s.Entries(ctx(t), id, 0, func(*storev1.Entry) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: %v, want boom", err)
	}
	if got := sequences(t, s, sid("no-such-session"), 0); len(got) != 0 {
		t.Errorf("entries of an unknown session: %v", got)
	}
}

// testPipelined queues many commits of one session before waiting for any:
// the kernel does so while earlier ones are still being written.
func testPipelined(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("pipelined")
	mustCommit(t, s, id, 1, 1)
	var pend []storage.Pending
	for seq := uint64(2); seq <= 200; seq++ {
		save := seq%16 == 0
		head := Head(id, seq)
		if !save {
			head.StateSequence = seq - seq%16
			if head.StateSequence == 0 {
				head.StateSequence = 1
			}
		}
		p, err := s.Enqueue(ctx(t), storage.Commit{Session: head, Entries: []*storev1.Entry{Entry(id, seq)}, SaveState: save})
		if err != nil {
			t.Fatalf("enqueue %d: %v", seq, err)
		}
		pend = append(pend, p)
	}
	for i, p := range pend {
		if err := p.Wait(ctx(t)); err != nil {
			t.Fatalf("wait %d: %v", i+2, err)
		}
	}
	if got := sequences(t, s, id, 0); !slices.Equal(got, seqRange(1, 200)) {
		t.Fatalf("log has %d entries, want 1..200", len(got))
	}
	head, state, err := s.Load(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if head.GetLastSequence() != 200 || head.GetStateSequence() != 192 || state.GetSequence() != 192 || string(state.GetModeState()) != "state at 192" {
		t.Errorf("head last %d state_sequence %d, snapshot %d %q; want 200, 192, 192",
			head.GetLastSequence(), head.GetStateSequence(), state.GetSequence(), state.GetModeState())
	}
}

// outcome is the result of one commit: Enqueue's error or Wait's.
func outcome(ctx context.Context, s storage.Store, c storage.Commit) error {
	p, err := s.Enqueue(ctx, c)
	if err != nil {
		return err
	}
	return p.Wait(ctx)
}

// race runs two competing commits of the same next sequence, one on each
// store, and checks that exactly one wins and the other is fenced.
func race(t *testing.T, a, b storage.Store, id string, seq uint64) (winner int) {
	t.Helper()
	cs := [2]storage.Commit{}
	for i := range cs {
		e := Entry(id, seq)
		e.Envelope.MessageId = fmt.Sprintf("writer-%d-%d", i, seq)
		cs[i] = storage.Commit{Session: Head(id, seq), Entries: []*storev1.Entry{e}, SaveState: true}
	}
	var (
		errs [2]error
		wg   sync.WaitGroup
	)
	for i, s := range []storage.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = outcome(ctx(t), s, cs[i])
		}()
	}
	wg.Wait()
	switch {
	case errs[0] == nil && errs[1] == nil:
		t.Fatalf("both writers extended %s at %d", id, seq)
	case errs[0] != nil && errs[1] != nil:
		t.Fatalf("neither writer extended %s at %d: %v; %v", id, seq, errs[0], errs[1])
	}
	winner = 0
	if errs[0] != nil {
		winner = 1
	}
	if loser := errs[1-winner]; !errors.Is(loser, storage.ErrSequence) {
		t.Fatalf("the fenced writer got %v, want ErrSequence", loser)
	}
	return winner
}

func testFenceOneWriter(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("fence1")
	mustCommit(t, s, id, 1, 1)
	for seq := uint64(2); seq <= 6; seq++ {
		race(t, s, s, id, seq)
	}
	// A commit that skips ahead or rewrites the past is fenced too.
	for _, r := range [][2]uint64{{8, 8}, {3, 7}, {1, 7}} {
		if err := commit(ctx(t), s, id, r[0], r[1]); !errors.Is(err, storage.ErrSequence) {
			t.Errorf("commit %d..%d after 6: %v, want ErrSequence", r[0], r[1], err)
		}
	}
	if got := sequences2(t, s, id); !slices.Equal(got, seqRange(1, 6)) {
		t.Errorf("log = %v, want 1..6", got)
	}
	// A second SessionStart of an existing session is fenced.
	if err := commit(ctx(t), s, id, 1, 1); !errors.Is(err, storage.ErrSequence) {
		t.Errorf("a second first commit: %v, want ErrSequence", err)
	}
}

// sequences2 lists the sequences without comparing entries (the fencing
// tests write entries of their own).
func sequences2(t *testing.T, s storage.Store, id string) []uint64 {
	t.Helper()
	var out []uint64
	if err := s.Entries(ctx(t), id, 0, func(e *storev1.Entry) error {
		out = append(out, e.GetSequence())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func testFenceTwoWriters(t *testing.T, h Harness) {
	if h.Second == nil {
		t.Log("one handle per store: the race runs on one handle (FenceOneWriter)")
		return
	}
	a := h.Open(t)
	b := h.Second(t, a)
	id := sid("fence2")
	mustCommit(t, a, id, 1, 1)
	// b learns the session; then both race, many times, from both sides.
	if _, _, err := b.Load(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	wins := [2]int{}
	for seq := uint64(2); seq <= 21; seq++ {
		wins[race(t, a, b, id, seq)]++
	}
	t.Logf("wins: %v", wins)
	for _, s := range []storage.Store{a, b} {
		var ids []string
		if err := s.Entries(ctx(t), id, 0, func(e *storev1.Entry) error {
			ids = append(ids, e.GetEnvelope().GetMessageId())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(ids) != 21 {
			t.Fatalf("log has %d entries, want 21: %v", len(ids), ids)
		}
		// Both handles read the same single history.
		head, err := s.Head(ctx(t), id)
		if err != nil || head.GetLastSequence() != 21 {
			t.Fatalf("head %v %v", head, err)
		}
	}
}

// testFencedHandleRecovers: a writer fenced by another handle catches up
// after a Load and continues the log.
func testFencedHandleRecovers(t *testing.T, h Harness) {
	a := h.Open(t)
	b := a
	if h.Second != nil {
		b = h.Second(t, a)
	}
	id := sid("recover")
	mustCommit(t, a, id, 1, 2)
	if _, _, err := b.Load(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, a, id, 3, 3)
	// b's view ends at 2: its commit of 3 is fenced.
	if err := commit(ctx(t), b, id, 3, 3); !errors.Is(err, storage.ErrSequence) {
		t.Fatalf("stale commit: %v, want ErrSequence", err)
	}
	head, _, err := b.Load(ctx(t), id)
	if err != nil || head.GetLastSequence() != 3 {
		t.Fatalf("reload: %v %v", head, err)
	}
	mustCommit(t, b, id, 4, 5)
	// a, unless it is b, has not seen 4 and 5: fenced until it loads.
	if err := commit(ctx(t), a, id, 6, 6); err != nil {
		if !errors.Is(err, storage.ErrSequence) || a == b {
			t.Fatalf("commit of 6 on the first handle: %v", err)
		}
		if _, _, err := a.Load(ctx(t), id); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, a, id, 6, 6)
	}
	if got := sequences(t, a, id, 0); !slices.Equal(got, seqRange(1, 6)) {
		t.Errorf("log = %v, want 1..6", got)
	}
	if seq, ok, err := a.Seen(ctx(t), id, "m-5"); err != nil || !ok || seq != 5 {
		t.Errorf("Seen(m-5) on the other handle = %d %v %v, want 5", seq, ok, err)
	}
}

func testInvalid(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("invalid")
	mustCommit(t, s, id, 1, 1)
	noID := Head("", 2)
	gap := Head(id, 4)
	wrongEnd := Head(id, 5)
	badState := Head(id, 2)
	badState.StateSequence = 1
	pastState := Head(id, 2)
	pastState.StateSequence = 3
	firstNoState := Head(sid("invalid-first"), 1)
	cases := []struct {
		name string
		c    storage.Commit
	}{
		{"no session id", storage.Commit{Session: noID, Entries: []*storev1.Entry{Entry("", 2)}, SaveState: true}},
		{"gap between entries", storage.Commit{Session: gap, Entries: []*storev1.Entry{Entry(id, 2), Entry(id, 4)}, SaveState: true}},
		{"last entry is not last_sequence", storage.Commit{Session: wrongEnd, Entries: []*storev1.Entry{Entry(id, 2)}, SaveState: true}},
		{"saved state not at last_sequence", storage.Commit{Session: badState, Entries: []*storev1.Entry{Entry(id, 2)}, SaveState: true}},
		{"state_sequence past last_sequence", storage.Commit{Session: pastState, Entries: []*storev1.Entry{Entry(id, 2)}}},
		{"first commit without state", storage.Commit{Session: firstNoState, Entries: []*storev1.Entry{Entry(firstNoState.GetMetadata().GetSessionId(), 1)}}},
	}
	for _, tc := range cases {
		if err := outcome(ctx(t), s, tc.c); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	if got := sequences(t, s, id, 0); !slices.Equal(got, []uint64{1}) {
		t.Errorf("refused commits changed the log: %v", got)
	}
	// The session still takes a valid commit.
	mustCommit(t, s, id, 2, 2)
}

func testHeads(t *testing.T, h Harness) {
	s := h.Open(t)
	ids := []string{sid("heads-c"), sid("heads-a"), sid("heads-b"), sid("heads-") + "0195f0a2-5c3e-7a3b"}
	for i, id := range ids {
		mustCommit(t, s, id, 1, uint64(i+1))
	}
	var got []string
	err := s.Heads(ctx(t), func(head *storev1.Session) error {
		if len(head.GetModeState()) != 0 {
			t.Errorf("head of %s carries mode state", head.GetMetadata().GetSessionId())
		}
		if id := head.GetMetadata().GetSessionId(); strings.HasPrefix(id, "contract-heads-") {
			got = append(got, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Heads order %v, want %v", got, want)
	}
	n := 0
	if err := s.Heads(ctx(t), func(*storev1.Session) error { n++; return storage.ErrStop }); err != nil || n != 1 {
		t.Errorf("ErrStop: n=%d err=%v", n, err)
	}
}

func testStateSnapshots(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("state")
	mustCommit(t, s, id, 1, 1)
	// Commits that do not save the state keep naming the snapshot at 1.
	for seq := uint64(2); seq <= 4; seq++ {
		head := Head(id, seq)
		head.StateSequence = 1
		if err := outcome(ctx(t), s, storage.Commit{Session: head, Entries: []*storev1.Entry{Entry(id, seq)}}); err != nil {
			t.Fatal(err)
		}
	}
	head, state, err := s.Load(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if head.GetLastSequence() != 4 || head.GetStateSequence() != 1 || len(head.GetModeState()) != 0 {
		t.Errorf("head: last %d state_sequence %d mode state %q", head.GetLastSequence(), head.GetStateSequence(), head.GetModeState())
	}
	if state.GetSequence() != 1 || string(state.GetModeState()) != "state at 1" {
		t.Errorf("snapshot %d %q, want 1 %q", state.GetSequence(), state.GetModeState(), "state at 1")
	}
	mustCommit(t, s, id, 5, 5)
	if _, state, err = s.Load(ctx(t), id); err != nil || state.GetSequence() != 5 || string(state.GetModeState()) != "state at 5" {
		t.Errorf("after saving at 5: %v %v", state, err)
	}
}

// testHeadOnlyCommit: a commit without entries replaces the head only.
func testHeadOnlyCommit(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("headonly")
	mustCommit(t, s, id, 1, 2)
	head := Head(id, 2)
	head.Metadata.State = macpv1.SessionState_SESSION_STATE_SUSPENDED
	head.StateSequence = 2
	if err := outcome(ctx(t), s, storage.Commit{Session: head}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Head(ctx(t), id)
	if err != nil || got.GetMetadata().GetState() != macpv1.SessionState_SESSION_STATE_SUSPENDED || got.GetLastSequence() != 2 {
		t.Fatalf("head after a head-only commit: %v %v", got, err)
	}
	if seqs := sequences(t, s, id, 0); !slices.Equal(seqs, []uint64{1, 2}) {
		t.Errorf("log = %v", seqs)
	}
	mustCommit(t, s, id, 3, 3)
}

func testSeen(t *testing.T, h Harness) {
	s := h.Open(t)
	id := sid("seen")
	mustCommit(t, s, id, 1, 3)
	runtime := Entry(id, 4)
	runtime.Origin = storev1.Origin_ORIGIN_RUNTIME
	runtime.Envelope.MessageId = "runtime:cancel:4"
	if err := outcome(ctx(t), s, storage.Commit{Session: Head(id, 4), Entries: []*storev1.Entry{runtime}, SaveState: true}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mid  string
		seq  uint64
		seen bool
	}{{"m-1", 1, true}, {"m-3", 3, true}, {"m-4", 0, false}, {"runtime:cancel:4", 0, false}, {"m-99", 0, false}} {
		seq, ok, err := s.Seen(ctx(t), id, tc.mid)
		if err != nil || ok != tc.seen || seq != tc.seq {
			t.Errorf("Seen(%s) = %d %v %v, want %d %v", tc.mid, seq, ok, err, tc.seq, tc.seen)
		}
	}
	if _, ok, err := s.Seen(ctx(t), sid("seen-unknown"), "m-1"); ok || err != nil {
		t.Errorf("Seen in an unknown session: %v %v", ok, err)
	}
	// Entries queued but not waited for are indexed once durable.
	var pend []storage.Pending
	for seq := uint64(5); seq <= 8; seq++ {
		head := Head(id, seq)
		p, err := s.Enqueue(ctx(t), storage.Commit{Session: head, Entries: []*storev1.Entry{Entry(id, seq)}, SaveState: true})
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
	}
	for _, p := range pend {
		if err := p.Wait(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if seq, ok, err := s.Seen(ctx(t), id, "m-8"); err != nil || !ok || seq != 8 {
		t.Errorf("Seen(m-8) = %d %v %v", seq, ok, err)
	}
}

func testNotFound(t *testing.T, h Harness) {
	s := h.Open(t)
	for _, id := range []string{sid("missing"), "not a valid id.with*odd>chars", strings.Repeat("x", 300)} {
		if _, _, err := s.Load(ctx(t), id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Load(%.20q): %v, want ErrNotFound", id, err)
		}
		if _, err := s.Head(ctx(t), id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Head(%.20q): %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Blob(ctx(t), storage.Modules, "0000"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Blob: %v, want ErrNotFound", err)
	}
}

type record struct{ key, value string }

func each(t *testing.T, s storage.Store, kind storage.Kind, prefix string) []record {
	t.Helper()
	var out []record
	if err := s.EachPrefix(ctx(t), kind, prefix, func(k string, v []byte) error {
		out = append(out, record{k, string(v)})
		return nil
	}); err != nil {
		t.Fatalf("EachPrefix(%s, %q): %v", kind, prefix, err)
	}
	return out
}

func testRecords(t *testing.T, h Harness) {
	s := h.Open(t)
	c := ctx(t)
	puts := []record{
		{"policy.b", "B"}, {"policy.a", "A"}, {"policy.a.v2", "A2"}, {"other", "O"},
	}
	for _, r := range puts {
		if err := s.Put(c, storage.Policies, r.key, []byte(r.value)); err != nil {
			t.Fatal(err)
		}
	}
	// Kinds are separate keyspaces.
	if err := s.Put(c, storage.ModeBindings, "policy.a", []byte("binding")); err != nil {
		t.Fatal(err)
	}
	if got, want := each(t, s, storage.Policies, ""), []record{{"other", "O"}, {"policy.a", "A"}, {"policy.a.v2", "A2"}, {"policy.b", "B"}}; !slices.Equal(got, want) {
		t.Errorf("all policies %v, want %v", got, want)
	}
	if got, want := each(t, s, storage.Policies, "policy.a"), []record{{"policy.a", "A"}, {"policy.a.v2", "A2"}}; !slices.Equal(got, want) {
		t.Errorf("prefix policy.a: %v, want %v", got, want)
	}
	// Put replaces; Delete removes; deleting a missing key is no error.
	if err := s.Put(c, storage.Policies, "policy.a", []byte("A'")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(c, storage.Policies, "policy.b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(c, storage.Policies, "never-there"); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
	if got, want := each(t, s, storage.Policies, ""), []record{{"other", "O"}, {"policy.a", "A'"}, {"policy.a.v2", "A2"}}; !slices.Equal(got, want) {
		t.Errorf("after put and delete %v, want %v", got, want)
	}
	if got := each(t, s, storage.ModeBindings, ""); !slices.Equal(got, []record{{"policy.a", "binding"}}) {
		t.Errorf("mode bindings %v", got)
	}
	// Audit keys are "<session id>\x00<key>": a session's prefix yields
	// its records only, not those of a session whose id extends it.
	for _, r := range []record{{"s1\x00002", "b"}, {"s1\x00001", "a"}, {"s10\x00001", "x"}, {"s2\x00001", "y"}} {
		if err := s.Put(c, storage.Audit, r.key, []byte(r.value)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := each(t, s, storage.Audit, "s1\x00"), []record{{"s1\x00001", "a"}, {"s1\x00002", "b"}}; !slices.Equal(got, want) {
		t.Errorf("audit of s1: %q, want %q", got, want)
	}
	n := 0
	if err := s.EachPrefix(c, storage.Policies, "", func(string, []byte) error { n++; return storage.ErrStop }); err != nil || n != 1 {
		t.Errorf("ErrStop: n=%d err=%v", n, err)
	}
}

func testEachBefore(t *testing.T, h Harness) {
	s := h.Open(t)
	c := ctx(t)
	var keys []string
	for i := range 12 {
		k := fmt.Sprintf("%016x", i*7)
		keys = append(keys, k)
		if err := s.Put(c, storage.GovernanceAudit, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(before string, limit int) []string {
		var out []string
		err := s.EachBefore(c, storage.GovernanceAudit, before, func(k string, v []byte) error {
			if string(v) != k {
				t.Errorf("value of %s is %q", k, v)
			}
			out = append(out, k)
			if len(out) == limit {
				return storage.ErrStop
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rev := slices.Clone(keys)
	slices.Reverse(rev)
	if got := collect("", 0); !slices.Equal(got, rev) {
		t.Errorf("all, newest first: %v, want %v", got, rev)
	}
	if got := collect(keys[5], 3); !slices.Equal(got, []string{keys[4], keys[3], keys[2]}) {
		t.Errorf("3 before %s: %v", keys[5], got)
	}
	if got := collect(keys[0], 0); len(got) != 0 {
		t.Errorf("before the first: %v", got)
	}
}

func testBlobs(t *testing.T, h Harness) {
	s := h.Open(t)
	c := ctx(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 128<<10) // 2 MiB
	if err := s.PutBlob(c, storage.Modules, "bb", big); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(c, storage.Modules, "aa", []byte("module a")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(c, storage.RegoSources, "cc", []byte("package x")); err != nil {
		t.Fatal(err)
	}
	// Storing an existing name again keeps the first content.
	if err := s.PutBlob(c, storage.Modules, "aa", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Blob(c, storage.Modules, "bb"); err != nil || !bytes.Equal(b, big) {
		t.Errorf("big blob: %d bytes, %v", len(b), err)
	}
	if b, err := s.Blob(c, storage.Modules, "aa"); err != nil || string(b) != "module a" {
		t.Errorf("blob aa = %q %v", b, err)
	}
	names, err := s.BlobNames(c, storage.Modules)
	if err != nil || !slices.Equal(names, []string{"aa", "bb"}) {
		t.Errorf("module names %v %v", names, err)
	}
	names, err = s.BlobNames(c, storage.RegoSources)
	if err != nil || !slices.Equal(names, []string{"cc"}) {
		t.Errorf("rego names %v %v", names, err)
	}
	if _, err := s.Blob(c, storage.RegoSources, "aa"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a module is not a Rego source: %v", err)
	}
}

// testManySessions writes sessions concurrently, as the kernel does.
func testManySessions(t *testing.T, h Harness) {
	s := h.Open(t)
	const sessions, per = 16, 12
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := sid(fmt.Sprintf("many-%02d", i))
			for seq := uint64(1); seq <= per; seq++ {
				if err := commit(ctx(t), s, id, seq, seq); err != nil {
					errs <- fmt.Errorf("%s %d: %w", id, seq, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	if err := s.Heads(ctx(t), func(head *storev1.Session) error {
		if !strings.HasPrefix(head.GetMetadata().GetSessionId(), "contract-many-") {
			return nil
		}
		if head.GetLastSequence() != per {
			t.Errorf("%s ends at %d", head.GetMetadata().GetSessionId(), head.GetLastSequence())
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != sessions {
		t.Errorf("%d heads, want %d", n, sessions)
	}
}
